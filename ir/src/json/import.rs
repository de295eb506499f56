//! Document → module: the reading half of [`crate::json`], written for untrusted input.
//!
//! Import runs in passes so that layers may appear in any order in the file:
//! 1. module attributes and weights;
//! 2. function signatures (from the `functions` extension when present);
//! 3. layer names, graph nodes (which say which function a layer belongs to);
//! 4. every layer's op (`layer_type` + `config`) and result tensors, registering the
//!    result names;
//! 5. every layer's operands, resolved by name against inputs, weights and the results
//!    of *any* layer of the same function (forward references are fine), with each
//!    reference's declared type checked against the definition;
//! 6. function outputs, `graph.inputs`/`graph.outputs`, and the edges, checked against
//!    what the layers say;
//! 7. per function, a topological order of the layers (ties in file order); layers left
//!    over form a cycle and are reported by name;
//! 8. building the functions in that order, which yields the canonical form directly.

use super::document::*;
use super::values::{clip, parse_type, seed_shape, value_to_attr, value_to_tensor_literal};
use super::{JsonError, DIMENSION_ATTRS};
use crate::attr::Attr;
use crate::graph::{quote_name, Function, GroupKind, Module, ValueId, WeightDecl, WeightSource};
use crate::op::{Op, OpBuildError};
use crate::types::TensorType;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

fn invalid(path: impl Into<String>, message: impl Into<String>) -> JsonError {
    JsonError::Invalid { path: path.into(), message: message.into() }
}

fn duplicate(path: impl Into<String>, what: &'static str, name: &str) -> JsonError {
    JsonError::Duplicate { path: path.into(), what, name: clip(name) }
}

/// What a tensor name refers to.
#[derive(Clone, Copy)]
enum TensorDef {
    /// Function input with this global input id.
    Input(usize),
    /// Result `index` of layer `layer` (indices into the document's `layers`).
    Result { layer: usize, index: usize },
}

/// An edge's `(source_output, target_input)`.
type EdgeSlots = (Option<usize>, Option<usize>);

/// A resolved operand or output.
#[derive(Clone, Copy)]
enum Operand {
    Def(TensorDef),
    /// A module weight (index into the weight table).
    Weight(usize),
}

struct InputInfo {
    name: String,
    func: usize,
    ty: TensorType,
    /// Position among all inputs, which orders a function's parameters.
    order: usize,
}

struct LayerInfo {
    func: usize,
    op: Op,
    results: Vec<TensorType>,
    operands: Vec<Operand>,
    group: Option<(u32, GroupKind)>,
}

struct FuncInfo {
    name: String,
    outputs: Vec<(String, Operand)>,
}

/// Convert a document to a module (in canonical form). See the [module docs](super) for
/// what is checked.
pub fn from_document(doc: &ModelDocument) -> Result<Module, JsonError> {
    let attrs = import_attrs(doc)?;
    let weights = import_weights(&doc.parameters)?;
    let mut st = State::new(doc, weights);
    st.signatures()?;
    st.layers_and_nodes()?;
    st.resolve_operands()?;
    st.outputs_and_graph_lists()?;
    st.check_edges()?;
    let functions = st.build()?;
    let module = Module { name: doc.metadata.name.clone(), attrs, weights: st.weights, functions };
    module.canonical().map_err(|source| JsonError::CyclicFunction { function: String::new(), source })
}

// ---------------------------------------------------------------------- attributes

fn dimension_attr(n: u64, path: String) -> Result<Attr, JsonError> {
    i64::try_from(n).map(Attr::Int).map_err(|_| invalid(path, format!("{n} does not fit in a signed 64-bit integer")))
}

fn import_attrs(doc: &ModelDocument) -> Result<BTreeMap<String, Attr>, JsonError> {
    let md = &doc.metadata;
    let arch = &doc.architecture;
    let dims = &arch.dimensions;
    let mut attrs = BTreeMap::new();
    let dim_value = |name: &str| -> Option<u64> {
        match name {
            "vocab_size" => Some(dims.vocab_size),
            "hidden_size" => Some(dims.hidden_size),
            "num_layers" => Some(dims.num_layers),
            "num_heads" => Some(dims.num_heads),
            "num_kv_heads" => dims.num_kv_heads,
            "intermediate_size" => dims.intermediate_size,
            "max_sequence_length" => Some(dims.max_sequence_length),
            _ => None,
        }
    };
    match &md.promoted_attrs {
        Some(list) => {
            for (i, name) in list.iter().enumerate() {
                let path = format!("metadata.promoted_attrs[{i}]");
                let text = |field: &Option<String>, field_name: &str| {
                    field.clone().map(Attr::Str).ok_or_else(|| {
                        invalid(path.clone(), format!("`{field_name}` is listed but metadata.{field_name} is null"))
                    })
                };
                let attr = match name.as_str() {
                    "model_type" => Attr::Str(md.model_type.clone()),
                    "architecture" => Attr::Str(arch.name.clone()),
                    "architecture_family" => Attr::Str(md.architecture_family.as_str().to_string()),
                    "description" => text(&md.description, "description")?,
                    "author" => text(&md.author, "author")?,
                    "license" => text(&md.license, "license")?,
                    d if DIMENSION_ATTRS.contains(&d) => match dim_value(d) {
                        Some(n) => dimension_attr(n, format!("architecture.dimensions.{d}"))?,
                        None => {
                            return Err(invalid(
                                path,
                                format!("`{d}` is listed but architecture.dimensions.{d} is null"),
                            ))
                        }
                    },
                    other => {
                        return Err(invalid(
                            path,
                            format!("`{}` is not an attribute held by a dedicated field", clip(other)),
                        ))
                    }
                };
                if attrs.insert(name.clone(), attr).is_some() {
                    return Err(duplicate(path, "promoted attribute", name));
                }
            }
        }
        None => {
            // A document with only the contract's fields: take what carries information.
            if md.model_type != "custom" {
                attrs.insert("model_type".to_string(), Attr::Str(md.model_type.clone()));
            }
            if !arch.name.is_empty() && arch.name != md.name {
                attrs.insert("architecture".to_string(), Attr::Str(arch.name.clone()));
            }
            for (key, field) in [("description", &md.description), ("author", &md.author), ("license", &md.license)] {
                if let Some(s) = field {
                    attrs.insert(key.to_string(), Attr::Str(s.clone()));
                }
            }
            for d in DIMENSION_ATTRS {
                if let Some(n) = dim_value(d).filter(|n| *n != 0) {
                    attrs.insert(d.to_string(), dimension_attr(n, format!("architecture.dimensions.{d}"))?);
                }
            }
        }
    }
    for (prefix, map) in [("metadata.additional", &md.additional), ("architecture.config", &arch.config)] {
        for (key, value) in map {
            let path = format!("{prefix}.{key}");
            let attr = value_to_attr(value, &path)?;
            if attrs.insert(key.clone(), attr).is_some() {
                return Err(duplicate(path, "module attribute", key));
            }
        }
    }
    Ok(attrs)
}

// ---------------------------------------------------------------------- weights

fn import_weights(params: &[ParameterSpec]) -> Result<Vec<WeightDecl>, JsonError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        let path = format!("parameters[{i}]");
        if !seen.insert(p.name.as_str()) {
            return Err(duplicate(format!("{path}.name"), "parameter", &p.name));
        }
        let ty = parse_type(&p.shape, &p.dtype, p.dims.as_deref(), &path)?;
        let source = import_source(p.metadata.get("source"), &format!("{path}.metadata.source"))?;
        out.push(WeightDecl { name: p.name.clone(), ty, source });
    }
    Ok(out)
}

fn import_source(v: Option<&Value>, path: &str) -> Result<WeightSource, JsonError> {
    let Some(v) = v else {
        return Err(invalid(path, "missing: every parameter needs a data source (safetensors, raw or inline)"));
    };
    let Value::Object(map) = v else {
        return Err(invalid(path, "expected an object {\"kind\": \"safetensors\" | \"raw\" | \"inline\", …}"));
    };
    let string = |key: &str| match map.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(invalid(format!("{path}.{key}"), "expected a string")),
        None => Err(invalid(format!("{path}.{key}"), "missing")),
    };
    let kind = string("kind")?;
    let allowed: &[&str] = match kind.as_str() {
        "safetensors" => &["kind", "file", "tensor"],
        "raw" => &["kind", "file", "offset"],
        "inline" => &["kind", "data"],
        other => {
            return Err(invalid(
                format!("{path}.kind"),
                format!("unknown source kind `{}` (expected safetensors, raw or inline)", clip(other)),
            ))
        }
    };
    if let Some(extra) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!("{path}.{extra}"), format!("unexpected key for a `{kind}` source")));
    }
    match kind.as_str() {
        "safetensors" => Ok(WeightSource::Safetensors { file: string("file")?, tensor: string("tensor")? }),
        "raw" => {
            let offset = match map.get("offset") {
                Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(0),
                Some(_) => return Err(invalid(format!("{path}.offset"), "expected a non-negative integer")),
                None => return Err(invalid(format!("{path}.offset"), "missing")),
            };
            Ok(WeightSource::Raw { file: string("file")?, offset })
        }
        _ => {
            let data = map.get("data").ok_or_else(|| invalid(format!("{path}.data"), "missing"))?;
            Ok(WeightSource::Inline(value_to_tensor_literal(data, &format!("{path}.data"))?))
        }
    }
}

// ---------------------------------------------------------------------- the layer graph

struct State<'d> {
    doc: &'d ModelDocument,
    weights: Vec<WeightDecl>,
    /// `@name` (quoted as the text format does, or raw) → weight index.
    weight_refs: HashMap<String, usize>,
    funcs: Vec<FuncInfo>,
    func_index: HashMap<String, usize>,
    inputs: Vec<InputInfo>,
    /// Every input and result tensor name of the document.
    tensors: HashMap<&'d str, (usize, TensorDef)>,
    /// Plain documents only: `graph.inputs` name → position, for inputs not yet typed.
    pending_inputs: HashMap<&'d str, usize>,
    layers: Vec<LayerInfo>,
    layer_index: HashMap<&'d str, usize>,
    /// Graph node id → layer index.
    node_ids: HashMap<&'d str, usize>,
    /// The type each function gives each weight it reads (first use decides).
    weight_types: HashMap<(usize, usize), TensorType>,
}

impl<'d> State<'d> {
    fn new(doc: &'d ModelDocument, weights: Vec<WeightDecl>) -> State<'d> {
        let mut weight_refs = HashMap::new();
        for (i, w) in weights.iter().enumerate() {
            weight_refs.insert(format!("@{}", quote_name(&w.name)), i);
        }
        for (i, w) in weights.iter().enumerate() {
            weight_refs.entry(format!("@{}", w.name)).or_insert(i);
        }
        State {
            doc,
            weights,
            weight_refs,
            funcs: Vec::new(),
            func_index: HashMap::new(),
            inputs: Vec::new(),
            tensors: HashMap::new(),
            pending_inputs: HashMap::new(),
            layers: Vec::new(),
            layer_index: HashMap::new(),
            node_ids: HashMap::new(),
            weight_types: HashMap::new(),
        }
    }

    fn extended(&self) -> bool {
        self.doc.functions.is_some()
    }

    fn register(&mut self, name: &'d str, func: usize, def: TensorDef, path: &str) -> Result<(), JsonError> {
        if name.starts_with('@') {
            return Err(invalid(
                path,
                format!("tensor name `{}` starts with `@`, which is reserved for parameters", clip(name)),
            ));
        }
        if self.tensors.insert(name, (func, def)).is_some() || self.pending_inputs.contains_key(name) {
            return Err(duplicate(path, "tensor", name));
        }
        Ok(())
    }

    fn def_type(&self, def: TensorDef) -> &TensorType {
        match def {
            TensorDef::Input(g) => &self.inputs[g].ty,
            TensorDef::Result { layer, index } => &self.layers[layer].results[index],
        }
    }

    /// Pass 2: function signatures from the `functions` extension; in a plain document,
    /// the names `graph.inputs` lists (typed later, by their first use).
    fn signatures(&mut self) -> Result<(), JsonError> {
        let doc = self.doc;
        let Some(functions) = &doc.functions else {
            for (i, name) in doc.graph.inputs.iter().enumerate() {
                if self.pending_inputs.insert(name, i).is_some() {
                    return Err(duplicate(format!("graph.inputs[{i}]"), "graph input", name));
                }
            }
            return Ok(());
        };
        for (fi, fs) in functions.iter().enumerate() {
            let path = format!("functions[{fi}]");
            if self.func_index.insert(fs.name.clone(), fi).is_some() {
                return Err(duplicate(format!("{path}.name"), "function", &fs.name));
            }
            self.funcs.push(FuncInfo { name: fs.name.clone(), outputs: Vec::new() });
            for (k, port) in fs.inputs.iter().enumerate() {
                let p = format!("{path}.inputs[{k}].tensor");
                let t = &port.tensor;
                let ty = parse_type(&t.shape, &t.dtype, t.dims.as_deref(), &p)?;
                let g = self.inputs.len();
                self.register(&t.name, fi, TensorDef::Input(g), &format!("{p}.name"))?;
                self.inputs.push(InputInfo { name: port.name.clone(), func: fi, ty, order: g });
            }
        }
        Ok(())
    }

    fn function_named(&mut self, name: &str, path: &str) -> Result<usize, JsonError> {
        if let Some(&fi) = self.func_index.get(name) {
            return Ok(fi);
        }
        if self.extended() {
            return Err(invalid(path, format!("unknown function `{}`", clip(name))));
        }
        let fi = self.funcs.len();
        self.funcs.push(FuncInfo { name: name.to_string(), outputs: Vec::new() });
        self.func_index.insert(name.to_string(), fi);
        Ok(fi)
    }

    /// Passes 3 and 4: layer names, graph nodes, ops and result tensors.
    fn layers_and_nodes(&mut self) -> Result<(), JsonError> {
        let doc = self.doc;
        for (li, layer) in doc.layers.iter().enumerate() {
            if self.layer_index.insert(&layer.name, li).is_some() {
                return Err(duplicate(format!("layers[{li}].name"), "layer", &layer.name));
            }
        }
        // Which function each layer belongs to, as its graph node says.
        let mut node_function: Vec<Option<(usize, Option<&'d str>)>> = vec![None; doc.layers.len()];
        for (ni, node) in doc.graph.nodes.iter().enumerate() {
            let path = format!("graph.nodes[{ni}]");
            let Some(&li) = self.layer_index.get(node.layer_name.as_str()) else {
                return Err(invalid(
                    format!("{path}.layer_name"),
                    format!("unknown layer `{}`", clip(&node.layer_name)),
                ));
            };
            if self.node_ids.insert(&node.id, li).is_some() {
                return Err(duplicate(format!("{path}.id"), "graph node", &node.id));
            }
            if node_function[li].is_some() {
                return Err(duplicate(format!("{path}.layer_name"), "graph node for layer", &node.layer_name));
            }
            let func = match node.metadata.get("function") {
                None => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => return Err(invalid(format!("{path}.metadata.function"), "expected a string")),
            };
            node_function[li] = Some((ni, func));
        }
        for (li, layer) in doc.layers.iter().enumerate() {
            let path = format!("layers[{li}]");
            if !doc.graph.nodes.is_empty() && node_function[li].is_none() {
                return Err(invalid(path, format!("no graph node stands for layer `{}`", clip(&layer.name))));
            }
            let func = match node_function[li] {
                Some((ni, Some(name))) => self.function_named(name, &format!("graph.nodes[{ni}].metadata.function"))?,
                _ if !self.extended() => self.function_named("forward", &path)?,
                _ => {
                    let prefix = layer.name.rsplit_once('/').map(|(p, _)| p);
                    match prefix.and_then(|p| self.func_index.get(p)) {
                        Some(&fi) => fi,
                        None if self.funcs.len() == 1 => 0,
                        None => {
                            return Err(invalid(
                                format!("{path}.name"),
                                format!(
                                    "cannot tell which function layer `{}` belongs to (name it `<function>/<n>` or give its graph node a `function`)",
                                    clip(&layer.name)
                                ),
                            ))
                        }
                    }
                }
            };
            let op = import_op(layer, &path)?;
            let mut results = Vec::with_capacity(layer.outputs.len());
            for (k, t) in layer.outputs.iter().enumerate() {
                let p = format!("{path}.outputs[{k}]");
                results.push(parse_type(&t.shape, &t.dtype, t.dims.as_deref(), &p)?);
                self.register(&t.name, func, TensorDef::Result { layer: li, index: k }, &format!("{p}.name"))?;
            }
            let group = match &layer.fusion_group {
                None => None,
                Some(g) => match GroupKind::from_name(&g.kind) {
                    Some(kind) => Some((g.id, kind)),
                    None => {
                        return Err(invalid(
                            format!("{path}.fusion_group.kind"),
                            format!("unknown fusion group kind `{}`", clip(&g.kind)),
                        ))
                    }
                },
            };
            self.layers.push(LayerInfo { func, op, results, operands: Vec::new(), group });
        }
        Ok(())
    }

    /// Resolve a tensor reference made from function `func`, checking the declared type
    /// against the definition (see `check_same`).
    fn resolve(&mut self, spec: &'d TensorSpec, func: usize, path: &str) -> Result<Operand, JsonError> {
        let declared = parse_type(&spec.shape, &spec.dtype, spec.dims.as_deref(), path)?;
        let name = spec.name.as_str();
        if name.starts_with('@') {
            let Some(&w) = self.weight_refs.get(name) else {
                return Err(JsonError::UnknownTensor { path: path.to_string(), name: clip(name) });
            };
            match self.weight_types.get(&(func, w)) {
                Some(ty) => check_same(spec, &declared, ty, path, "its earlier use in this function")?,
                None => {
                    self.weight_types.insert((func, w), declared);
                }
            }
            return Ok(Operand::Weight(w));
        }
        if let Some(&(owner, def)) = self.tensors.get(name) {
            if owner != func {
                return Err(invalid(
                    format!("{path}.name"),
                    format!(
                        "tensor `{}` belongs to function `{}`, not `{}`",
                        clip(name),
                        clip(&self.funcs[owner].name),
                        clip(&self.funcs[func].name)
                    ),
                ));
            }
            let what = match def {
                TensorDef::Input(_) => "the function input".to_string(),
                TensorDef::Result { layer, index } => {
                    format!("its definition at layers[{layer}].outputs[{index}]")
                }
            };
            check_same(spec, &declared, self.def_type(def), path, &what)?;
            return Ok(Operand::Def(def));
        }
        if let Some(order) = self.pending_inputs.remove(name) {
            // A plain document: a graph input is typed and owned by its first use.
            let g = self.inputs.len();
            let short = short_name(name, &self.funcs[func].name);
            self.inputs.push(InputInfo { name: short, func, ty: declared, order });
            self.tensors.insert(name, (func, TensorDef::Input(g)));
            return Ok(Operand::Def(TensorDef::Input(g)));
        }
        Err(JsonError::UnknownTensor { path: path.to_string(), name: clip(name) })
    }

    /// Pass 5: every layer's operands.
    fn resolve_operands(&mut self) -> Result<(), JsonError> {
        let doc = self.doc;
        for (li, layer) in doc.layers.iter().enumerate() {
            let func = self.layers[li].func;
            let mut operands = Vec::with_capacity(layer.inputs.len());
            for (j, spec) in layer.inputs.iter().enumerate() {
                operands.push(self.resolve(spec, func, &format!("layers[{li}].inputs[{j}]"))?);
            }
            for (k, p) in layer.parameters.iter().enumerate() {
                let reads = operands.iter().any(|o| matches!(o, Operand::Weight(w) if self.weights[*w].name == *p));
                if !reads {
                    return Err(invalid(
                        format!("layers[{li}].parameters[{k}]"),
                        format!("`{}` is not a parameter among the layer's inputs", clip(p)),
                    ));
                }
            }
            self.layers[li].operands = operands;
        }
        Ok(())
    }

    /// Pass 6: function outputs, and `graph.inputs` / `graph.outputs`.
    fn outputs_and_graph_lists(&mut self) -> Result<(), JsonError> {
        let doc = self.doc;
        let graph = &doc.graph;
        if let Some(functions) = &doc.functions {
            let mut listed_outputs: Vec<&str> = Vec::new();
            for (fi, fs) in functions.iter().enumerate() {
                for (k, port) in fs.outputs.iter().enumerate() {
                    let path = format!("functions[{fi}].outputs[{k}].tensor");
                    let operand = self.resolve(&port.tensor, fi, &path)?;
                    self.funcs[fi].outputs.push((port.name.clone(), operand));
                    listed_outputs.push(&port.tensor.name);
                }
            }
            let listed_inputs: Vec<&str> =
                functions.iter().flat_map(|f| f.inputs.iter().map(|p| p.tensor.name.as_str())).collect();
            check_list("graph.inputs", &graph.inputs, &listed_inputs, "function inputs")?;
            check_list("graph.outputs", &graph.outputs, &listed_outputs, "function outputs")?;
            return Ok(());
        }
        let mut pending: Vec<(&str, usize)> = self.pending_inputs.iter().map(|(n, o)| (*n, *o)).collect();
        pending.sort_by_key(|(_, o)| *o);
        if let Some((name, order)) = pending.first() {
            return Err(invalid(
                format!("graph.inputs[{order}]"),
                format!(
                    "input `{}` is not used by any layer, so its type is unknown (the `functions` extension can declare it)",
                    clip(name)
                ),
            ));
        }
        for (k, name) in graph.outputs.iter().enumerate() {
            let path = format!("graph.outputs[{k}]");
            let (func, operand) = if let Some(&w) = self.weight_refs.get(name.as_str()) {
                if self.funcs.is_empty() {
                    return Err(invalid(path, "a parameter cannot be an output of a document without layers"));
                }
                if !self.weight_types.contains_key(&(0, w)) {
                    self.weight_types.insert((0, w), self.weights[w].ty.clone());
                }
                (0, Operand::Weight(w))
            } else if let Some(&(func, def)) = self.tensors.get(name.as_str()) {
                (func, Operand::Def(def))
            } else {
                return Err(JsonError::UnknownTensor { path, name: clip(name) });
            };
            let short = short_name(name, &self.funcs[func].name);
            self.funcs[func].outputs.push((short, operand));
        }
        Ok(())
    }

    /// Pass 6 (cont.): every edge must match a layer input, and when edges are given,
    /// every input produced by another layer must have one.
    fn check_edges(&self) -> Result<(), JsonError> {
        let doc = self.doc;
        let edges = &doc.graph.edges;
        if edges.is_empty() {
            return Ok(());
        }
        let endpoints = if doc.graph.nodes.is_empty() { &self.layer_index } else { &self.node_ids };
        let mut by_pair: HashMap<(usize, usize), Vec<EdgeSlots>> = HashMap::new();
        for (ei, e) in edges.iter().enumerate() {
            let path = format!("graph.edges[{ei}]");
            let lookup = |id: &str, field: &str| {
                endpoints
                    .get(id)
                    .copied()
                    .ok_or_else(|| invalid(format!("{path}.{field}"), format!("unknown node `{}`", clip(id))))
            };
            let source = lookup(&e.source, "source")?;
            let target = lookup(&e.target, "target")?;
            let operands = &self.layers[target].operands;
            let feeds = |j: usize| {
                matches!(operands.get(j), Some(Operand::Def(TensorDef::Result { layer, index }))
                    if *layer == source && e.source_output.is_none_or(|i| i == *index))
            };
            let ok = match e.target_input {
                Some(j) if j >= operands.len() => {
                    return Err(invalid(
                        format!("{path}.target_input"),
                        format!("layer `{}` has {} input(s)", clip(&e.target), operands.len()),
                    ))
                }
                Some(j) => feeds(j),
                None => (0..operands.len()).any(feeds),
            };
            if !ok {
                return Err(invalid(
                    path,
                    format!(
                        "edge `{}` -> `{}` (output {:?}, input {:?}) matches no input of layer `{}`",
                        clip(&e.source),
                        clip(&e.target),
                        e.source_output,
                        e.target_input,
                        clip(&e.target)
                    ),
                ));
            }
            by_pair.entry((source, target)).or_default().push((e.source_output, e.target_input));
        }
        for (li, layer) in self.layers.iter().enumerate() {
            for (j, operand) in layer.operands.iter().enumerate() {
                if let Operand::Def(TensorDef::Result { layer: src, index }) = operand {
                    let covered = by_pair.get(&(*src, li)).is_some_and(|list| {
                        list.iter().any(|(i, t)| i.is_none_or(|i| i == *index) && t.is_none_or(|t| t == j))
                    });
                    if !covered {
                        return Err(invalid(
                            format!("layers[{li}].inputs[{j}]"),
                            format!(
                                "`{}` comes from layer `{}` but graph.edges has no edge for it",
                                clip(&doc.layers[li].inputs[j].name),
                                clip(&doc.layers[*src].name)
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Pass 7: layers of function `fi` in topological order, ties in file order.
    fn order(&self, fi: usize) -> Result<Vec<usize>, JsonError> {
        let members: Vec<usize> = (0..self.layers.len()).filter(|&l| self.layers[l].func == fi).collect();
        let local: HashMap<usize, usize> = members.iter().enumerate().map(|(k, &l)| (l, k)).collect();
        let mut pending = vec![0usize; members.len()];
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
        let mut ready = BinaryHeap::new();
        for (k, &l) in members.iter().enumerate() {
            let mut preds: Vec<usize> = self.layers[l]
                .operands
                .iter()
                .filter_map(|o| match o {
                    Operand::Def(TensorDef::Result { layer, .. }) => local.get(layer).copied(),
                    _ => None,
                })
                .collect();
            preds.sort_unstable();
            preds.dedup();
            pending[k] = preds.len();
            for p in preds {
                succs[p].push(k);
            }
            if pending[k] == 0 {
                ready.push(Reverse(k));
            }
        }
        let mut order = Vec::with_capacity(members.len());
        while let Some(Reverse(k)) = ready.pop() {
            order.push(members[k]);
            for &s in &succs[k] {
                pending[s] -= 1;
                if pending[s] == 0 {
                    ready.push(Reverse(s));
                }
            }
        }
        if order.len() != members.len() {
            let placed: HashSet<usize> = order.iter().copied().collect();
            let left: Vec<usize> = members.iter().copied().filter(|l| !placed.contains(l)).collect();
            return Err(JsonError::Cycle {
                path: format!("layers[{}]", left[0]),
                function: clip(&self.funcs[fi].name),
                layers: left.iter().map(|&l| clip(&self.doc.layers[l].name)).collect(),
            });
        }
        Ok(order)
    }

    /// Pass 8: build every function.
    fn build(&self) -> Result<Vec<Function>, JsonError> {
        let mut out = Vec::with_capacity(self.funcs.len());
        for (fi, info) in self.funcs.iter().enumerate() {
            let order = self.order(fi)?;
            let mut f = Function::new(info.name.clone());
            let mut params: Vec<usize> = (0..self.inputs.len()).filter(|&g| self.inputs[g].func == fi).collect();
            params.sort_by_key(|&g| self.inputs[g].order);
            let mut input_values: HashMap<usize, ValueId> = HashMap::new();
            for g in params {
                let input = &self.inputs[g];
                input_values.insert(g, f.add_param(input.name.clone(), input.ty.clone()));
            }
            let mut results: HashMap<usize, Vec<ValueId>> = HashMap::new();
            let value_of = |f: &mut Function, results: &HashMap<usize, Vec<ValueId>>, o: Operand| -> Option<ValueId> {
                match o {
                    Operand::Def(TensorDef::Input(g)) => input_values.get(&g).copied(),
                    Operand::Def(TensorDef::Result { layer, index }) => results.get(&layer)?.get(index).copied(),
                    Operand::Weight(w) => {
                        let ty = self.weight_types.get(&(fi, w)).unwrap_or(&self.weights[w].ty).clone();
                        Some(f.weight(&self.weights[w].name, ty))
                    }
                }
            };
            for l in order {
                let layer = &self.layers[l];
                let mut operands = Vec::with_capacity(layer.operands.len());
                for (j, o) in layer.operands.iter().enumerate() {
                    let v = value_of(&mut f, &results, *o).ok_or_else(|| {
                        invalid(format!("layers[{l}].inputs[{j}]"), "internal error: operand not yet built")
                    })?;
                    operands.push(v);
                }
                let id = f.add_op(layer.op.clone(), operands, layer.results.clone());
                if let Some((g, kind)) = layer.group {
                    if f.group_kind(g).is_some_and(|k| k != kind) {
                        return Err(invalid(
                            format!("layers[{l}].fusion_group.kind"),
                            format!(
                                "fusion group {g} already has kind `{}`",
                                f.group_kind(g).map(|k| k.name()).unwrap_or("")
                            ),
                        ));
                    }
                    f.set_group_kind(g, kind);
                    f.set_group(id, Some(g));
                }
                let made = f.op(id).map(|d| d.results.clone()).unwrap_or_default();
                results.insert(l, made);
            }
            for (k, (name, o)) in info.outputs.iter().enumerate() {
                let v = value_of(&mut f, &results, *o).ok_or_else(|| {
                    invalid(format!("functions[{fi}].outputs[{k}]"), "internal error: output not built")
                })?;
                f.add_output(name.clone(), v);
            }
            out.push(f);
        }
        Ok(out)
    }
}

/// Decode `layer_type` and `config` into an op, with errors pointing into the layer.
fn import_op(layer: &LayerDefinition, path: &str) -> Result<Op, JsonError> {
    let mut attrs = BTreeMap::new();
    for (key, value) in &layer.config {
        attrs.insert(key.clone(), value_to_attr(value, &format!("{path}.config.{key}"))?);
    }
    Op::from_parts(&layer.layer_type, &attrs).map_err(|e| match e {
        OpBuildError::UnknownOp(name) => JsonError::UnknownLayerType {
            path: format!("{path}.layer_type"),
            suggestions: close_names(&name),
            name: clip(&name),
        },
        OpBuildError::UnknownAttr { ref attr, .. } | OpBuildError::BadAttr { ref attr, .. } => {
            invalid(format!("{path}.config.{attr}"), e.to_string())
        }
    })
}

/// Op names within a small edit distance of `name` (at most three).
fn close_names(name: &str) -> Vec<String> {
    if name.len() > 64 {
        return Vec::new();
    }
    let mut scored: Vec<(usize, &str)> = Op::NAMES
        .iter()
        .map(|n| (edit_distance(name, n), *n))
        .filter(|(d, n)| *d <= 2 || (name.len() >= 3 && n.contains(name)))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n.to_string()).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The declared type of a reference must match the definition: exactly when the
/// reference carries `dims`, by dtype and contract shape otherwise.
fn check_same(
    spec: &TensorSpec,
    declared: &TensorType,
    defined: &TensorType,
    path: &str,
    what: &str,
) -> Result<(), JsonError> {
    let same = if spec.dims.is_some() {
        declared == defined
    } else {
        declared.dtype == defined.dtype && spec.shape == seed_shape(defined)
    };
    if same {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("type {declared} of `{}` disagrees with {what}, which has type {defined}", clip(&spec.name)),
        ))
    }
}

/// `graph.inputs` / `graph.outputs` must list exactly what the `functions` extension
/// says, when they are given at all.
fn check_list(path: &str, given: &[String], expected: &[&str], what: &str) -> Result<(), JsonError> {
    if given.is_empty() {
        return Ok(());
    }
    if given.len() != expected.len() {
        return Err(invalid(path, format!("lists {} tensors but the {what} are {}", given.len(), expected.len())));
    }
    for (i, (g, e)) in given.iter().zip(expected).enumerate() {
        if g != e {
            return Err(invalid(
                format!("{path}[{i}]"),
                format!("expected `{}` (from `functions`), found `{}`", clip(e), clip(g)),
            ));
        }
    }
    Ok(())
}

/// A tensor name without its `<function>/` prefix and `%` sigil, for naming inputs and
/// outputs of plain documents.
fn short_name(tensor: &str, function: &str) -> String {
    let rest = tensor.strip_prefix(function).and_then(|r| r.strip_prefix('/')).unwrap_or(tensor);
    let rest = rest.strip_prefix('%').unwrap_or(rest);
    if rest.is_empty() {
        tensor.to_string()
    } else {
        rest.to_string()
    }
}
