//! (placeholder: filled in by the verify work)
