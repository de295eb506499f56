//! Codegen: fusion groups to a target-neutral kernel form ([`kernel`], built by [`lower`]),
//! then backends: the host CPU through Cranelift ([`cpu`]); PTX and naga arrive later and
//! consume the same [`kernel::Kernel`].

pub mod compile;
pub mod cpu;
pub mod kernel;
pub mod lower;
pub(crate) mod weight_eval;

/// Why codegen failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    /// A construct no kernel template or backend handles yet (coverage, not a bug).
    #[error("`{op}` is not supported by codegen yet: {reason}")]
    Unsupported { op: String, reason: String },
    /// Malformed input (a cyclic function, a group without ops, an ill-typed kernel).
    #[error("invalid input to codegen: {0}")]
    Invalid(String),
    /// The backend (Cranelift, the JIT or object module) refused the code.
    #[error("backend error: {0}")]
    Backend(String),
}
