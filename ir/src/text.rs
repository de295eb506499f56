//! (placeholder: filled in by the text work)
