//! ModelIR: the typed SSA graph every part of ferrumc speaks.
//!
//! * [`dtype`], [`dim`], [`types`]: element types (incl. block-quantized storage),
//!   symbolic dims, tensor types.
//! * [`op`]: the op set with documented semantics; [`attr`]: attribute values.
//! * [`graph`]: modules, weights, functions, values, ops, and the editing API.
//! * [`infer`] and [`verify`]: shape/dtype inference and the verifier.
//! * [`text`]: the `.fir` text format (printer and parser).
//! * [`json`]: the ModelIR JSON document; [`dot`]: Graphviz export.
//! * [`interp`]: the reference interpreter, the oracle for every backend.
//! * [`tensor`], [`npy`], [`weights`]: concrete tensors and their I/O; [`quant`]: the
//!   reference quantizers of the block dtypes.

pub mod attr;
pub mod dim;
pub mod dot;
pub mod dtype;
pub mod graph;
pub mod infer;
pub mod interp;
pub mod json;
pub mod npy;
pub mod op;
pub mod quant;
pub mod tensor;
pub mod text;
pub mod types;
pub mod verify;
pub mod weights;

pub use attr::Attr;
pub use dim::Dim;
pub use dtype::DType;
pub use graph::{
    Function, GroupKind, Module, OpData, OpId, Use, ValueData, ValueDef, ValueId, WeightDecl, WeightSource,
};
pub use op::Op;
pub use tensor::{Tensor, TensorData};
pub use types::TensorType;
