//! ONNX frontend: imports an ONNX model (`.onnx`, optionally with external data) into a
//! ModelIR [`Module`](ferrumc_ir::Module) with one function, `forward`, whose inputs and outputs are the graph's
//! (names preserved).
//!
//! * **Decoding** uses hand-written `prost` messages for the subset of `onnx.proto` we read
//!   ([`proto`]); see that module for why. Files above [`MAX_MODEL_BYTES`] are refused before
//!   reading; decode errors name the file.
//! * **Opsets**: the default domain (`""` / `ai.onnx`) must be imported at a version in
//!   [`MIN_OPSET`]`..=`[`MAX_OPSET`]; other domains are accepted only if no node uses them.
//! * **Inputs**: `dim_value` → static dim, `dim_param` → symbolic dim (name sanitized to a
//!   valid symbol: invalid characters become `_`, a leading digit gets a `_` prefix), or a
//!   polynomial when the `dim_param` is a sum of products of symbols and integers with spaced
//!   `+`/`-` (`past_sequence_length + sequence_length`, as optimum types attention masks), no
//!   value → `?`. A graph input that is also an initializer is treated as the initializer.
//! * **Initializers** and `Constant` nodes: small tensors (at most [`CONST_MAX_ELEMENTS`]
//!   elements, or [`CONST_MAX_INT_ELEMENTS`] for integer/bool) become `constant` ops so shape
//!   arithmetic folds; the rest become module weights: `raw_data` stored in the `.onnx` file
//!   is referenced in place as `WeightSource::Raw { file: <model file name>, offset }` (the
//!   offset is free: prost decodes `bytes` fields as slices of the file buffer), typed
//!   fields (`float_data`, …) become `Inline` tensors, external data becomes `Raw` into the
//!   named file. Weight files resolve against the model's folder (use
//!   `FileWeights::new(model_dir)`).
//! * **External data**: `location` must be a plain relative path inside the model's folder
//!   (no `..`, not absolute, and the canonicalized file must stay inside the canonicalized
//!   folder, which blocks symlink escapes); `offset`/`length` are checked against the file
//!   size and the tensor's byte size.
//! * **Nodes** map to IR ops ([`SUPPORTED_OPS`]); inputs that ONNX takes as tensors but the IR
//!   as attributes (reduce/squeeze/unsqueeze axes, split sizes, TopK k, Pad pads, Clip bounds,
//!   Trilu k, CumSum axis, Tile repeats) must be constants. Ops whose operands are all
//!   constants and whose results are small are folded by running the reference interpreter.
//!   Every node error names the node (`name` or `#index`) and its op type.
//! * **Shape arithmetic**: rank ≤ 1 integer values computed from `Shape` through `Gather`,
//!   `Slice`, `Concat`, `(Un)Squeeze`, `Cast` and `Add/Sub/Mul/Div` are tracked as (symbolic)
//!   dims, so a dynamic `Reshape`/`Expand`/`ConstantOfShape` gets a typed result
//!   (`[?batch, 6]` rather than `[?, ?]`).
//! * [`ImportOptions::frozen_inputs`] turns chosen graph inputs into constants (for graphs
//!   that feed axes, pads or k from graph inputs).
//! * The result passes `verify_module`.
//!
//! Not supported: element types other than f32/f16/bf16/f64/i64/i32/i8/u8/bool (u16, u32,
//! u64, i16, strings, float8, int4), sequence/map/optional values, subgraphs (If, Loop,
//! Scan), sparse initializers, function protos, non-default domains, Pad `wrap` mode, and
//! LayerNormalization `stash_type` (Mean/InvStdDev are computed in the input dtype).

pub mod proto;
pub mod tensors;

mod import;

pub use import::{import_onnx, import_onnx_bytes, import_onnx_with, ImportOptions, SUPPORTED_OPS};
pub use tensors::{onnx_dtype, tensor_from_proto, tensor_to_proto};

use ferrumc_ir::Tensor;
use prost::Message;
use std::path::PathBuf;

/// Oldest default-domain opset accepted. Before opset 7 binary ops broadcast only with the
/// legacy `broadcast`/`axis` attributes; nodes that set them are refused.
pub const MIN_OPSET: i64 = 1;
/// Newest default-domain opset implemented. Checked against the onnx 1.23 schemas: from
/// opset 21 to 28 the mapped ops only gained element types, except Mod-28 (float `fmod=0`
/// spelled out as `a - floor(a/b)·b`, which is the IR's `mod`), Range-27 (`stash_type`:
/// the IR computes ranges exactly, as with a float stash) and Cast-28 (new element types).
pub const MAX_OPSET: i64 = 28;
/// Largest `.onnx` file accepted (protobuf itself cannot exceed 2 GiB).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;
/// Float initializers up to this many elements become `constant` ops.
pub const CONST_MAX_ELEMENTS: usize = 64;
/// Integer and bool initializers up to this many elements become `constant` ops.
pub const CONST_MAX_INT_ELEMENTS: usize = 4096;

/// Why an ONNX model or tensor could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("`{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("`{path}`: the file has {size} bytes, more than the {max} an ONNX model may have")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("`{what}` is not a valid ONNX {message_type}: {message}")]
    Decode { what: String, message_type: &'static str, message: String },
    #[error("{0}")]
    Model(String),
    #[error("node {node}: {message}")]
    Node { node: String, message: String },
    #[error("the imported module does not verify:\n{0}")]
    Verify(String),
}

/// Decode a serialized ONNX `TensorProto` (a `.pb` file of the ONNX test data sets) into a
/// tensor. External data is refused.
pub fn read_tensor_proto(bytes: &[u8]) -> Result<Tensor, OnnxError> {
    read_named_tensor_proto(bytes).map(|(_, t)| t)
}

/// Like [`read_tensor_proto`], also returning the proto's `name` field (may be empty).
pub fn read_named_tensor_proto(bytes: &[u8]) -> Result<(String, Tensor), OnnxError> {
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(OnnxError::Model(format!("tensor proto of {} bytes is too large", bytes.len())));
    }
    let t = proto::TensorProto::decode(bytes).map_err(|e| OnnxError::Decode {
        what: "tensor bytes".into(),
        message_type: "TensorProto",
        message: e.to_string(),
    })?;
    let tensor = tensor_from_proto(&t).map_err(|m| {
        OnnxError::Model(format!("tensor `{}`: {m}", if t.name.is_empty() { "<unnamed>" } else { &t.name }))
    })?;
    Ok((t.name, tensor))
}
