//! The graph importer: model checks, inputs, initializers, and node → op mapping.

use crate::proto::{attr_type, DimValue, GraphProto, ModelProto, NodeProto, TensorProto, DATA_LOCATION_EXTERNAL};
use crate::tensors::{onnx_dtype, proto_shape, tensor_from_proto};
use crate::{OnnxError, CONST_MAX_ELEMENTS, CONST_MAX_INT_ELEMENTS, MAX_MODEL_BYTES, MAX_OPSET, MIN_OPSET};
use bytes::Bytes;
use ferrumc_ir::infer::{add_inferred, constant_value, infer_types};
use ferrumc_ir::op::{GeluApproximation, PadMode, ScatterReduction};
use ferrumc_ir::tensor::checked_numel;
use ferrumc_ir::types::MAX_RANK;
use ferrumc_ir::weights::InlineWeights;
use ferrumc_ir::{DType, Dim, Function, Module, Op, Tensor, TensorType, ValueId, WeightDecl, WeightSource};
use prost::Message;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Every ONNX op type (default domain) the importer maps.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "Cast",
    "CastLike",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Cos",
    "CumSum",
    "Div",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "Greater",
    "GreaterOrEqual",
    "Identity",
    "IsNaN",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "Min",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Round",
    "ScatterND",
    "Shape",
    "Sigmoid",
    "Sign",
    "Sin",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Tile",
    "TopK",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// Folded results may have at most this many elements.
const FOLD_MAX_ELEMENTS: usize = 4096;

/// Options of [`import_onnx_with`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Graph inputs to freeze: each named input becomes a `constant` with the given value
    /// (dtype and rank must match its declaration) and is no longer a function input. Lets
    /// graphs that feed attribute-like inputs (axes, pads, k, …) from graph inputs import.
    pub frozen_inputs: Vec<(String, Tensor)>,
}

/// Import the ONNX model at `path`. Weight sources are relative to the model's folder.
pub fn import_onnx(path: &Path) -> Result<Module, OnnxError> {
    import_onnx_with(path, &ImportOptions::default())
}

/// [`import_onnx`] with options.
pub fn import_onnx_with(path: &Path, options: &ImportOptions) -> Result<Module, OnnxError> {
    let io = |source| OnnxError::Io { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_MODEL_BYTES {
        return Err(OnnxError::TooLarge { path: path.to_path_buf(), size: meta.len(), max: MAX_MODEL_BYTES });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let dir = path.parent().map(Path::to_path_buf).filter(|p| !p.as_os_str().is_empty()).unwrap_or(PathBuf::from("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    import_inner(Bytes::from(bytes), &path.display().to_string(), Some((dir, file_name)), options)
}

/// Import a model from memory. Without a folder, external data is refused and every
/// large initializer becomes an `Inline` weight.
pub fn import_onnx_bytes(bytes: &[u8]) -> Result<Module, OnnxError> {
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(OnnxError::Model(format!("model of {} bytes is too large", bytes.len())));
    }
    import_inner(Bytes::copy_from_slice(bytes), "<memory>", None, &ImportOptions::default())
}

fn import_inner(
    buf: Bytes,
    what: &str,
    location: Option<(PathBuf, String)>,
    options: &ImportOptions,
) -> Result<Module, OnnxError> {
    let model = ModelProto::decode(buf.clone()).map_err(|e| OnnxError::Decode {
        what: what.to_string(),
        message_type: "ModelProto",
        message: e.to_string(),
    })?;
    let opset = default_opset(&model)?;
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::Model(format!("`{what}`: the model has no graph")))?;
    let name = if !graph.name.is_empty() {
        graph.name.clone()
    } else {
        location.as_ref().map(|(_, f)| f.trim_end_matches(".onnx").to_string()).unwrap_or_else(|| "onnx".into())
    };
    let mut imp = Importer {
        module: Module::new(name),
        f: Function::new("forward"),
        values: HashMap::new(),
        sym: HashMap::new(),
        opset,
        buf,
        location,
    };
    if !model.producer_name.is_empty() {
        imp.module.attrs.insert("onnx.producer".into(), ferrumc_ir::Attr::Str(model.producer_name.clone()));
    }
    imp.module.attrs.insert("onnx.opset".into(), ferrumc_ir::Attr::Int(opset));
    imp.graph(graph, options)?;
    let Importer { mut module, f, .. } = imp;
    module.functions.push(f);
    ferrumc_ir::verify::verify_module(&module).map_err(|errs| {
        OnnxError::Verify(
            errs.iter()
                .map(|e| format!("  {}", ferrumc_ir::verify::describe(&module, e)))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    Ok(module)
}

fn default_opset(model: &ModelProto) -> Result<i64, OnnxError> {
    let mut opset = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        }
    }
    // IR version 2 models without opset_import default to opset 1.
    let v = opset.unwrap_or(1);
    if v > MAX_OPSET {
        return Err(OnnxError::Model(format!(
            "the model imports default-domain opset {v}, newer than the newest ferrumc implements ({MAX_OPSET})"
        )));
    }
    if v < MIN_OPSET {
        return Err(OnnxError::Model(format!(
            "the model imports default-domain opset {v}, older than the oldest ferrumc implements ({MIN_OPSET})"
        )));
    }
    Ok(v)
}

/// The dim an ONNX `dim_param` names: an expression over symbols when it is one
/// (`past_sequence_length + sequence_length`, as optimum writes for attention masks and
/// present KV caches: a sum of products of symbols and integers), else one symbol named
/// after the whole string.
pub(crate) fn dim_param(p: &str) -> Dim {
    dim_expression(p).unwrap_or_else(|| Dim::sym(sanitize_symbol(p)))
}

/// Parses `term ((" + " | " - ") term)*` with `term = factor ('*' factor)*`, a factor being a
/// valid symbol name or a non-negative integer. `+` and `-` must stand apart (whitespace on
/// both sides), so a name such as `seq-len` stays one symbol. `None` for anything else or a
/// lone symbol (the plain case [`sanitize_symbol`] handles).
fn dim_expression(p: &str) -> Option<Dim> {
    let tokens: Vec<&str> = p.split_whitespace().collect();
    if tokens.len() == 1 && !p.contains('*') {
        return None;
    }
    let factor = |f: &str| -> Option<Dim> {
        if let Ok(n) = f.parse::<i64>() {
            Some(Dim::fixed(n))
        } else {
            ferrumc_ir::dim::is_valid_symbol(f).then(|| Dim::sym(f))
        }
    };
    let (mut total, mut term, mut sign) = (Dim::fixed(0), None::<Dim>, 1);
    let mut expect_factor = true;
    for t in tokens {
        if expect_factor {
            let mut product = term.take().unwrap_or_else(|| Dim::fixed(sign));
            for f in t.split('*') {
                if !f.is_empty() {
                    product = product.mul(&factor(f)?);
                }
            }
            term = Some(product);
            // `a *` continues the term on the next token.
            expect_factor = t.ends_with('*');
        } else {
            match t {
                "+" | "-" => {
                    total = total.add(&term.take()?);
                    sign = if t == "-" { -1 } else { 1 };
                }
                "*" => {}
                _ if t.starts_with('*') => {
                    let mut product = term.take()?;
                    for f in t.split('*').filter(|f| !f.is_empty()) {
                        product = product.mul(&factor(f)?);
                    }
                    term = Some(product);
                    expect_factor = t.ends_with('*');
                    continue;
                }
                _ => return None,
            }
            expect_factor = true;
        }
    }
    if expect_factor {
        return None;
    }
    Some(total.add(&term?))
}

/// A symbol name from an ONNX `dim_param`.
pub(crate) fn sanitize_symbol(s: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out.truncate(ferrumc_ir::dim::MAX_SYMBOL_LEN);
    out
}

struct Importer {
    module: Module,
    f: Function,
    values: HashMap<String, ValueId>,
    /// Integer tensors (rank ≤ 1) whose element values are known as dims, possibly symbolic:
    /// the shape arithmetic of exported graphs (`Shape` → `Gather` → `Concat` → `Reshape`).
    sym: HashMap<ValueId, Vec<Dim>>,
    opset: i64,
    buf: Bytes,
    /// Model folder and file name when imported from a file.
    location: Option<(PathBuf, String)>,
}

fn node_label(n: &NodeProto, index: usize) -> String {
    if n.name.is_empty() {
        format!("#{index} ({})", n.op_type)
    } else {
        format!("`{}` (#{index}, {})", n.name, n.op_type)
    }
}

impl Importer {
    fn define(&mut self, name: &str, v: ValueId, what: &str) -> Result<(), String> {
        if self.values.insert(name.to_string(), v).is_some() {
            return Err(format!("{what} `{name}` is defined twice (ONNX values are single-assignment)"));
        }
        Ok(())
    }

    fn graph(&mut self, g: &GraphProto, options: &ImportOptions) -> Result<(), OnnxError> {
        // Unsupported ops first, all of them at once.
        let mut bad = Vec::new();
        for (i, n) in g.node.iter().enumerate() {
            let domain_ok = n.domain.is_empty() || n.domain == "ai.onnx";
            if !domain_ok || !SUPPORTED_OPS.contains(&n.op_type.as_str()) {
                let dom = if domain_ok { String::new() } else { format!(" of domain `{}`", n.domain) };
                bad.push(format!("{}{dom}", node_label(n, i)));
            }
        }
        if !bad.is_empty() {
            let more = if bad.len() > 10 { format!(" and {} more", bad.len() - 10) } else { String::new() };
            bad.truncate(10);
            return Err(OnnxError::Model(format!("unsupported op(s) in node(s): {}{more}", bad.join(", "))));
        }
        let model_err = OnnxError::Model;
        // Initializers.
        let init_names: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        // Initializers nothing reads are dropped (exporters leave stale ones behind).
        let used: std::collections::HashSet<&str> = g
            .node
            .iter()
            .flat_map(|n| n.input.iter())
            .chain(g.output.iter().map(|o| &o.name))
            .map(String::as_str)
            .collect();
        let mut init_seen = std::collections::HashSet::new();
        for t in &g.initializer {
            if !init_seen.insert(t.name.as_str()) {
                return Err(model_err(format!("initializer `{}` is defined twice", t.name)));
            }
            if !used.contains(t.name.as_str()) {
                continue;
            }
            self.initializer(t).map_err(|m| model_err(format!("initializer `{}`: {m}", t.name)))?;
        }
        // Inputs.
        for vi in &g.input {
            if init_names.contains(vi.name.as_str()) {
                continue;
            }
            let ty = self.value_info_type(vi).map_err(|m| model_err(format!("graph input `{}`: {m}", vi.name)))?;
            if let Some((_, t)) = options.frozen_inputs.iter().find(|(n, _)| *n == vi.name) {
                if t.dtype != ty.dtype || t.rank() != ty.rank() {
                    return Err(model_err(format!(
                        "frozen input `{}`: value {} {:?} does not match its type {ty}",
                        vi.name, t.dtype, t.shape
                    )));
                }
                let v = self.konst(t.clone()).map_err(model_err)?;
                self.define(&vi.name, v, "graph input").map_err(model_err)?;
                continue;
            }
            let v = self.f.add_param(vi.name.clone(), ty);
            self.define(&vi.name, v, "graph input").map_err(model_err)?;
        }
        // Producers, for messages about undefined names.
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for o in &n.output {
                producer.entry(o.as_str()).or_insert(i);
            }
        }
        for (i, n) in g.node.iter().enumerate() {
            let label = node_label(n, i);
            let node_err = |message: String| OnnxError::Node { node: label.clone(), message };
            let mut ins = Vec::with_capacity(n.input.len());
            for name in &n.input {
                if name.is_empty() {
                    ins.push(None);
                    continue;
                }
                match self.values.get(name) {
                    Some(&v) => ins.push(Some(v)),
                    None => {
                        let why = match producer.get(name.as_str()) {
                            Some(&j) if j >= i => format!(
                                "input `{name}` is produced by node {} which comes later: the graph is not topologically sorted or has a cycle",
                                node_label(&g.node[j], j)
                            ),
                            _ => format!("input `{name}` is not defined by any graph input, initializer or node"),
                        };
                        return Err(node_err(why));
                    }
                }
            }
            let outs = self.node(n, &ins).map_err(node_err)?;
            self.track_shape_values(n, &ins, &outs);
            for (k, name) in n.output.iter().enumerate() {
                if name.is_empty() {
                    continue;
                }
                let v = *outs.get(k).ok_or_else(|| node_err(format!("output {k} (`{name}`) is not supported")))?;
                self.define(name, v, "value").map_err(node_err)?;
            }
        }
        let mut seen = std::collections::HashSet::new();
        for vi in &g.output {
            let v = *self.values.get(&vi.name).ok_or_else(|| {
                model_err(format!("graph output `{}` is not defined by any input, initializer or node", vi.name))
            })?;
            if !seen.insert(vi.name.clone()) {
                return Err(model_err(format!("graph output `{}` is listed twice", vi.name)));
            }
            self.f.add_output(vi.name.clone(), v);
        }
        Ok(())
    }

    fn value_info_type(&self, vi: &crate::proto::ValueInfoProto) -> Result<TensorType, String> {
        let tt = vi
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .ok_or("it has no tensor type (sequence, map and optional types are not supported)")?;
        let dtype = onnx_dtype(tt.elem_type)?;
        let shape = tt.shape.as_ref().ok_or("its rank is unknown (no shape); ferrumc needs ranked inputs")?;
        if shape.dim.len() > MAX_RANK {
            return Err(format!("rank {} exceeds the maximum rank {MAX_RANK}", shape.dim.len()));
        }
        let mut dims = Vec::with_capacity(shape.dim.len());
        for d in &shape.dim {
            dims.push(match &d.value {
                Some(DimValue::DimValue(n)) if *n >= 0 => Dim::fixed(*n),
                Some(DimValue::DimValue(n)) => return Err(format!("negative dim {n}")),
                Some(DimValue::DimParam(p)) if !p.is_empty() => dim_param(p),
                _ => Dim::Unknown,
            });
        }
        Ok(TensorType::new(dtype, dims))
    }

    fn initializer(&mut self, t: &TensorProto) -> Result<(), String> {
        if t.name.is_empty() {
            return Err("an initializer has no name".into());
        }
        let dtype = onnx_dtype(t.data_type)?;
        let shape = proto_shape(t)?;
        let numel = checked_numel(&shape).unwrap_or(usize::MAX);
        let small = numel <= if dtype.is_float() { CONST_MAX_ELEMENTS } else { CONST_MAX_INT_ELEMENTS };
        let dims: Vec<i64> = t.dims.clone();
        let ty = TensorType::fixed(dtype, &dims);
        let external = t.data_location == DATA_LOCATION_EXTERNAL || !t.external_data.is_empty();
        let source = if external {
            let (file, offset) = self.external(t, dtype, numel)?;
            if small {
                let bytes = self.read_external(&file, offset, dtype, numel)?;
                let tensor = Tensor::from_le_bytes(dtype, shape, &bytes).map_err(|e| e.to_string())?;
                return self.constant_init(&t.name, tensor);
            }
            WeightSource::Raw { file, offset }
        } else {
            let in_file = self.raw_offset(&t.raw_data);
            match (in_file, small) {
                (Some((file, offset)), false) => {
                    let want = dtype.storage_bytes(numel as u64, 1).unwrap_or(u64::MAX);
                    if want != t.raw_data.len() as u64 {
                        return Err(format!(
                            "raw_data has {} bytes but dims {dims:?} of {dtype} need {want}",
                            t.raw_data.len()
                        ));
                    }
                    WeightSource::Raw { file, offset }
                }
                _ => {
                    let tensor = tensor_from_proto(t)?;
                    if small {
                        return self.constant_init(&t.name, tensor);
                    }
                    WeightSource::Inline(tensor)
                }
            }
        };
        self.module.weights.push(WeightDecl { name: t.name.clone(), ty: ty.clone(), source });
        let v = self.f.weight(&t.name, ty);
        self.define(&t.name, v, "initializer")
    }

    fn constant_init(&mut self, name: &str, tensor: Tensor) -> Result<(), String> {
        let v = self.konst(tensor)?;
        self.define(name, v, "initializer")
    }

    /// Where `raw` lies in the model file, if it is a slice of it.
    fn raw_offset(&self, raw: &Bytes) -> Option<(String, u64)> {
        let (_, file) = self.location.as_ref()?;
        if raw.is_empty() {
            return None;
        }
        let base = self.buf.as_ptr() as usize;
        let p = raw.as_ptr() as usize;
        (p >= base && p + raw.len() <= base + self.buf.len()).then(|| (file.clone(), (p - base) as u64))
    }

    /// Validate an external-data reference; returns (relative file, offset).
    fn external(&self, t: &TensorProto, dtype: DType, numel: usize) -> Result<(String, u64), String> {
        let (dir, _) = self.location.as_ref().ok_or("external data needs a model file (imported from memory)")?;
        let mut location = None;
        let mut offset = 0u64;
        let mut length = None;
        for e in &t.external_data {
            match e.key.as_str() {
                "location" => location = Some(e.value.clone()),
                "offset" => {
                    offset =
                        e.value.parse().map_err(|_| format!("external data offset `{}` is not a number", e.value))?
                }
                "length" => {
                    length = Some(
                        e.value
                            .parse::<u64>()
                            .map_err(|_| format!("external data length `{}` is not a number", e.value))?,
                    )
                }
                _ => {}
            }
        }
        let loc = location.ok_or("external data has no `location`")?;
        let rel = Path::new(&loc);
        if loc.is_empty() {
            return Err("external data location is empty".into());
        }
        for c in rel.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(format!(
                        "external data location `{loc}` contains `..`; it must stay inside the model's folder"
                    ))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(format!(
                        "external data location `{loc}` is absolute; it must be relative to the model's folder"
                    ))
                }
            }
        }
        let base =
            dir.canonicalize().map_err(|e| format!("cannot resolve the model folder `{}`: {e}", dir.display()))?;
        let full = base.join(rel).canonicalize().map_err(|e| format!("external data file `{loc}`: {e}"))?;
        if !full.starts_with(&base) {
            return Err(format!(
                "external data file `{loc}` resolves to `{}`, outside the model's folder",
                full.display()
            ));
        }
        let size = std::fs::metadata(&full).map_err(|e| format!("external data file `{loc}`: {e}"))?.len();
        let need = dtype.storage_bytes(numel as u64, 1).ok_or("the tensor's byte size overflows")?;
        if let Some(len) = length {
            if len != need {
                return Err(format!("external data length {len} does not match the {need} bytes its dims need"));
            }
        }
        match offset.checked_add(need) {
            Some(end) if end <= size => Ok((loc, offset)),
            _ => Err(format!(
                "external data: {need} bytes at offset {offset} reach past the end of `{loc}` ({size} bytes)"
            )),
        }
    }

    fn read_external(&self, file: &str, offset: u64, dtype: DType, numel: usize) -> Result<Vec<u8>, String> {
        use std::io::{Read, Seek, SeekFrom};
        let (dir, _) = self.location.as_ref().ok_or("no model folder")?;
        let need = dtype.storage_bytes(numel as u64, 1).ok_or("byte size overflows")?;
        let mut fh = std::fs::File::open(dir.join(file)).map_err(|e| format!("`{file}`: {e}"))?;
        fh.seek(SeekFrom::Start(offset)).map_err(|e| format!("`{file}`: {e}"))?;
        let mut buf = vec![0u8; need as usize];
        fh.read_exact(&mut buf).map_err(|e| format!("`{file}`: {e}"))?;
        Ok(buf)
    }

    // ------------------------------------------------------------------ building helpers

    fn konst(&mut self, t: Tensor) -> Result<ValueId, String> {
        Ok(add_inferred(&mut self.f, Op::Constant { value: t }, vec![])?[0])
    }

    fn const_of(&self, v: ValueId) -> Option<Tensor> {
        constant_value(&self.f, v).cloned()
    }

    /// Add `op`, folding it to constants when every operand is a constant and the results are small.
    fn emit(&mut self, op: Op, operands: Vec<ValueId>) -> Result<Vec<ValueId>, String> {
        let results = add_inferred(&mut self.f, op, operands)?;
        self.fold(results)
    }

    fn emit1(&mut self, op: Op, operands: Vec<ValueId>) -> Result<ValueId, String> {
        Ok(self.emit(op, operands)?[0])
    }

    /// Add an op whose result types come from `declared` (split).
    fn emit_declared(
        &mut self,
        op: Op,
        operands: Vec<ValueId>,
        declared: Vec<TensorType>,
    ) -> Result<Vec<ValueId>, String> {
        let tys: Vec<&TensorType> = operands.iter().map(|&v| self.f.ty(v)).collect();
        let consts: Vec<Option<&Tensor>> = operands.iter().map(|&v| constant_value(&self.f, v)).collect();
        let types = infer_types(&op, &tys, &consts, Some(&declared))?;
        let id = self.f.add_op(op, operands, types);
        let results = self.f.op(id).map(|d| d.results.clone()).unwrap_or_default();
        self.fold(results)
    }

    fn fold(&mut self, results: Vec<ValueId>) -> Result<Vec<ValueId>, String> {
        let Some(&r0) = results.first() else { return Ok(results) };
        let Some(id) = self.f.producer(r0) else { return Ok(results) };
        let data = self.f.op(id).cloned().ok_or("internal: op vanished")?;
        if matches!(data.op, Op::Constant { .. })
            || data.operands.is_empty() && !matches!(data.op, Op::ConstantOfShape { .. })
        {
            return Ok(results);
        }
        let mut consts = Vec::new();
        for &v in &data.operands {
            match self.const_of(v) {
                Some(t) => consts.push(t),
                None => return Ok(results),
            }
        }
        for &r in &data.results {
            let small = self
                .f
                .ty(r)
                .fixed_shape()
                .and_then(|s| s.iter().try_fold(1i64, |a, &d| a.checked_mul(d)))
                .is_some_and(|n| (0..=FOLD_MAX_ELEMENTS as i64).contains(&n));
            if !small {
                return Ok(results);
            }
        }
        let mut m = Module::new("fold");
        let mut g = Function::new("fold");
        let mut operands = Vec::new();
        for t in consts {
            operands.push(add_inferred(&mut g, Op::Constant { value: t }, vec![])?[0]);
        }
        let types: Vec<TensorType> = data.results.iter().map(|&r| self.f.ty(r).clone()).collect();
        let gid = g.add_op(data.op.clone(), operands, types);
        for (k, &r) in g.op(gid).ok_or("internal")?.results.clone().iter().enumerate() {
            g.add_output(format!("r{k}"), r);
        }
        m.functions.push(g);
        let Ok(outs) = ferrumc_ir::interp::run_function(&m, "fold", &[], &InlineWeights) else {
            // Leave it to run time (which will report the same problem with context).
            return Ok(results);
        };
        self.f.erase_op(id);
        let mut out = Vec::with_capacity(outs.len());
        for (_, t) in outs {
            out.push(self.konst(t)?);
        }
        Ok(out)
    }

    fn cast_to(&mut self, v: ValueId, to: DType) -> Result<ValueId, String> {
        if self.f.ty(v).dtype == to {
            return Ok(v);
        }
        self.emit1(Op::Cast { to }, vec![v])
    }

    // ------------------------------------------------------------------ symbolic shape values

    /// The element values of a rank ≤ 1 integer tensor as dims, if known.
    fn sym_of(&self, v: ValueId) -> Option<Vec<Dim>> {
        if let Some(t) = constant_value(&self.f, v) {
            if t.rank() <= 1 && !t.dtype.is_float() {
                return Some(t.to_i64_vec().into_iter().map(Dim::fixed).collect());
            }
            return None;
        }
        self.sym.get(&v).cloned()
    }

    /// Record the dim values a node computes, for the ops exporters use on shapes.
    fn track_shape_values(&mut self, n: &NodeProto, ins: &[Option<ValueId>], outs: &[ValueId]) {
        let Some(&out) = outs.first() else { return };
        if constant_value(&self.f, out).is_some() || self.f.ty(out).dtype.is_float() || self.f.ty(out).rank() > 1 {
            return;
        }
        let a = Attrs(n);
        let arg = |k: usize| ins.get(k).copied().flatten();
        let vals = |k: usize| arg(k).and_then(|v| self.sym_of(v));
        let r: Option<Vec<Dim>> = (|| match n.op_type.as_str() {
            "Shape" => {
                let x = arg(0)?;
                let shape = self.f.ty(x).shape.clone();
                let r = shape.len() as i64;
                let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
                let (s, e) = (clamp(a.i("start", 0).ok()?), clamp(a.i("end", r).ok()?));
                Some(if e > s { shape[s as usize..e as usize].to_vec() } else { vec![] })
            }
            "Identity" | "Cast" | "Squeeze" | "Unsqueeze" => vals(0),
            "Gather" => {
                let data = vals(0)?;
                let idx = self.const_of(arg(1)?)?;
                let len = data.len() as i64;
                idx.to_i64_vec()
                    .into_iter()
                    .map(|i| data.get(usize::try_from(if i < 0 { i + len } else { i }).ok()?).cloned())
                    .collect()
            }
            "Concat" => {
                let mut all = Vec::new();
                for k in 0..ins.len() {
                    all.extend(vals(k)?);
                }
                Some(all)
            }
            "Slice" => {
                let data = vals(0)?;
                let (s, e) = (self.const_of(arg(1)?)?.to_i64_vec(), self.const_of(arg(2)?)?.to_i64_vec());
                let steps = arg(4).map(|v| self.const_of(v).map(|t| t.to_i64_vec())).unwrap_or(Some(vec![1]))?;
                if s.len() != 1 || e.len() != 1 || steps != [1] {
                    return None;
                }
                let len = data.len() as i64;
                let norm = |x: i64| (if x < 0 { x + len } else { x }).clamp(0, len) as usize;
                let (s, e) = (norm(s[0]), norm(e[0]));
                Some(if e > s { data[s..e].to_vec() } else { vec![] })
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let (x, y) = (vals(0)?, vals(1)?);
                let n_out = x.len().max(y.len());
                let pick = |v: &Vec<Dim>, i: usize| if v.len() == 1 { v[0].clone() } else { v[i].clone() };
                if (x.len() != n_out && x.len() != 1) || (y.len() != n_out && y.len() != 1) {
                    return None;
                }
                (0..n_out)
                    .map(|i| {
                        let (p, q) = (pick(&x, i), pick(&y, i));
                        if p.is_unknown() || q.is_unknown() {
                            return Some(Dim::Unknown);
                        }
                        Some(match n.op_type.as_str() {
                            "Add" => p.add(&q),
                            "Sub" => p.sub(&q),
                            "Mul" => p.mul(&q),
                            _ => p.div_exact(&q).unwrap_or(Dim::Unknown),
                        })
                    })
                    .collect()
            }
            _ => None,
        })();
        if let Some(r) = r {
            if r.iter().any(|d| !d.is_unknown()) {
                self.sym.insert(out, r);
            }
        }
    }

    /// Refine `?` dims of a result whose shape comes from a shape operand with known values.
    fn refine(&mut self, result: ValueId, dims: Vec<Dim>) {
        let ty = self.f.ty(result).clone();
        let negative = dims.iter().any(|d| d.as_fixed().is_some_and(|v| v < 0));
        if negative || ty.rank() != dims.len() || constant_value(&self.f, result).is_some() {
            return;
        }
        let shape = ty.shape.iter().zip(dims).map(|(cur, d)| if cur.is_unknown() { d } else { cur.clone() }).collect();
        self.f.set_type(result, TensorType::new(ty.dtype, shape));
    }

    /// Reshape target dims from known shape values (ONNX 0 / -1 rules).
    fn reshape_dims(&self, x: ValueId, target: &[Dim], allowzero: bool) -> Vec<Dim> {
        let xs = self.f.ty(x).shape.clone();
        let mut out: Vec<Dim> = target
            .iter()
            .enumerate()
            .map(|(k, d)| match d.as_fixed() {
                Some(0) if !allowzero => xs.get(k).cloned().unwrap_or(Dim::Unknown),
                Some(v) if v < 0 => Dim::Unknown,
                _ => d.clone(),
            })
            .collect();
        let infer: Vec<usize> =
            target.iter().enumerate().filter(|(_, d)| d.as_fixed() == Some(-1)).map(|(k, _)| k).collect();
        if let [k] = infer.as_slice() {
            let known = out
                .iter()
                .enumerate()
                .filter(|(j, _)| j != k)
                .try_fold(Dim::fixed(1), |acc, (_, d)| (!d.is_unknown()).then(|| acc.mul(d)));
            let numel = self.f.ty(x).numel();
            if let Some(known) = known {
                if numel.is_known() {
                    if let Some(q) = numel.div_exact(&known) {
                        out[*k] = q;
                    }
                }
            }
        }
        out
    }

    // ------------------------------------------------------------------ nodes

    fn node(&mut self, n: &NodeProto, ins: &[Option<ValueId>]) -> Result<Vec<ValueId>, String> {
        let a = Attrs(n);
        let input = |k: usize| -> Result<ValueId, String> {
            ins.get(k).copied().flatten().ok_or_else(|| format!("required input {k} is missing"))
        };
        let opt = |k: usize| ins.get(k).copied().flatten();
        let all = || -> Result<Vec<ValueId>, String> {
            ins.iter().enumerate().map(|(k, v)| v.ok_or_else(|| format!("input {k} is empty"))).collect()
        };
        let x = || input(0);
        let unary = |s: &mut Self, op: Op| -> Result<Vec<ValueId>, String> { s.emit(op, vec![input(0)?]) };
        let binary = |s: &mut Self, op: Op| -> Result<Vec<ValueId>, String> { s.emit(op, vec![input(0)?, input(1)?]) };
        let op_type = n.op_type.as_str();
        if self.opset < 7 && a.i("broadcast", 0)? != 0 {
            return Err("legacy broadcasting (`broadcast` attribute, opset < 7) is not supported".into());
        }
        match op_type {
            "Abs" => unary(self, Op::Abs),
            "Neg" => unary(self, Op::Neg),
            "Sqrt" => unary(self, Op::Sqrt),
            "Reciprocal" => unary(self, Op::Reciprocal),
            "Exp" => unary(self, Op::Exp),
            "Log" => unary(self, Op::Log),
            "Tanh" => unary(self, Op::Tanh),
            "Erf" => unary(self, Op::Erf),
            "Sigmoid" => unary(self, Op::Sigmoid),
            "Relu" => unary(self, Op::Relu),
            "Cos" => unary(self, Op::Cos),
            "Sin" => unary(self, Op::Sin),
            "Not" => unary(self, Op::Not),
            "Floor" => unary(self, Op::Floor),
            "Ceil" => unary(self, Op::Ceil),
            "Round" => unary(self, Op::Round),
            "Sign" => unary(self, Op::Sign),
            "IsNaN" => unary(self, Op::IsNan),
            "Softplus" => unary(self, Op::Softplus),
            "Identity" => unary(self, Op::Identity),
            "LeakyRelu" => unary(self, Op::LeakyRelu { alpha: a.f("alpha", 0.01)? }),
            "Gelu" => {
                let approximate = match a.s("approximate", "none")?.as_str() {
                    "none" => GeluApproximation::None,
                    "tanh" => GeluApproximation::Tanh,
                    other => return Err(format!("unknown approximate `{other}`")),
                };
                unary(self, Op::Gelu { approximate })
            }
            "Add" => binary(self, Op::Add),
            "Sub" => binary(self, Op::Sub),
            "Mul" => binary(self, Op::Mul),
            "Div" => binary(self, Op::Div),
            "Pow" => binary(self, Op::Pow),
            "Equal" => binary(self, Op::Equal),
            "Less" => binary(self, Op::Less),
            "Greater" => binary(self, Op::Greater),
            "LessOrEqual" => binary(self, Op::LessEqual),
            "GreaterOrEqual" => binary(self, Op::GreaterEqual),
            "And" => binary(self, Op::And),
            "Or" => binary(self, Op::Or),
            "Xor" => binary(self, Op::Xor),
            "Mod" => binary(self, if a.i("fmod", 0)? != 0 { Op::Fmod } else { Op::Mod }),
            "Max" | "Min" | "Sum" => {
                let vs = all()?;
                let mut acc = *vs.first().ok_or("needs at least one input")?;
                if vs.len() == 1 {
                    return self.emit(Op::Identity, vec![acc]);
                }
                for &v in &vs[1..] {
                    let op = match op_type {
                        "Max" => Op::Max,
                        "Min" => Op::Min,
                        _ => Op::Add,
                    };
                    acc = self.emit1(op, vec![acc, v])?;
                }
                Ok(vec![acc])
            }
            "Where" => self.emit(Op::Where, vec![input(0)?, input(1)?, input(2)?]),
            "MatMul" => binary(self, Op::MatMul),
            "Gemm" => {
                let op = Op::Gemm {
                    alpha: a.f("alpha", 1.0)?,
                    beta: a.f("beta", 1.0)?,
                    trans_a: a.i("transA", 0)? != 0,
                    trans_b: a.i("transB", 0)? != 0,
                };
                let mut ops = vec![input(0)?, input(1)?];
                ops.extend(opt(2));
                self.emit(op, ops)
            }
            "Cast" => {
                let to = onnx_dtype(a.i_req("to")? as i32)?;
                self.emit(Op::Cast { to }, vec![x()?])
            }
            "CastLike" => {
                let to = self.f.ty(input(1)?).dtype;
                self.emit(Op::Cast { to }, vec![x()?])
            }
            "Softmax" | "LogSoftmax" => self.softmax(n, x()?, op_type == "LogSoftmax"),
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceSumSquare" | "ReduceL1"
            | "ReduceL2" | "ReduceLogSumExp" => self.reduce(n, ins),
            "ArgMax" | "ArgMin" => {
                let (axis, keepdims, select_last_index) =
                    (a.i("axis", 0)?, a.i("keepdims", 1)? != 0, a.i("select_last_index", 0)? != 0);
                let op = if op_type == "ArgMax" {
                    Op::ArgMax { axis, keepdims, select_last_index }
                } else {
                    Op::ArgMin { axis, keepdims, select_last_index }
                };
                self.emit(op, vec![x()?])
            }
            "Reshape" => {
                let allowzero = a.i("allowzero", 0)? != 0;
                let (xv, shape) = (x()?, input(1)?);
                let out = self.emit(Op::Reshape { allowzero }, vec![xv, shape])?;
                if let Some(target) = self.sym_of(shape) {
                    let dims = self.reshape_dims(xv, &target, allowzero);
                    self.refine(out[0], dims);
                }
                Ok(out)
            }
            "Flatten" => self.flatten(x()?, a.i("axis", 1)?),
            "Transpose" => {
                let xv = x()?;
                let rank = self.f.ty(xv).rank() as i64;
                let perm = a.ints_opt("perm")?.unwrap_or_else(|| (0..rank).rev().collect());
                self.emit(Op::Transpose { perm }, vec![xv])
            }
            "Concat" => self.emit(Op::Concat { axis: a.i_req("axis")? }, all()?),
            "Split" => self.split(n, ins),
            "Slice" => self.slice(n, ins),
            "Gather" => self.emit(Op::Gather { axis: a.i("axis", 0)? }, vec![x()?, input(1)?]),
            "GatherElements" => self.emit(Op::GatherElements { axis: a.i("axis", 0)? }, vec![x()?, input(1)?]),
            "GatherND" => self.emit(Op::GatherNd { batch_dims: a.i("batch_dims", 0)? }, vec![x()?, input(1)?]),
            "ScatterND" => {
                let reduction = match a.s("reduction", "none")?.as_str() {
                    "none" => ScatterReduction::None,
                    "add" => ScatterReduction::Add,
                    "mul" => ScatterReduction::Mul,
                    "max" => ScatterReduction::Max,
                    "min" => ScatterReduction::Min,
                    other => return Err(format!("unknown reduction `{other}`")),
                };
                self.emit(Op::ScatterNd { reduction }, vec![x()?, input(1)?, input(2)?])
            }
            "Unsqueeze" | "Squeeze" => {
                let axes = if self.opset >= 13 { self.const_ints(ins, 1, "axes")? } else { a.ints_opt("axes")? };
                if op_type == "Unsqueeze" {
                    let axes = axes.ok_or("Unsqueeze needs axes")?;
                    self.emit(Op::Unsqueeze { axes }, vec![x()?])
                } else {
                    self.emit(Op::Squeeze { axes: axes.unwrap_or_default() }, vec![x()?])
                }
            }
            "Expand" => {
                let (xv, shape) = (x()?, input(1)?);
                let out = self.emit(Op::Expand, vec![xv, shape])?;
                if let Some(target) = self.sym_of(shape) {
                    // Broadcast of the input shape and the target (right-aligned).
                    let xs = self.f.ty(xv).shape.clone();
                    let rank = xs.len().max(target.len());
                    let get = |s: &[Dim], p: usize| {
                        (p + s.len()).checked_sub(rank).and_then(|k| s.get(k)).cloned().unwrap_or(Dim::fixed(1))
                    };
                    let dims = (0..rank)
                        .map(|p| {
                            let (a, b) = (get(&xs, p), get(&target, p));
                            if a.as_fixed() == Some(1) {
                                b
                            } else if b.as_fixed() == Some(1) || a == b {
                                a
                            } else {
                                Dim::Unknown
                            }
                        })
                        .collect();
                    self.refine(out[0], dims);
                }
                Ok(out)
            }
            "Shape" => {
                let xv = x()?;
                let (start, end) = (a.i("start", 0)?, a.ints_opt("end")?.map(|_| a.i_req("end")).transpose()?);
                let ty = self.f.ty(xv).clone();
                if let Some(dims) = ty.fixed_shape() {
                    let r = dims.len() as i64;
                    let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
                    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
                    let part: Vec<i64> = if e > s { dims[s as usize..e as usize].to_vec() } else { vec![] };
                    let len = part.len();
                    return Ok(vec![
                        self.konst(Tensor::from_i64(DType::I64, vec![len], part).map_err(|e| e.to_string())?)?
                    ]);
                }
                self.emit(Op::Shape { start, end }, vec![xv])
            }
            "Size" => {
                let xv = x()?;
                let ty = self.f.ty(xv).clone();
                if let Some(dims) = ty.fixed_shape() {
                    let n = dims.iter().product::<i64>();
                    return Ok(vec![self.konst(Tensor::scalar_i64(DType::I64, n))?]);
                }
                let s = self.emit1(Op::Shape { start: 0, end: None }, vec![xv])?;
                self.emit(Op::ReduceProd { axes: vec![0], keepdims: false }, vec![s])
            }
            "ConstantOfShape" => {
                let value = match a.tensor_opt("value")? {
                    Some(t) => t,
                    None => Tensor::scalar_f64(DType::F32, 0.0),
                };
                let shape = input(0)?;
                let out = self.emit(Op::ConstantOfShape { value }, vec![shape])?;
                if let Some(dims) = self.sym_of(shape) {
                    self.refine(out[0], dims);
                }
                Ok(out)
            }
            "Range" => self.emit(Op::Range, vec![input(0)?, input(1)?, input(2)?]),
            "Constant" => {
                let t = self.constant_attr(&a)?;
                Ok(vec![self.konst(t)?])
            }
            "LayerNormalization" => self.layer_norm(n, ins),
            "Clip" => {
                let (min, max) = if self.opset >= 11 {
                    (self.const_scalar(ins, 1, "min")?, self.const_scalar(ins, 2, "max")?)
                } else {
                    (a.f_opt("min")?, a.f_opt("max")?)
                };
                // ONNX: with min > max every element becomes max.
                let min = match (min, max) {
                    (Some(lo), Some(hi)) if lo > hi => Some(hi),
                    _ => min,
                };
                self.emit(Op::Clip { min, max }, vec![x()?])
            }
            "Trilu" => {
                let k = self.const_scalar(ins, 1, "k")?.map(|v| v as i64).unwrap_or(0);
                self.emit(Op::Trilu { upper: a.i("upper", 1)? != 0, k }, vec![x()?])
            }
            "CumSum" => {
                let axis = self.const_scalar(ins, 1, "axis")?.ok_or("CumSum needs its axis input")? as i64;
                let op = Op::CumSum { axis, exclusive: a.i("exclusive", 0)? != 0, reverse: a.i("reverse", 0)? != 0 };
                self.emit(op, vec![x()?])
            }
            "TopK" => {
                let k = if self.opset >= 10 {
                    self.const_scalar(ins, 1, "K")?.ok_or("TopK needs its K input")? as i64
                } else {
                    a.i_req("k")?
                };
                let op = Op::TopK {
                    axis: a.i("axis", -1)?,
                    k,
                    largest: a.i("largest", 1)? != 0,
                    sorted: a.i("sorted", 1)? != 0,
                };
                self.emit(op, vec![x()?])
            }
            "Tile" => {
                let repeats = self.const_ints(ins, 1, "repeats")?.ok_or("Tile needs its repeats input")?;
                self.emit(Op::Tile { repeats }, vec![x()?])
            }
            "Pad" => self.pad(n, ins),
            other => Err(format!("unsupported op type `{other}`")),
        }
    }

    /// Constant input `k` as i64 values (`None` when absent).
    fn const_ints(&self, ins: &[Option<ValueId>], k: usize, what: &str) -> Result<Option<Vec<i64>>, String> {
        let Some(v) = ins.get(k).copied().flatten() else { return Ok(None) };
        let t = self.const_of(v).ok_or_else(|| {
            format!("input {k} ({what}) must be a constant (an initializer or a Constant node): ferrumc takes it as an attribute")
        })?;
        if t.dtype.is_float() {
            return Err(format!("input {k} ({what}) must be an integer tensor, found {}", t.dtype));
        }
        Ok(Some(t.to_i64_vec()))
    }

    /// Constant single-element input `k` as f64 (`None` when absent).
    fn const_scalar(&self, ins: &[Option<ValueId>], k: usize, what: &str) -> Result<Option<f64>, String> {
        let Some(v) = ins.get(k).copied().flatten() else { return Ok(None) };
        let t = self.const_of(v).ok_or_else(|| {
            format!("input {k} ({what}) must be a constant (an initializer or a Constant node): ferrumc takes it as an attribute")
        })?;
        match t.to_f64_vec().as_slice() {
            [x] => Ok(Some(*x)),
            other => Err(format!("input {k} ({what}) must hold one element, found {}", other.len())),
        }
    }

    fn constant_attr(&self, a: &Attrs<'_>) -> Result<Tensor, String> {
        let at = a.0.attribute.first().ok_or("Constant has no value attribute")?;
        if a.0.attribute.len() != 1 {
            return Err("Constant must have exactly one value attribute".into());
        }
        let e = |e: ferrumc_ir::tensor::TensorError| e.to_string();
        match at.name.as_str() {
            "value" => tensor_from_proto(at.t.as_ref().ok_or("value attribute has no tensor")?),
            "value_float" => Ok(Tensor::scalar_f64(DType::F32, f64::from(at.f))),
            "value_int" => Ok(Tensor::scalar_i64(DType::I64, at.i)),
            "value_floats" => {
                Tensor::from_f64(DType::F32, vec![at.floats.len()], at.floats.iter().map(|&v| f64::from(v)).collect())
                    .map_err(e)
            }
            "value_ints" => Tensor::from_i64(DType::I64, vec![at.ints.len()], at.ints.clone()).map_err(e),
            other => Err(format!("Constant attribute `{other}` is not supported (strings and sparse tensors)")),
        }
    }

    fn softmax(&mut self, n: &NodeProto, x: ValueId, log: bool) -> Result<Vec<ValueId>, String> {
        let a = Attrs(n);
        let mk = |axis| if log { Op::LogSoftmax { axis } } else { Op::Softmax { axis } };
        let ty = self.f.ty(x).clone();
        let rank = ty.rank() as i64;
        if self.opset >= 13 {
            return self.emit(mk(a.i("axis", -1)?), vec![x]);
        }
        // Opsets before 13 coerce the input to 2-D at `axis` and normalise whole rows.
        let axis = a.i("axis", 1)?;
        let axis = if axis < 0 { axis + rank } else { axis };
        if axis == rank - 1 {
            return self.emit(mk(-1), vec![x]);
        }
        let dims =
            ty.fixed_shape().ok_or("softmax over several trailing dims (opset < 13) needs a static input shape")?;
        let (p, q): (i64, i64) = (dims[..axis as usize].iter().product(), dims[axis as usize..].iter().product());
        let s2 = self.konst(Tensor::from_i64(DType::I64, vec![2], vec![p, q]).map_err(|e| e.to_string())?)?;
        let flat = self.emit1(Op::Reshape { allowzero: false }, vec![x, s2])?;
        let y = self.emit1(mk(1), vec![flat])?;
        let back = self.konst(Tensor::from_i64(DType::I64, vec![dims.len()], dims).map_err(|e| e.to_string())?)?;
        self.emit(Op::Reshape { allowzero: false }, vec![y, back])
    }

    fn reduce(&mut self, n: &NodeProto, ins: &[Option<ValueId>]) -> Result<Vec<ValueId>, String> {
        let a = Attrs(n);
        let x = ins.first().copied().flatten().ok_or("required input 0 is missing")?;
        let axes_as_input = match n.op_type.as_str() {
            "ReduceSum" => self.opset >= 13,
            _ => self.opset >= 18,
        };
        let axes = if axes_as_input { self.const_ints(ins, 1, "axes")? } else { a.ints_opt("axes")? };
        let keepdims = a.i("keepdims", 1)? != 0;
        let noop = a.i("noop_with_empty_axes", 0)? != 0;
        let axes = match axes {
            Some(v) if !v.is_empty() => v,
            _ if noop => return self.emit(Op::Identity, vec![x]),
            _ => (0..self.f.ty(x).rank() as i64).collect(),
        };
        let op = match n.op_type.as_str() {
            "ReduceMean" => Op::ReduceMean { axes, keepdims },
            "ReduceSum" => Op::ReduceSum { axes, keepdims },
            "ReduceMax" => Op::ReduceMax { axes, keepdims },
            "ReduceMin" => Op::ReduceMin { axes, keepdims },
            "ReduceProd" => Op::ReduceProd { axes, keepdims },
            "ReduceSumSquare" => Op::ReduceSumSquare { axes, keepdims },
            "ReduceL1" => Op::ReduceL1 { axes, keepdims },
            "ReduceL2" => Op::ReduceL2 { axes, keepdims },
            _ => Op::ReduceLogSumExp { axes, keepdims },
        };
        if self.f.ty(x).dtype == DType::Bool && matches!(op, Op::ReduceMax { .. } | Op::ReduceMin { .. }) {
            // Bool max/min (opset 20) are any/all: reduce 0/1 as u8 and cast back; u8's
            // range makes an empty max `false` and an empty min `true`, as ONNX defines.
            let xi = self.cast_to(x, DType::U8)?;
            let r = self.emit1(op, vec![xi])?;
            return self.emit(Op::Cast { to: DType::Bool }, vec![r]);
        }
        self.emit(op, vec![x])
    }

    fn flatten(&mut self, x: ValueId, axis: i64) -> Result<Vec<ValueId>, String> {
        let ty = self.f.ty(x).clone();
        let rank = ty.rank() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..=rank).contains(&axis) {
            return Err(format!("axis {axis} is out of range for rank {rank}"));
        }
        let part =
            |r: std::ops::Range<usize>| ty.shape[r].iter().map(Dim::as_fixed).try_fold(1i64, |a, d| Some(a * d?));
        let (p, q) = (part(0..axis as usize), part(axis as usize..rank as usize));
        let shape = match (p, q) {
            (Some(p), _) => Some(vec![p, -1]),
            (_, Some(q)) => Some(vec![-1, q]),
            _ => None,
        };
        if let Some(shape) = shape {
            let s = self.konst(Tensor::from_i64(DType::I64, vec![2], shape).map_err(|e| e.to_string())?)?;
            return self.emit(Op::Reshape { allowzero: false }, vec![x, s]);
        }
        // Dynamic: [prod(shape[:axis]), prod(shape[axis:])] computed at run time.
        let head = self.emit1(Op::Shape { start: 0, end: Some(axis) }, vec![x])?;
        let head = self.emit1(Op::ReduceProd { axes: vec![0], keepdims: true }, vec![head])?;
        let minus1 = self.konst(Tensor::from_i64(DType::I64, vec![1], vec![-1]).map_err(|e| e.to_string())?)?;
        let s = self.emit1(Op::Concat { axis: 0 }, vec![head, minus1])?;
        self.emit(Op::Reshape { allowzero: false }, vec![x, s])
    }

    fn split(&mut self, n: &NodeProto, ins: &[Option<ValueId>]) -> Result<Vec<ValueId>, String> {
        let a = Attrs(n);
        let x = ins.first().copied().flatten().ok_or("required input 0 is missing")?;
        let ty = self.f.ty(x).clone();
        let axis = a.i("axis", 0)?;
        let rank = ty.rank() as i64;
        let ax = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&ax) {
            return Err(format!("axis {axis} is out of range for rank {rank}"));
        }
        let ax = ax as usize;
        let sizes = if self.opset >= 13 { self.const_ints(ins, 1, "split")? } else { a.ints_opt("split")? };
        let n_out = n.output.len();
        let d = ty.shape[ax].clone();
        let pieces: Vec<Dim> = match sizes {
            Some(s) => {
                if s.len() != n_out {
                    return Err(format!("split has {} sizes but the node has {n_out} outputs", s.len()));
                }
                s.iter().map(|&v| Dim::fixed(v)).collect()
            }
            None => {
                let k = match a.ints_opt("num_outputs")? {
                    Some(_) => a.i_req("num_outputs")?,
                    None => n_out as i64,
                };
                if k <= 0 || k as usize != n_out {
                    return Err(format!("num_outputs {k} does not match the node's {n_out} outputs"));
                }
                match d.as_fixed() {
                    Some(total) => {
                        let chunk = (total + k - 1) / k;
                        if a.ints_opt("num_outputs")?.is_none() && total % k != 0 {
                            return Err(format!("dim {total} does not split evenly into {k} outputs"));
                        }
                        (0..k).map(|j| Dim::fixed(chunk.min((total - j * chunk).max(0)))).collect()
                    }
                    None => {
                        let piece = d.div_exact(&Dim::fixed(k)).ok_or_else(|| {
                            format!("cannot split symbolic dim {d} into {k} equal pieces without split sizes")
                        })?;
                        vec![piece; n_out]
                    }
                }
            }
        };
        let declared = pieces
            .into_iter()
            .map(|p| {
                let mut s = ty.shape.clone();
                s[ax] = p;
                TensorType::new(ty.dtype, s)
            })
            .collect();
        self.emit_declared(Op::Split { axis }, vec![x], declared)
    }

    fn slice(&mut self, n: &NodeProto, ins: &[Option<ValueId>]) -> Result<Vec<ValueId>, String> {
        let a = Attrs(n);
        let x = ins.first().copied().flatten().ok_or("required input 0 is missing")?;
        if self.opset < 10 {
            let op = Op::Slice {
                axes: a.ints_opt("axes")?.unwrap_or_default(),
                starts: a.ints_opt("starts")?.ok_or("missing starts")?,
                ends: a.ints_opt("ends")?.ok_or("missing ends")?,
                steps: vec![],
            };
            return self.emit(op, vec![x]);
        }
        let axes = self.const_ints(ins, 3, "axes")?.unwrap_or_default();
        let steps = self.const_ints(ins, 4, "steps")?.unwrap_or_default();
        let s = ins.get(1).copied().flatten().ok_or("required input 1 (starts) is missing")?;
        let e = ins.get(2).copied().flatten().ok_or("required input 2 (ends) is missing")?;
        if let (Some(st), Some(en)) = (self.const_of(s), self.const_of(e)) {
            let op = Op::Slice { axes, starts: st.to_i64_vec(), ends: en.to_i64_vec(), steps };
            return self.emit(op, vec![x]);
        }
        let s = self.cast_to(s, DType::I64)?;
        let e = self.cast_to(e, DType::I64)?;
        self.emit(Op::Slice { axes, starts: vec![], ends: vec![], steps }, vec![x, s, e])
    }

    fn layer_norm(&mut self, n: &NodeProto, ins: &[Option<ValueId>]) -> Result<Vec<ValueId>, String> {
        let a = Attrs(n);
        let x = ins.first().copied().flatten().ok_or("required input 0 is missing")?;
        let scale = ins.get(1).copied().flatten().ok_or("required input 1 (Scale) is missing")?;
        let axis = a.i("axis", -1)?;
        let epsilon = f64::from(a.f("epsilon", 1e-5)? as f32);
        let mut ops = vec![x, scale];
        ops.extend(ins.get(2).copied().flatten());
        let y = self.emit1(Op::LayerNorm { axis, epsilon }, ops)?;
        let wants = |k: usize| n.output.get(k).is_some_and(|s| !s.is_empty());
        if !wants(1) && !wants(2) {
            return Ok(vec![y]);
        }
        // Mean and InvStdDev: reduced over [axis, rank) with kept dims.
        let ty = self.f.ty(x).clone();
        let rank = ty.rank() as i64;
        let ax = if axis < 0 { axis + rank } else { axis };
        let axes: Vec<i64> = (ax..rank).collect();
        let mean = self.emit1(Op::ReduceMean { axes: axes.clone(), keepdims: true }, vec![x])?;
        let d = self.emit1(Op::Sub, vec![x, mean])?;
        let d2 = self.emit1(Op::Mul, vec![d, d])?;
        let var = self.emit1(Op::ReduceMean { axes, keepdims: true }, vec![d2])?;
        let eps = self.konst(Tensor::scalar_f64(ty.dtype, epsilon))?;
        let ve = self.emit1(Op::Add, vec![var, eps])?;
        let sd = self.emit1(Op::Sqrt, vec![ve])?;
        let inv = self.emit1(Op::Reciprocal, vec![sd])?;
        Ok(vec![y, mean, inv])
    }

    fn pad(&mut self, n: &NodeProto, ins: &[Option<ValueId>]) -> Result<Vec<ValueId>, String> {
        let a = Attrs(n);
        let x = ins.first().copied().flatten().ok_or("required input 0 is missing")?;
        let rank = self.f.ty(x).rank();
        let mode = match a.s("mode", "constant")?.as_str() {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            other => return Err(format!("pad mode `{other}` is not supported")),
        };
        let (pads, value) = if self.opset >= 11 {
            let pads = self.const_ints(ins, 1, "pads")?.ok_or("Pad needs its pads input")?;
            let value = self.const_scalar(ins, 2, "constant_value")?.unwrap_or(0.0);
            let pads = match self.const_ints(ins, 3, "axes")? {
                None => pads,
                Some(axes) => {
                    if pads.len() != 2 * axes.len() {
                        return Err(format!("pads has {} entries for {} axes", pads.len(), axes.len()));
                    }
                    let mut full = vec![0i64; 2 * rank];
                    for (j, &ax) in axes.iter().enumerate() {
                        let r = rank as i64;
                        let k = if ax < 0 { ax + r } else { ax };
                        if !(0..r).contains(&k) {
                            return Err(format!("axes entry {ax} is out of range for rank {rank}"));
                        }
                        full[k as usize] = pads[j];
                        full[k as usize + rank] = pads[j + axes.len()];
                    }
                    full
                }
            };
            (pads, value)
        } else {
            (a.ints_opt("pads")?.ok_or("Pad needs its pads attribute")?, a.f("value", 0.0)?)
        };
        self.emit(Op::Pad { pads, mode, value }, vec![x])
    }
}

/// Typed attribute access for one node.
struct Attrs<'a>(&'a NodeProto);

impl Attrs<'_> {
    fn get(&self, name: &str, ty: i32) -> Result<Option<&crate::proto::AttributeProto>, String> {
        match self.0.attribute.iter().find(|a| a.name == name) {
            None => Ok(None),
            Some(a) if !a.ref_attr_name.is_empty() => Err(format!("attribute `{name}` refers to a function attribute")),
            Some(a) if a.r#type == ty || a.r#type == 0 => Ok(Some(a)),
            Some(a) => Err(format!("attribute `{name}` has type {} but {} was expected", a.r#type, ty)),
        }
    }
    fn i(&self, name: &str, default: i64) -> Result<i64, String> {
        Ok(self.get(name, attr_type::INT)?.map(|a| a.i).unwrap_or(default))
    }
    fn i_req(&self, name: &str) -> Result<i64, String> {
        self.get(name, attr_type::INT)?.map(|a| a.i).ok_or_else(|| format!("attribute `{name}` is required"))
    }
    fn f(&self, name: &str, default: f64) -> Result<f64, String> {
        Ok(self.f_opt(name)?.unwrap_or(default))
    }
    fn f_opt(&self, name: &str) -> Result<Option<f64>, String> {
        Ok(self.get(name, attr_type::FLOAT)?.map(|a| f64::from(a.f)))
    }
    fn s(&self, name: &str, default: &str) -> Result<String, String> {
        Ok(self
            .get(name, attr_type::STRING)?
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
            .unwrap_or_else(|| default.to_string()))
    }
    /// Present check for any attribute, ints read for INTS attributes.
    fn ints_opt(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.0.attribute.iter().find(|a| a.name == name) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::INT => Ok(Some(vec![a.i])),
            Some(a) if a.r#type == attr_type::INTS || a.r#type == 0 => Ok(Some(a.ints.clone())),
            Some(a) => Err(format!("attribute `{name}` has type {} but ints were expected", a.r#type)),
        }
    }
    fn tensor_opt(&self, name: &str) -> Result<Option<Tensor>, String> {
        match self.get(name, attr_type::TENSOR)? {
            None => Ok(None),
            Some(a) => {
                Ok(Some(tensor_from_proto(a.t.as_ref().ok_or_else(|| format!("attribute `{name}` has no tensor"))?)?))
            }
        }
    }
}

#[allow(dead_code)]
const _: i32 = attr_type::GRAPH + attr_type::FLOATS + attr_type::STRINGS;
