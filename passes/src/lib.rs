//! Pass manager and optimization passes over ModelIR (arrives with the passes issue).
//!
//! This crate depends only on `ferrumc-ir`.
