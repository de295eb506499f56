//! Module → document: the writing half of [`crate::json`].

use super::document::*;
use super::values::{attr_to_value, dim_strings, seed_shape, tensor_to_value};
use super::{JsonError, DIMENSION_ATTRS, DOCUMENT_VERSION};
use crate::attr::Attr;
use crate::graph::{Function, Module, OpId, ValueDef, ValueId, WeightDecl, WeightSource};
use crate::op::Op;
use crate::types::TensorType;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Convert a module to its JSON document. Fails only when a function's ops form a cycle.
pub fn to_document(m: &Module) -> Result<ModelDocument, JsonError> {
    let (metadata, architecture) = export_metadata(m);
    let parameters = m.weights.iter().map(export_weight).collect();
    let mut layers = Vec::new();
    let mut graph = GraphDefinition::default();
    let mut functions = Vec::with_capacity(m.functions.len());
    for f in &m.functions {
        functions.push(export_function(f, &mut layers, &mut graph)?);
    }
    Ok(ModelDocument { metadata, architecture, parameters, layers, graph, functions: Some(functions) })
}

fn tensor_spec(name: String, ty: &TensorType) -> TensorSpec {
    TensorSpec { name, shape: seed_shape(ty), dtype: ty.dtype.to_string(), dims: Some(dim_strings(ty)) }
}

fn export_metadata(m: &Module) -> (ModelMetadata, ArchitectureDefinition) {
    let mut metadata = ModelMetadata {
        name: m.name.clone(),
        version: DOCUMENT_VERSION.to_string(),
        model_type: "custom".to_string(),
        architecture_family: ModelArchitectureFamily::Custom,
        description: None,
        author: None,
        license: None,
        additional: BTreeMap::new(),
        promoted_attrs: Some(Vec::new()),
    };
    let mut architecture = ArchitectureDefinition { name: m.name.clone(), ..Default::default() };
    let has_attention =
        m.functions.iter().any(|f| f.op_ids().any(|o| f.op(o).is_some_and(|d| matches!(d.op, Op::Attention { .. }))));
    if has_attention {
        metadata.architecture_family = ModelArchitectureFamily::Transformer;
    }
    let mut promoted = Vec::new();
    for (key, attr) in &m.attrs {
        let dims = &mut architecture.dimensions;
        let taken = match (key.as_str(), attr) {
            ("model_type", Attr::Str(s)) => {
                metadata.model_type = s.clone();
                true
            }
            ("architecture", Attr::Str(s)) => {
                architecture.name = s.clone();
                true
            }
            ("architecture_family", Attr::Str(s)) => match ModelArchitectureFamily::parse(s) {
                Some(family) => {
                    metadata.architecture_family = family;
                    true
                }
                None => false,
            },
            ("description", Attr::Str(s)) => {
                metadata.description = Some(s.clone());
                true
            }
            ("author", Attr::Str(s)) => {
                metadata.author = Some(s.clone());
                true
            }
            ("license", Attr::Str(s)) => {
                metadata.license = Some(s.clone());
                true
            }
            (k, Attr::Int(n)) if *n >= 0 && DIMENSION_ATTRS.contains(&k) => {
                let n = *n as u64;
                match k {
                    "vocab_size" => dims.vocab_size = n,
                    "hidden_size" => dims.hidden_size = n,
                    "num_layers" => dims.num_layers = n,
                    "num_heads" => dims.num_heads = n,
                    "num_kv_heads" => dims.num_kv_heads = Some(n),
                    "intermediate_size" => dims.intermediate_size = Some(n),
                    _ => dims.max_sequence_length = n,
                }
                true
            }
            _ => false,
        };
        if taken {
            promoted.push(key.clone());
        } else {
            metadata.additional.insert(key.clone(), attr_to_value(attr));
        }
    }
    metadata.promoted_attrs = Some(promoted);
    (metadata, architecture)
}

/// A short human-readable description of where a weight's data lives.
fn describe_source(w: &WeightDecl) -> String {
    match &w.source {
        WeightSource::Safetensors { file, tensor } => format!("safetensors({file:?}, {tensor:?})"),
        WeightSource::Raw { file, offset } => format!("raw({file:?}, offset = {offset})"),
        WeightSource::Inline(t) => format!("inline {}{:?}", t.dtype, t.shape),
    }
}

fn export_weight(w: &WeightDecl) -> ParameterSpec {
    let mut source = Map::new();
    match &w.source {
        WeightSource::Safetensors { file, tensor } => {
            source.insert("kind".into(), "safetensors".into());
            source.insert("file".into(), file.clone().into());
            source.insert("tensor".into(), tensor.clone().into());
        }
        WeightSource::Raw { file, offset } => {
            source.insert("kind".into(), "raw".into());
            source.insert("file".into(), file.clone().into());
            source.insert("offset".into(), (*offset).into());
        }
        WeightSource::Inline(t) => {
            source.insert("kind".into(), "inline".into());
            source.insert("data".into(), tensor_to_value(t));
        }
    }
    let static_shape = w.ty.shape.iter().all(|d| d.as_fixed().is_some());
    ParameterSpec {
        name: w.name.clone(),
        shape: seed_shape(&w.ty),
        dtype: w.ty.dtype.to_string(),
        trainable: false,
        initialization: InitializationStrategy::Custom(describe_source(w)),
        metadata: BTreeMap::from([("source".to_string(), Value::Object(source))]),
        dims: (!static_shape).then(|| dim_strings(&w.ty)),
    }
}

fn export_function(
    f: &Function,
    layers: &mut Vec<LayerDefinition>,
    graph: &mut GraphDefinition,
) -> Result<FunctionSpec, JsonError> {
    let order = f.op_order().map_err(|source| JsonError::CyclicFunction { function: f.name.clone(), source })?;
    let names = f.value_names();
    let tensor_name = |v: ValueId| -> String {
        match names.get(&v) {
            Some(n) if n.starts_with('@') => n.clone(),
            Some(n) => format!("{}/{n}", f.name),
            // An operand whose producer was erased: it has no name, so give it one that
            // cannot be resolved; import reports it.
            None => format!("{}/%<dangling {}>", f.name, v.0),
        }
    };
    let layer_name = |i: usize| format!("{}/{i}", f.name);
    let position: HashMap<OpId, usize> = order.iter().enumerate().map(|(i, o)| (*o, i)).collect();
    let dense_groups = f.dense_group_ids(&order);

    let mut spec = FunctionSpec { name: f.name.clone(), inputs: Vec::new(), outputs: Vec::new() };
    for (name, v) in f.params() {
        let tensor = tensor_spec(tensor_name(*v), f.ty(*v));
        graph.inputs.push(tensor.name.clone());
        spec.inputs.push(PortSpec { name: name.clone(), tensor });
    }
    for (i, id) in order.iter().enumerate() {
        let Some(data) = f.op(*id) else { continue };
        let name = layer_name(i);
        let mut parameters: Vec<String> = Vec::new();
        let mut inputs = Vec::with_capacity(data.operands.len());
        for (slot, &v) in data.operands.iter().enumerate() {
            let Some(vd) = f.try_value(v) else {
                inputs.push(TensorSpec {
                    name: format!("{}/%<invalid {}>", f.name, v.0),
                    shape: vec![],
                    dtype: "f32".into(),
                    dims: None,
                });
                continue;
            };
            inputs.push(tensor_spec(tensor_name(v), &vd.ty));
            match &vd.def {
                ValueDef::Weight { name } if !parameters.contains(name) => parameters.push(name.clone()),
                ValueDef::Result { op, index } => {
                    if let Some(&p) = position.get(op) {
                        graph.edges.push(GraphEdge {
                            source: layer_name(p),
                            target: name.clone(),
                            source_output: Some(*index as usize),
                            target_input: Some(slot),
                        });
                    }
                }
                _ => {}
            }
        }
        let outputs = data.results.iter().map(|&r| tensor_spec(tensor_name(r), f.ty(r))).collect();
        let config = data.op.attr_map().iter().map(|(k, a)| (k.clone(), attr_to_value(a))).collect();
        graph.nodes.push(GraphNode {
            id: name.clone(),
            layer_name: name.clone(),
            metadata: BTreeMap::from([("function".to_string(), Value::String(f.name.clone()))]),
        });
        layers.push(LayerDefinition {
            name,
            layer_type: data.op.name().to_string(),
            inputs,
            outputs,
            parameters,
            config,
            // A group without a declared kind cannot be written (the verifier rejects it).
            fusion_group: f.group(*id).and_then(|g| {
                Some(FusionGroupSpec { id: *dense_groups.get(&g)?, kind: f.group_kind(g)?.name().to_string() })
            }),
        });
    }
    for (name, v) in f.outputs() {
        let tensor = match f.try_value(*v) {
            Some(vd) => tensor_spec(tensor_name(*v), &vd.ty),
            None => TensorSpec {
                name: format!("{}/%<invalid {}>", f.name, v.0),
                shape: vec![],
                dtype: "f32".into(),
                dims: None,
            },
        };
        graph.outputs.push(tensor.name.clone());
        spec.outputs.push(PortSpec { name: name.clone(), tensor });
    }
    Ok(spec)
}
