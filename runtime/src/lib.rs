//! The runtime: artifact format, loading and execution.
//!
//! * [`abi`]: the calling convention between generated kernels and the runtime.
//! * [`ukernels`]: the micro-kernels and math helpers behind [`abi::RuntimeFnTable`].
//!
//! Invariant: this crate depends on no compiler crate (cranelift, naga, frontends,
//! passes), so programs that only run artifacts stay small.

pub mod abi;
pub mod ukernels;
