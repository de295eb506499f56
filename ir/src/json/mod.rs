//! The ModelIR JSON document, `model.json`: what `ferrumc compile model.json` reads and
//! what `ferrumc` writes when asked for JSON.
//!
//! The document follows the Ferrum interface contract's `ModelIR` (here
//! [`ModelDocument`]): `metadata`, `architecture`, `parameters`, `layers`, `graph`, with
//! the contract's field names and meaning. The contract cannot say everything a
//! [`Module`] holds (symbolic dims, function signatures, which attributes live in
//! dedicated fields), so ferrumc adds three **extension fields**, all optional on input:
//!
//! | extension | where | holds |
//! |---|---|---|
//! | `dims` | every `TensorSpec`; `ParameterSpec` when not static | the exact dims as dim expressions |
//! | `functions` | top level | every function's name, named inputs and named outputs, in order |
//! | `promoted_attrs` | `metadata` | which module attributes live in dedicated fields |
//! | `fusion_group` | `LayerDefinition` | `{"id": 0, "kind": "matmul"}`: the op's fusion group (ids dense per function in op order) |
//!
//! `from_document(&to_document(&m)?)?` equals `m.canonical()?` for every well-formed
//! module (weights of every source kind, several functions, symbolic dims, multi-result
//! ops, every attribute kind). [`to_json_string`] is deterministic: struct fields in a
//! fixed order, every map ordered by key, pretty-printed, with a trailing newline.
//!
//! # Example
//!
//! ```json
//! {
//!   "metadata": {"name": "tiny", "version": "1", "model_type": "custom",
//!                "architecture_family": "Custom", "description": null, "author": null,
//!                "license": null, "additional": {"producer": "hand-written"},
//!                "promoted_attrs": []},
//!   "architecture": {"name": "tiny", "dimensions": {"vocab_size": 0, "hidden_size": 0,
//!                    "num_layers": 0, "num_heads": 0, "num_kv_heads": null,
//!                    "intermediate_size": null, "max_sequence_length": 0}, "config": {}},
//!   "parameters": [{"name": "w", "shape": [4, 8], "dtype": "f32", "trainable": false,
//!                   "initialization": {"Custom": "safetensors(\"m.safetensors\", \"w\")"},
//!                   "metadata": {"source": {"kind": "safetensors", "file": "m.safetensors", "tensor": "w"}}}],
//!   "layers": [{"name": "forward/0", "layer_type": "linear",
//!               "inputs": [{"name": "forward/%x", "shape": [-1, 8], "dtype": "f32", "dims": ["?batch", "8"]},
//!                          {"name": "@w", "shape": [4, 8], "dtype": "f32", "dims": ["4", "8"]}],
//!               "outputs": [{"name": "forward/%0", "shape": [-1, 4], "dtype": "f32", "dims": ["?batch", "4"]}],
//!               "parameters": ["w"], "config": {}}],
//!   "graph": {"inputs": ["forward/%x"], "outputs": ["forward/%0"],
//!             "nodes": [{"id": "forward/0", "layer_name": "forward/0", "metadata": {"function": "forward"}}],
//!             "edges": []},
//!   "functions": [{"name": "forward",
//!                  "inputs": [{"name": "x", "tensor": {"name": "forward/%x", "shape": [-1, 8], "dtype": "f32", "dims": ["?batch", "8"]}}],
//!                  "outputs": [{"name": "y", "tensor": {"name": "forward/%0", "shape": [-1, 4], "dtype": "f32", "dims": ["?batch", "4"]}}]}]
//! }
//! ```
//!
//! # Mapping
//!
//! **metadata.** `name` is the module name; `version` is `"1"`; `model_type` is the
//! module attribute `model_type` (a string; `"custom"` without one); `architecture_family`
//! is the attribute `architecture_family` when it is a string naming a family
//! (`"Transformer"`, `"CNN"`, `"RNN"`, `"GNN"`, `"Diffusion"`, `"Custom"`), otherwise
//! `"Transformer"` when some function has an `attention` op and `"Custom"` if not;
//! `description`, `author`, `license` are the string attributes of those names (null
//! without). `additional` holds every other module attribute in attribute JSON form
//! (below).
//!
//! **architecture.** `name` is the string attribute `architecture` (else the module
//! name). `dimensions.{vocab_size, hidden_size, num_layers, num_heads, num_kv_heads,
//! intermediate_size, max_sequence_length}` are the non-negative integer attributes of
//! those names (0, or null for the two optional ones, when absent). `config` is written
//! empty: every attribute without a dedicated field goes to `metadata.additional`. On
//! import, the entries of `config` become module attributes exactly like those of
//! `additional` (a name in both is an error).
//!
//! **promoted_attrs** (extension) lists, sorted, the attributes the export moved into
//! dedicated fields. When present, import rebuilds exactly those attributes from their
//! fields, so a `0` dimension or a `"custom"` model type survives the round trip and a
//! default never turns into an attribute. A document without it gets: `model_type` unless
//! it is `"custom"`, `architecture` when it differs from the module name, the non-null
//! `description`/`author`/`license`, and the non-zero dimensions (as integers).
//!
//! **parameters.** One `ParameterSpec` per weight, in weight-table order: `name`, `shape`
//! (static sizes; `-1` for other dims, which then also get `dims`), `dtype` in ferrumc
//! spelling (`"f32"`, `"q4_0"`, `"int4<128>"`), `trainable: false`, `initialization:
//! {"Custom": "<description of the source>"}` (informational), and `metadata.source`,
//! which import requires:
//!
//! * `{"kind": "safetensors", "file": "m.safetensors", "tensor": "fc1.weight"}`
//! * `{"kind": "raw", "file": "m.bin", "offset": 0}`
//! * `{"kind": "inline", "data": {"dtype": "f32", "shape": [2], "values": [1.0, 2.0]}}`
//!
//! **layers.** One `LayerDefinition` per op, function by function, each function's ops in
//! [`Function::op_order`](crate::graph::Function::op_order). `name` is
//! `<function>/<position in op order>`; `layer_type` is the op name; `inputs` has a
//! `TensorSpec` for every operand in order (weights included), `outputs` one per result;
//! `parameters` names the weights among the operands; `config` holds the op's attributes
//! in attribute JSON form (absent optional attributes are left out).
//!
//! **TensorSpec.** `name` is `<function>/%x` for the input `x`, `<function>/%3` for an op
//! result (the text printer's numbering, see
//! [`Function::value_names`](crate::graph::Function::value_names); names that are not
//! identifiers are quoted as there, e.g. `forward/%"a b"`), and `@w` for the weight `w`
//! (`@"onnx::W"` when quoted; import also accepts the unquoted `@onnx::W`). `shape` uses
//! `-1` for every dim that is not static; `dtype` is the ferrumc spelling; `dims`
//! (extension) gives every dim exactly as a dim expression:
//!
//! ```text
//! dim    := '?' | '-'? term (('+' | '-') term)*      e.g. "8", "?batch", "?a*?b+1", "2*?seq-1", "?"
//! term   := factor ('*' factor)*
//! factor := integer | '?' symbol                    symbol: [A-Za-z_][A-Za-z0-9_.]*, at most 128 bytes
//! ```
//!
//! Without `dims`, a dim comes from `shape` (`-1` is `?`). With both, they must agree.
//!
//! **graph.** `inputs` lists the tensor names of every function input, `outputs` the
//! tensor names every function returns, function by function and in order. `nodes` has
//! one node per layer (`id` and `layer_name` are the layer name, `metadata.function` the
//! function's name); `edges` one edge per operand produced by another layer: `source` the
//! producer's node id, `target` the consumer's, `source_output` the result index,
//! `target_input` the operand index.
//!
//! **functions** (extension). `[{"name", "inputs": [{"name", "tensor"}], "outputs":
//! [{"name", "tensor"}]}]`, one per function in module order. An input's `tensor` is the
//! `TensorSpec` defining the input tensor; an output's `tensor` references the returned
//! tensor (an input, a weight or a layer output of the function) with its type. This is
//! what keeps output names and order, unused inputs, and functions without ops.
//!
//! # Attribute JSON form
//!
//! Module attributes (`metadata.additional`, `architecture.config`) and op attributes
//! (`config`) use the plain JSON value whenever it reads back as the same attribute, and
//! a one-key tagged object where plain JSON is ambiguous or cannot say it:
//!
//! | attribute | written as | also accepted |
//! |---|---|---|
//! | `Int` | `3` (an integer) | `{"int": 3}` |
//! | `Float` | `1.0`, `1e-05` (a number with `.` or exponent) | `{"float": 1}` |
//! | `Float` NaN/±∞ | `{"float": "nan"}`, `{"float": "inf"}`, `{"float": "-inf"}` | |
//! | `Bool` | `true` | `{"bool": true}` |
//! | `Str` | `"tanh"` | `{"str": "tanh"}` |
//! | `Ints` | `[0, 2, 1]`; `[]` is an empty `Ints` | `{"ints": [...]}` |
//! | `Floats` | `[0.5, 1.0]` (every element finite) | a list mixing integers and floats |
//! | `Floats` empty / non-finite | `{"floats": []}`, `{"floats": [1.0, "nan"]}` | |
//! | `DType` | `{"dtype": "f32"}` | |
//! | `Tensor` | `{"dtype": "f32", "shape": [2, 2], "values": [1.0, 2.0, "inf", 4.0]}` | bool values `0`/`1` |
//!
//! Tensor values are flattened row-major: floats as numbers (non-finite as the strings
//! above), integers as integers, bools as `true`/`false`; a block-quantized tensor holds
//! its dequantized values. Floats are written in the shortest form that reads back to the
//! same `f64` (serde_json's `float_roundtrip` parsing is enabled for this); NaN payloads
//! are not kept (every NaN reads back as the canonical quiet NaN).
//!
//! # `layer_type` names
//!
//! `layer_type` is exactly an op name of [`crate::op`] ([`Op::name`](crate::op::Op::name),
//! listed in [`Op::NAMES`](crate::op::Op::NAMES)); the op docs there define each one's
//! operands, results and attributes (the `config` keys).
//!
//! | family | layer types |
//! |---|---|
//! | constants | `constant` |
//! | unary elementwise | `neg`, `abs`, `sqrt`, `rsqrt`, `reciprocal`, `exp`, `log`, `tanh`, `erf`, `sigmoid`, `relu`, `silu`, `softplus`, `sin`, `cos`, `floor`, `ceil`, `round`, `sign`, `not`, `isnan`, `identity`, `gelu`, `leaky_relu`, `clip`, `cast` |
//! | binary elementwise | `add`, `sub`, `mul`, `div`, `pow`, `max`, `min`, `mod`, `fmod`, `and`, `or`, `xor`, `equal`, `less`, `less_equal`, `greater`, `greater_equal`, `where` |
//! | reductions | `reduce_sum`, `reduce_mean`, `reduce_max`, `reduce_min`, `reduce_prod`, `reduce_sum_square`, `reduce_l1`, `reduce_l2`, `reduce_log_sum_exp`, `argmax`, `argmin`, `softmax`, `log_softmax`, `cumsum`, `topk` |
//! | linear algebra | `matmul`, `gemm`, `linear`, `quantized_linear` |
//! | shape and data movement | `reshape`, `transpose`, `concat`, `split`, `slice`, `gather`, `gather_elements`, `gather_nd`, `scatter_nd`, `expand`, `squeeze`, `unsqueeze`, `shape`, `constant_of_shape`, `range`, `trilu`, `pad`, `tile` |
//! | normalisation | `layer_norm`, `rms_norm`, `rms_norm_residual` |
//! | fused LLM ops | `rotary_embedding`, `attention`, `silu_mul`, `sample` |
//!
//! # Import
//!
//! [`from_json_str`] and [`from_document`] treat the document as untrusted. Layers may
//! come in any order: the file's order is their creation order, references are resolved
//! in a second pass (so a layer may name a tensor defined further down), and the layers
//! are then ordered topologically (ties in file order); layers that cannot be ordered
//! form a cycle, reported with their names. The result is the canonical module. Errors
//! name the JSON path (`layers[3].inputs[1]: unknown tensor `forward/%9``):
//!
//! * malformed JSON, wrong field types, and nesting deeper than serde_json's recursion
//!   limit (128) are [`JsonError::Syntax`] with line and column;
//! * unknown `layer_type` (with close names), unknown or mistyped `config` attributes;
//! * references to undefined tensors, to tensors of another function, declared types that
//!   disagree with the definition, duplicate layer/tensor/parameter/function/node names,
//!   tensor names starting with `@` (reserved for weights);
//! * bad dtype strings, `dims` that do not parse or disagree with `shape`, negative dims,
//!   rank above [`MAX_RANK`](crate::types::MAX_RANK), element counts above
//!   [`MAX_ELEMENTS`] (2^40, with checked arithmetic; nothing is allocated from a claimed
//!   size), inline literals whose value count differs from their shape's element count;
//! * `graph.inputs`/`graph.outputs` that differ from `functions`, graph nodes naming
//!   unknown layers (or, when nodes are given, a layer without one), edges that match no
//!   layer input, and — when any edges are given — a layer input produced by another
//!   layer without an edge.
//!
//! Empty `graph` lists are not checked (the layers carry the connectivity). Unknown JSON
//! fields are ignored. A document without the `functions` extension gets one function
//! per distinct `metadata.function` of the graph nodes (`forward` for layers without
//! one); its inputs are `graph.inputs`, typed by their first use, and its outputs
//! `graph.outputs`, named after the tensor without the `<function>/%` prefix.

mod document;
mod export;
mod import;
mod values;

pub use document::*;
pub use export::to_document;
pub use import::from_document;
pub use values::{attr_to_value, parse_dim, tensor_to_value, value_to_attr, MAX_DIM_TEXT, MAX_ELEMENTS};

use crate::graph::{CycleError, Module};

/// The `metadata.version` ferrumc writes.
pub const DOCUMENT_VERSION: &str = "1";

/// Module attributes held in `architecture.dimensions`.
pub const DIMENSION_ATTRS: [&str; 7] = [
    "vocab_size",
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "intermediate_size",
    "max_sequence_length",
];

/// Why a document could not be read or written. Every variant about document content
/// names the JSON path of the offending value.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, not the document's shape, or nested too deeply (with line and column).
    #[error("invalid JSON document: {0}")]
    Syntax(#[from] serde_json::Error),
    /// A value that is well-formed JSON but not acceptable.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// A reference to a tensor nothing defines.
    #[error("{path}: unknown tensor `{name}`")]
    UnknownTensor { path: String, name: String },
    /// A `layer_type` that is no op name.
    #[error("{path}: unknown layer type `{name}`{}", suggest(suggestions))]
    UnknownLayerType { path: String, name: String, suggestions: Vec<String> },
    /// A name defined twice.
    #[error("{path}: duplicate {what} `{name}`")]
    Duplicate { path: String, what: &'static str, name: String },
    /// Layers that depend on each other in a circle.
    #[error("{path}: the layers of function `{function}` form a cycle through {}", list_layers(layers))]
    Cycle { path: String, function: String, layers: Vec<String> },
    /// Export of a function whose ops form a cycle.
    #[error("function `{function}` cannot be exported: {source}")]
    CyclicFunction { function: String, source: CycleError },
}

fn suggest(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
    }
}

fn list_layers(layers: &[String]) -> String {
    let shown: Vec<String> = layers.iter().take(8).map(|l| format!("`{l}`")).collect();
    let more = if layers.len() > 8 { format!(" and {} more", layers.len() - 8) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// The module as a pretty-printed, deterministic JSON document with a trailing newline.
pub fn to_json_string(m: &Module) -> Result<String, JsonError> {
    let doc = to_document(m)?;
    let mut s = serde_json::to_string_pretty(&doc)?;
    s.push('\n');
    Ok(s)
}

/// Parse a JSON document and convert it to a module (see [`from_document`]).
pub fn from_json_str(s: &str) -> Result<Module, JsonError> {
    let doc: ModelDocument = serde_json::from_str(s)?;
    from_document(&doc)
}
