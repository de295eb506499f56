//! (placeholder: filled in by the interp work)
