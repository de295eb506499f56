//! The serde data model of `model.json`: the ModelIR document of the Ferrum interface
//! contract (metadata, architecture, parameters, layers, graph) plus ferrumc's
//! extensions (`dims`, `functions`, `promoted_attrs`), each optional on input so that a
//! document without them still deserializes.
//!
//! Field names and their meaning follow the contract; the field types are the JSON-level
//! types (dtypes and model types are plain strings, maps are ordered so output is
//! deterministic). What each field holds for a ferrumc module is described in the
//! [parent module](super).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A whole `model.json` document (the contract's `ModelIR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDocument {
    /// Model metadata; `metadata.name` is the module name.
    pub metadata: ModelMetadata,
    /// Architecture name, dimensions and configuration.
    #[serde(default)]
    pub architecture: ArchitectureDefinition,
    /// One entry per module weight, in weight-table order.
    #[serde(default)]
    pub parameters: Vec<ParameterSpec>,
    /// One entry per op, function by function, each function's ops in topological order.
    #[serde(default)]
    pub layers: Vec<LayerDefinition>,
    /// Graph inputs, outputs, nodes and edges.
    #[serde(default)]
    pub graph: GraphDefinition,
    /// Extension: every function's name, named inputs and named outputs, in order.
    /// Absent in documents that only use the contract's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<FunctionSpec>>,
}

/// The document's metadata block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Model (module) name.
    pub name: String,
    /// Document version; ferrumc writes `"1"`.
    #[serde(default)]
    pub version: String,
    /// Model type (module attribute `model_type`; `"custom"` when the module has none).
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Architecture family.
    #[serde(default)]
    pub architecture_family: ModelArchitectureFamily,
    /// Free-form description (module attribute `description`).
    #[serde(default)]
    pub description: Option<String>,
    /// Author (module attribute `author`).
    #[serde(default)]
    pub author: Option<String>,
    /// License (module attribute `license`).
    #[serde(default)]
    pub license: Option<String>,
    /// Every module attribute not held by a dedicated field, in attribute JSON form.
    #[serde(default)]
    pub additional: BTreeMap<String, Value>,
    /// Extension: the module attributes whose values live in dedicated fields
    /// (`model_type`, `architecture.name`, `architecture.dimensions.*`, …). When present,
    /// exactly these attributes are rebuilt from those fields on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_attrs: Option<Vec<String>>,
}

fn default_model_type() -> String {
    "custom".to_string()
}

/// Architecture families of the contract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelArchitectureFamily {
    /// Transformer-based models.
    Transformer,
    /// Convolutional networks.
    CNN,
    /// Recurrent networks.
    RNN,
    /// Graph neural networks.
    GNN,
    /// Diffusion models.
    Diffusion,
    /// Anything else.
    #[default]
    Custom,
}

impl ModelArchitectureFamily {
    /// Every family, in declaration order.
    pub const ALL: [ModelArchitectureFamily; 6] = [
        ModelArchitectureFamily::Transformer,
        ModelArchitectureFamily::CNN,
        ModelArchitectureFamily::RNN,
        ModelArchitectureFamily::GNN,
        ModelArchitectureFamily::Diffusion,
        ModelArchitectureFamily::Custom,
    ];

    /// The JSON spelling (`"Transformer"`, `"CNN"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelArchitectureFamily::Transformer => "Transformer",
            ModelArchitectureFamily::CNN => "CNN",
            ModelArchitectureFamily::RNN => "RNN",
            ModelArchitectureFamily::GNN => "GNN",
            ModelArchitectureFamily::Diffusion => "Diffusion",
            ModelArchitectureFamily::Custom => "Custom",
        }
    }

    /// Parse the JSON spelling.
    pub fn parse(s: &str) -> Option<ModelArchitectureFamily> {
        Self::ALL.iter().copied().find(|f| f.as_str() == s)
    }
}

/// Architecture name, dimensions and architecture-specific configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchitectureDefinition {
    /// Architecture name (module attribute `architecture`, else the module name).
    #[serde(default)]
    pub name: String,
    /// Model dimensions.
    #[serde(default)]
    pub dimensions: ModelDimensions,
    /// Architecture-specific configuration. ferrumc writes it empty (other attributes go
    /// to `metadata.additional`); on import its entries become module attributes.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
}

/// Model dimensions and hyperparameters (0 / null when unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDimensions {
    /// Vocabulary size.
    #[serde(default)]
    pub vocab_size: u64,
    /// Hidden (embedding) dimension.
    #[serde(default)]
    pub hidden_size: u64,
    /// Number of layers.
    #[serde(default)]
    pub num_layers: u64,
    /// Number of attention heads.
    #[serde(default)]
    pub num_heads: u64,
    /// Number of key/value heads (GQA/MQA).
    #[serde(default)]
    pub num_kv_heads: Option<u64>,
    /// Intermediate (FFN) dimension.
    #[serde(default)]
    pub intermediate_size: Option<u64>,
    /// Maximum sequence length.
    #[serde(default)]
    pub max_sequence_length: u64,
}

/// One module weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterSpec {
    /// Weight name (without `@`).
    pub name: String,
    /// Shape; `-1` for a dimension that is not static.
    pub shape: Vec<i64>,
    /// Element dtype in ferrumc spelling (`f32`, `q4_0`, `int4<128>`).
    pub dtype: String,
    /// Always `false` for ferrumc (inference only); ignored on import.
    #[serde(default)]
    pub trainable: bool,
    /// Initialization strategy; ferrumc writes `Custom` with a description of the data
    /// source. Informational: the source itself is `metadata.source`.
    #[serde(default = "default_initialization")]
    pub initialization: InitializationStrategy,
    /// `source` (required on import) describes where the data lives; other keys are ignored.
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    /// Extension: exact dims (see [`TensorSpec::dims`]); written only when some
    /// dimension is not static.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<Vec<String>>,
}

fn default_initialization() -> InitializationStrategy {
    InitializationStrategy::Custom(String::new())
}

/// Parameter initialization strategies of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InitializationStrategy {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Uniform random in `[min, max)`.
    Uniform { min: f32, max: f32 },
    /// Normal random.
    Normal { mean: f32, std: f32 },
    /// Xavier/Glorot.
    Xavier,
    /// Kaiming/He.
    Kaiming,
    /// Anything else, described in words.
    Custom(String),
}

/// One op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerDefinition {
    /// Unique layer name; ferrumc writes `<function>/<index in op order>`.
    pub name: String,
    /// The op name (see the table in the [parent module](super)).
    pub layer_type: String,
    /// Every operand, in operand order.
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    /// Every result, in result order; these define the result tensors' names and types.
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
    /// Names of the weights among the operands (informational; checked on import).
    #[serde(default)]
    pub parameters: Vec<String>,
    /// The op's attributes, in attribute JSON form.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
    /// Extension: the fusion group the op belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion_group: Option<FusionGroupSpec>,
}

/// Extension: an op's fusion group: its id (per function, dense in op order on export)
/// and the group's kind (`elementwise`, `reduction`, `matmul`, `attention`,
/// `data_movement`, `opaque`), repeated on every member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionGroupSpec {
    pub id: u32,
    pub kind: String,
}

/// A tensor reference: name, seed-style shape, dtype, and exact dims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name: `<function>/%x` for an input, `<function>/%3` for an op result
    /// (printer numbering), `@w` for a weight.
    pub name: String,
    /// Shape; `-1` for a dimension that is not static.
    #[serde(default)]
    pub shape: Vec<i64>,
    /// Element dtype in ferrumc spelling.
    pub dtype: String,
    /// Extension: the exact dims as dim expressions (`"8"`, `"?batch"`, `"?a*?b+1"`,
    /// `"?"`). When absent, dims come from `shape` (`-1` reads as `?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<Vec<String>>,
}

/// Graph-level connectivity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphDefinition {
    /// Names of every function input tensor, function by function.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Names of the tensors every function returns, function by function, in output
    /// order (the output *names* are in the `functions` extension).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// One node per layer.
    #[serde(default)]
    pub nodes: Vec<GraphNode>,
    /// One edge per operand produced by another layer.
    #[serde(default)]
    pub edges: Vec<GraphEdge>,
}

/// A graph node standing for one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    /// Node id (ferrumc: the layer name).
    pub id: String,
    /// The layer this node stands for.
    pub layer_name: String,
    /// `function`: the name of the function the layer belongs to.
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
}

/// A data dependency between two layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphEdge {
    /// Producing node id.
    pub source: String,
    /// Consuming node id.
    pub target: String,
    /// Result index of the producer.
    #[serde(default)]
    pub source_output: Option<usize>,
    /// Operand index of the consumer.
    #[serde(default)]
    pub target_input: Option<usize>,
}

/// Extension: one function's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// Function name.
    pub name: String,
    /// Inputs in order: the input's name and the tensor layers refer to it by.
    #[serde(default)]
    pub inputs: Vec<PortSpec>,
    /// Outputs in order: the output's name and the tensor it returns (an input, a weight
    /// or a layer output of this function).
    #[serde(default)]
    pub outputs: Vec<PortSpec>,
}

/// Extension: a named function input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The input's or output's own name.
    pub name: String,
    /// The tensor: for an input, the tensor it defines; for an output, the tensor returned.
    pub tensor: TensorSpec,
}
