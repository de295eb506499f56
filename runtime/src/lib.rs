//! The runtime: artifact format, loading and execution.
//!
//! * [`abi`]: the calling convention between generated kernels and the runtime.
//! * [`artifact`]: the artifact file format, its writer and its validating reader.
//! * [`model`]: the loaded-model API (`Model::load`, `run` with named tensors) and `Tensor`.
//! * [`error`]: the typed `RuntimeError`.
//! * [`ukernels`]: the micro-kernels and math helpers behind [`abi::RuntimeFnTable`].
//!
//! Invariant: this crate depends on no compiler crate (cranelift, naga, frontends,
//! passes), so programs that only run artifacts stay small.

pub mod abi;
pub mod artifact;
pub mod error;
pub mod model;
pub mod ukernels;
