//! (placeholder: filled in by the json work)
