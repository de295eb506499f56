//! (placeholder: filled in by the infer work)
