//! The runtime: artifact format, loading and execution (arrives with the codegen issue).
//!
//! Invariant: this crate depends on no compiler crate (cranelift, naga, frontends,
//! passes), so programs that only run artifacts stay small.
