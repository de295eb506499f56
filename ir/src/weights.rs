//! (placeholder: filled in by the weights work)
