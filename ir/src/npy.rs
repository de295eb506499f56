//! (placeholder: filled in by the npy work)
