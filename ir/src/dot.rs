//! (placeholder: filled in by the dot work)
