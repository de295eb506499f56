//! Shared helpers for ferrumc's integration tests: locating the repository, the golden
//! filetest format, and tolerance-based tensor comparison.

pub mod compare;
pub mod compiled;
pub mod filetest;
pub mod inputs;
pub mod models;
pub mod rng;

use std::path::PathBuf;

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}
