//! Round trips through the ModelIR JSON document (`model.json`) and the import's
//! behaviour on hostile documents: every malformed input is an error naming its JSON
//! path, never a panic or an allocation sized by a claim in the file.

use ferrumc_ir::json::{self, from_document, from_json_str, parse_dim, to_document, to_json_string, JsonError};
use ferrumc_ir::op::{GeluApproximation, PadMode};
use ferrumc_ir::{Attr, DType, Dim, Function, GroupKind, Module, Op, Tensor, TensorType, WeightDecl, WeightSource};
use serde_json::{json, Value};

fn f32t(dims: Vec<Dim>) -> TensorType {
    TensorType::new(DType::F32, dims)
}

fn fixed(dtype: DType, dims: &[i64]) -> TensorType {
    TensorType::fixed(dtype, dims)
}

fn sym(s: &str) -> Dim {
    Dim::sym(s)
}

fn n(v: i64) -> Dim {
    Dim::fixed(v)
}

/// A module exercising every part of the mapping.
fn rich_module() -> Module {
    let mut m = Module::new("rich");
    let nan_tensor = Tensor::from_f64(DType::F32, vec![2, 2], vec![1.5, f64::NAN, -0.0, f64::NEG_INFINITY]).unwrap();
    m.attrs = [
        ("model_type", Attr::Str("llama".into())),
        ("architecture", Attr::Str("LlamaForCausalLM".into())),
        ("architecture_family", Attr::Str("Transformer".into())),
        ("description", Attr::Str("a \"quoted\"\nmodel".into())),
        ("hidden_size", Attr::Int(64)),
        ("num_kv_heads", Attr::Int(0)),
        ("vocab_size", Attr::Int(-3)),           // negative: stays in `additional`
        ("num_layers", Attr::Str("two".into())), // not an int: stays in `additional`
        ("rope_theta", Attr::Float(10000.0)),
        ("eps", Attr::Float(1e-5)),
        ("not_a_number", Attr::Float(f64::NAN)),
        ("pos_inf", Attr::Float(f64::INFINITY)),
        ("neg_inf", Attr::Float(f64::NEG_INFINITY)),
        ("neg_zero", Attr::Float(-0.0)),
        ("tricky", Attr::Float(0.1 + 0.2)),
        ("flag", Attr::Bool(true)),
        ("no_ints", Attr::Ints(vec![])),
        ("no_floats", Attr::Floats(vec![])),
        ("ints", Attr::Ints(vec![i64::MIN, -1, 0, i64::MAX])),
        ("floats", Attr::Floats(vec![1.0, -2.5, 3e300])),
        ("odd_floats", Attr::Floats(vec![1.0, f64::NAN, f64::INFINITY])),
        ("compute", Attr::DType(DType::Int4 { group_size: 128 })),
        ("table", Attr::Tensor(nan_tensor.clone())),
        ("bools", Attr::Tensor(Tensor::from_i64(DType::Bool, vec![3], vec![1, 0, 1]).unwrap())),
        ("looks_tagged", Attr::Str("nan".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    m.weights = vec![
        WeightDecl {
            name: "embed".into(),
            ty: fixed(DType::F32, &[32, 16]),
            source: WeightSource::Safetensors { file: "model.safetensors".into(), tensor: "model.embed".into() },
        },
        WeightDecl {
            name: "norm".into(),
            ty: fixed(DType::F32, &[16]),
            source: WeightSource::Raw { file: "norm.bin".into(), offset: 1 << 40 },
        },
        WeightDecl {
            name: "q.weight".into(),
            ty: fixed(DType::Q4_0, &[16, 32]),
            source: WeightSource::Raw { file: "q.bin".into(), offset: 0 },
        },
        WeightDecl {
            name: "scale".into(),
            ty: fixed(DType::F16, &[4]),
            source: WeightSource::Inline(
                Tensor::from_f64(DType::F16, vec![4], vec![0.1, -0.0, 65504.0, f64::INFINITY]).unwrap(),
            ),
        },
        WeightDecl {
            name: "ids".into(),
            ty: fixed(DType::I64, &[3]),
            source: WeightSource::Inline(Tensor::from_i64(DType::I64, vec![3], vec![i64::MIN, 0, i64::MAX]).unwrap()),
        },
        WeightDecl {
            name: "onnx::MatMul \"7\"".into(),
            ty: fixed(DType::Int4 { group_size: 64 }, &[16, 64]),
            source: WeightSource::Safetensors { file: "w.safetensors".into(), tensor: "x".into() },
        },
        WeightDecl { name: "unused".into(), ty: f32t(vec![sym("n"), n(2)]), source: WeightSource::Inline(nan_tensor) },
    ];

    // forward: symbolic dims, multi-result ops, every op attribute kind.
    let mut f = Function::new("forward");
    let b = sym("batch");
    let s = sym("seq");
    let x = f.add_param("x", f32t(vec![b.clone(), s.clone(), n(16)]));
    let r = f.add_param("res", f32t(vec![b.clone(), s.clone(), n(16)]));
    let _unused = f.add_param("unused input", fixed(DType::I64, &[]));
    let norm = f.weight("norm", fixed(DType::F32, &[16]));
    let embed = f.weight("embed", fixed(DType::F32, &[32, 16]));
    let quoted = f.weight("onnx::MatMul \"7\"", fixed(DType::Int4 { group_size: 64 }, &[16, 64]));
    let h = f32t(vec![b.clone(), s.clone(), n(16)]);
    let nr = f.add_op(Op::RmsNormResidual { epsilon: 1e-6 }, vec![x, r, norm], vec![h.clone(), h.clone()]);
    let nr_res = f.op(nr).unwrap().results.clone();
    let lin = f.add_op1(Op::Linear, vec![nr_res[0], embed], f32t(vec![b.clone(), s.clone(), n(32)]));
    let topk = f.add_op(
        Op::TopK { axis: -1, k: 4, largest: true, sorted: false },
        vec![lin],
        vec![f32t(vec![b.clone(), s.clone(), n(4)]), TensorType::new(DType::I64, vec![b.clone(), s.clone(), n(4)])],
    );
    let tk = f.op(topk).unwrap().results.clone();
    let bs1 = b.mul(&s).add(&n(1));
    let flat = f.add_op1(Op::Reshape { allowzero: false }, vec![tk[0]], f32t(vec![bs1.clone(), Dim::Unknown]));
    let split = f.add_op(
        Op::Split { axis: 0 },
        vec![flat],
        vec![f32t(vec![n(1), Dim::Unknown]), f32t(vec![b.mul(&s), Dim::Unknown]), f32t(vec![n(0), Dim::Unknown])],
    );
    let parts = f.op(split).unwrap().results.clone();
    let cast = f.add_op1(
        Op::Cast { to: DType::F16 },
        vec![parts[1]],
        TensorType::new(DType::F16, vec![b.mul(&s), Dim::Unknown]),
    );
    let gelu = f.add_op1(Op::Gelu { approximate: GeluApproximation::Tanh }, vec![nr_res[1]], h.clone());
    let clip = f.add_op1(Op::Clip { min: Some(-1.0), max: None }, vec![gelu], h.clone());
    let c = f.add_op1(
        Op::Constant {
            value: Tensor::from_f64(DType::F32, vec![16], (0..16).map(|i| i as f64 * 0.1).collect()).unwrap(),
        },
        vec![],
        fixed(DType::F32, &[16]),
    );
    let added = f.add_op1(Op::Add, vec![clip, c], h.clone());
    let padded = f.add_op1(
        Op::Pad { pads: vec![0, 0, 1, 0, 0, 1], mode: PadMode::Reflect, value: f64::NEG_INFINITY },
        vec![added],
        f32t(vec![b.clone(), s.clone(), n(18)]),
    );
    let sliced = f.add_op1(
        Op::Slice { axes: vec![2], starts: vec![1], ends: vec![i64::MAX], steps: vec![] },
        vec![padded],
        f32t(vec![b.clone(), s.clone(), n(17)]),
    );
    let sm = f.add_op1(Op::Softmax { axis: -1 }, vec![sliced], f32t(vec![b.clone(), s.clone(), n(17)]));
    let ql = f.add_op1(Op::QuantizedLinear, vec![nr_res[0], quoted], f32t(vec![b.clone(), s.clone(), n(16)]));
    f.add_output("logits", sm);
    f.add_output("indices", tk[1]);
    f.add_output("residual", nr_res[1]);
    f.add_output("echo", x);
    f.add_output("embed table", embed);
    f.add_output("again", sm);
    f.add_output("cast", cast);
    f.add_output("ql", ql);
    f.add_output("first", parts[0]);
    f.add_output("last", parts[2]);
    m.functions.push(f);

    // decode: op order differs from creation order, and an erased op leaves a hole.
    let mut d = Function::new("decode");
    let t = d.add_param("t", fixed(DType::F32, &[4]));
    let a = d.add_op1(Op::Exp, vec![t], fixed(DType::F32, &[4]));
    let neg = d.add_op1(Op::Neg, vec![a], fixed(DType::F32, &[4]));
    d.add_output("y", neg);
    let th = d.add_op1(Op::Tanh, vec![t], fixed(DType::F32, &[4]));
    d.replace_all_uses(a, th);
    let exp_op = d.producer(a).unwrap();
    d.erase_op(exp_op);
    let scale = d.weight("scale", fixed(DType::F16, &[4]));
    let att = d.add_op(Op::Attention { scale: None, causal: true }, vec![neg, th, neg], vec![fixed(DType::F32, &[4])]);
    let att_out = d.op(att).unwrap().results[0];
    d.add_output("att", att_out);
    d.add_output("scale", scale);
    // Fusion groups with sparse ids (renumbered densely on export) and a kind nobody uses.
    let neg_op = d.producer(neg).unwrap();
    let th_op = d.producer(th).unwrap();
    d.set_group_kind(9, GroupKind::Elementwise);
    d.set_group_kind(3, GroupKind::Attention);
    d.set_group_kind(5, GroupKind::Opaque);
    d.set_group(th_op, Some(9));
    d.set_group(neg_op, Some(9));
    d.set_group(att, Some(3));
    m.functions.push(d);

    // A function with no ops at all.
    let mut e = Function::new("passthrough \"fn\"");
    let p = e.add_param("p", TensorType::new(DType::Bool, vec![Dim::Unknown]));
    e.add_output("p", p);
    m.functions.push(e);
    m
}

/// A two-layer module for the hostile-input tests.
fn tiny() -> Module {
    let mut m = Module::new("tiny");
    m.weights.push(WeightDecl {
        name: "w".into(),
        ty: fixed(DType::F32, &[4, 8]),
        source: WeightSource::Safetensors { file: "m.safetensors".into(), tensor: "w".into() },
    });
    let mut f = Function::new("forward");
    let x = f.add_param("x", f32t(vec![sym("batch"), n(8)]));
    let w = f.weight("w", fixed(DType::F32, &[4, 8]));
    let y = f.add_op1(Op::Linear, vec![x, w], f32t(vec![sym("batch"), n(4)]));
    let z = f.add_op1(Op::Softmax { axis: -1 }, vec![y], f32t(vec![sym("batch"), n(4)]));
    f.add_output("y", z);
    m.functions.push(f);
    m
}

fn tiny_value() -> Value {
    serde_json::from_str(&to_json_string(&tiny()).unwrap()).unwrap()
}

fn import(v: &Value) -> Result<Module, JsonError> {
    from_json_str(&serde_json::to_string(v).unwrap())
}

fn import_err(v: &Value) -> String {
    match import(v) {
        Ok(_) => panic!("document was accepted"),
        Err(e) => e.to_string(),
    }
}

fn set(v: &mut Value, pointer: &str, new: Value) {
    *v.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer}")) = new;
}

/// Compare two modules part by part so a failure shows the first differing part.
fn assert_same(a: &Module, b: &Module) {
    assert_eq!(a.name, b.name);
    for (k, v) in &a.attrs {
        assert_eq!(Some(v), b.attrs.get(k), "attribute {k}");
    }
    assert_eq!(a.attrs.len(), b.attrs.len(), "attribute count");
    assert_eq!(a.weights, b.weights);
    assert_eq!(a.functions.len(), b.functions.len());
    for (fa, fb) in a.functions.iter().zip(&b.functions) {
        assert_eq!(fa.name, fb.name);
        assert_eq!(fa.params(), fb.params(), "params of {}", fa.name);
        assert_eq!(fa.outputs(), fb.outputs(), "outputs of {}", fa.name);
        assert_eq!(fa.weight_values(), fb.weight_values(), "weights of {}", fa.name);
        for o in fa.op_ids() {
            assert_eq!(fa.op(o), fb.op(o), "op {o} of {}", fa.name);
        }
        for v in 0..fa.value_capacity() as u32 {
            let v = ferrumc_ir::ValueId(v);
            assert_eq!(fa.try_value(v), fb.try_value(v), "value {v} of {}", fa.name);
        }
        assert_eq!(fa.value_capacity(), fb.value_capacity());
        assert_eq!(fa.group_members(), fb.group_members(), "groups of {}", fa.name);
        assert_eq!(fa.group_kinds(), fb.group_kinds(), "group kinds of {}", fa.name);
        assert!(fa == fb, "function {}", fa.name);
    }
    assert!(a == b);
}

// ---------------------------------------------------------------------- round trips

#[test]
fn document_round_trip_is_canonical() {
    let m = rich_module();
    let doc = to_document(&m).unwrap();
    assert_same(&from_document(&doc).unwrap(), &m.canonical().unwrap());
}

#[test]
fn json_text_round_trip_is_canonical_and_stable() {
    let m = rich_module();
    let text = to_json_string(&m).unwrap();
    assert!(text.ends_with("}\n"));
    let back = from_json_str(&text).unwrap();
    assert_same(&back, &m.canonical().unwrap());
    assert_eq!(to_json_string(&back).unwrap(), text, "export of the re-imported module is byte-identical");
    assert_eq!(to_json_string(&m).unwrap(), text, "export is deterministic");
}

#[test]
fn export_follows_the_contract_layout() {
    let doc: Value = serde_json::from_str(&to_json_string(&rich_module()).unwrap()).unwrap();
    assert_eq!(doc["metadata"]["name"], "rich");
    assert_eq!(doc["metadata"]["version"], "1");
    assert_eq!(doc["metadata"]["model_type"], "llama");
    assert_eq!(doc["metadata"]["architecture_family"], "Transformer");
    assert_eq!(doc["metadata"]["description"], "a \"quoted\"\nmodel");
    assert_eq!(doc["metadata"]["additional"]["vocab_size"], -3);
    assert_eq!(doc["metadata"]["additional"]["not_a_number"], json!({"float": "nan"}));
    assert_eq!(doc["metadata"]["additional"]["no_floats"], json!({"floats": []}));
    assert_eq!(doc["metadata"]["additional"]["no_ints"], json!([]));
    assert_eq!(doc["metadata"]["additional"]["odd_floats"], json!({"floats": [1.0, "nan", "inf"]}));
    assert_eq!(doc["metadata"]["additional"]["compute"], json!({"dtype": "int4<128>"}));
    assert_eq!(
        doc["metadata"]["additional"]["bools"],
        json!({"dtype": "bool", "shape": [3], "values": [true, false, true]})
    );
    assert_eq!(doc["architecture"]["name"], "LlamaForCausalLM");
    assert_eq!(doc["architecture"]["dimensions"]["hidden_size"], 64);
    assert_eq!(doc["architecture"]["dimensions"]["num_kv_heads"], 0);
    assert_eq!(doc["architecture"]["dimensions"]["intermediate_size"], Value::Null);
    assert_eq!(
        doc["parameters"][1]["metadata"]["source"],
        json!({"kind": "raw", "file": "norm.bin", "offset": 1u64 << 40})
    );
    assert_eq!(doc["parameters"][2]["dtype"], "q4_0");
    assert_eq!(doc["parameters"][2]["trainable"], false);
    assert_eq!(
        doc["parameters"][0]["initialization"],
        json!({"Custom": "safetensors(\"model.safetensors\", \"model.embed\")"})
    );
    assert_eq!(doc["parameters"][6]["shape"], json!([-1, 2]));
    assert_eq!(doc["parameters"][6]["dims"], json!(["?n", "2"]));
    assert!(doc["parameters"][0].get("dims").is_none(), "static weights carry no dims");

    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers[0]["name"], "forward/0");
    assert_eq!(layers[0]["layer_type"], "rms_norm_residual");
    assert_eq!(
        layers[0]["inputs"][0],
        json!({"name": "forward/%x", "shape": [-1, -1, 16], "dtype": "f32", "dims": ["?batch", "?seq", "16"]})
    );
    assert_eq!(layers[0]["inputs"][2]["name"], "@norm");
    assert_eq!(layers[0]["parameters"], json!(["norm"]));
    assert_eq!(layers[0]["outputs"][1]["name"], "forward/%1");
    let reshape = layers.iter().find(|l| l["layer_type"] == "reshape").unwrap();
    assert_eq!(reshape["outputs"][0]["dims"], json!(["?batch*?seq+1", "?"]));
    let pad = layers.iter().find(|l| l["layer_type"] == "pad").unwrap();
    assert_eq!(pad["config"], json!({"mode": "reflect", "pads": [0, 0, 1, 0, 0, 1], "value": {"float": "-inf"}}));
    let slice = layers.iter().find(|l| l["layer_type"] == "slice").unwrap();
    assert_eq!(slice["config"]["steps"], json!([]));
    let cast = layers.iter().find(|l| l["layer_type"] == "cast").unwrap();
    assert_eq!(cast["config"], json!({"to": {"dtype": "f16"}}));
    let ql = layers.iter().find(|l| l["layer_type"] == "quantized_linear").unwrap();
    assert_eq!(ql["inputs"][1]["name"], "@\"onnx::MatMul \\\"7\\\"\"");

    assert_eq!(doc["graph"]["inputs"][0], "forward/%x");
    assert_eq!(
        doc["graph"]["nodes"][0],
        json!({"id": "forward/0", "layer_name": "forward/0", "metadata": {"function": "forward"}})
    );
    assert!(doc["graph"]["edges"]
        .as_array()
        .unwrap()
        .contains(&json!({"source": "forward/0", "target": "forward/1", "source_output": 0, "target_input": 0})));
    assert_eq!(doc["functions"][0]["outputs"][1]["name"], "indices");
    assert_eq!(doc["functions"][0]["outputs"][4]["tensor"]["name"], "@embed");
    assert_eq!(doc["functions"][2]["name"], "passthrough \"fn\"");
}

#[test]
fn fusion_groups_are_exported_densely_per_layer() {
    let m = rich_module();
    let doc = to_document(&m).unwrap();
    let groups: Vec<(String, Option<(u32, String)>)> = doc
        .layers
        .iter()
        .filter(|l| l.name.starts_with("decode/"))
        .map(|l| (l.layer_type.clone(), l.fusion_group.as_ref().map(|g| (g.id, g.kind.clone()))))
        .collect();
    assert_eq!(
        groups,
        vec![
            ("tanh".to_string(), Some((0, "elementwise".to_string()))),
            ("neg".to_string(), Some((0, "elementwise".to_string()))),
            ("attention".to_string(), Some((1, "attention".to_string()))),
        ]
    );
    assert!(doc.layers.iter().filter(|l| l.name.starts_with("forward/")).all(|l| l.fusion_group.is_none()));
    let text = to_json_string(&m).unwrap();
    assert!(!text.contains("\"fusion_group\": null"), "absent groups are left out");
}

#[test]
fn bad_fusion_groups_are_rejected() {
    let mut v = tiny_value();
    v["layers"][0]["fusion_group"] = json!({"id": 0, "kind": "blob"});
    assert!(
        import_err(&v).contains("layers[0].fusion_group.kind: unknown fusion group kind `blob`"),
        "{}",
        import_err(&v)
    );
    v["layers"][0]["fusion_group"] = json!({"id": 0, "kind": "matmul"});
    v["layers"][1]["fusion_group"] = json!({"id": 0, "kind": "reduction"});
    assert!(import_err(&v).contains("layers[1].fusion_group.kind: fusion group 0 already has kind `matmul`"));
    v["layers"][1]["fusion_group"] = json!({"id": 4, "kind": "reduction"});
    let m = import(&v).unwrap();
    let f = &m.functions[0];
    let kinds: Vec<_> = f.group_kinds().iter().map(|(g, k)| (*g, *k)).collect();
    assert_eq!(kinds, vec![(0, GroupKind::Matmul), (1, GroupKind::Reduction)]);
}

#[test]
fn op_order_not_creation_order_is_kept() {
    let doc: Value = serde_json::from_str(&to_json_string(&rich_module()).unwrap()).unwrap();
    let decode: Vec<&str> = doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"].as_str().unwrap().starts_with("decode/"))
        .map(|l| l["layer_type"].as_str().unwrap())
        .collect();
    assert_eq!(decode, vec!["tanh", "neg", "attention"]);
}

#[test]
fn floats_round_trip_bit_exactly() {
    // A cheap deterministic generator over f64 bit patterns, skipping non-finite ones.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut floats = Vec::new();
    while floats.len() < 20_000 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let x = f64::from_bits(state ^ (state >> 29));
        if x.is_finite() {
            floats.push(x);
        }
    }
    floats.extend([f64::MIN_POSITIVE, 5e-324, f64::MAX, f64::MIN, 0.1, 1.0 / 3.0, -0.0]);
    let mut m = Module::new("floats");
    m.attrs.insert("many".into(), Attr::Floats(floats.clone()));
    for (i, x) in floats.iter().take(500).enumerate() {
        m.attrs.insert(format!("f{i}"), Attr::Float(*x));
    }
    let back = from_json_str(&to_json_string(&m).unwrap()).unwrap();
    let Attr::Floats(read) = &back.attrs["many"] else { panic!("not floats") };
    let wrong = floats.iter().zip(read).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(wrong, 0, "{wrong} of {} floats changed", floats.len());
    assert!(back == m, "scalar float attributes changed");
}

#[test]
fn layers_may_come_in_any_order() {
    // A chain has one topological order, so any file order gives the same module.
    let mut v = tiny_value();
    v["layers"].as_array_mut().unwrap().reverse();
    assert_same(&import(&v).unwrap(), &tiny().canonical().unwrap());
    // Otherwise the file order breaks ties: the module is equivalent, and stable.
    let m = rich_module();
    let mut v: Value = serde_json::from_str(&to_json_string(&m).unwrap()).unwrap();
    v["layers"].as_array_mut().unwrap().reverse();
    v["graph"]["nodes"].as_array_mut().unwrap().reverse();
    let back = import(&v).unwrap();
    assert_eq!(back.op_count(), m.op_count());
    for (a, b) in back.functions.iter().zip(&m.functions) {
        let names = |f: &Function| f.outputs().iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(a), names(b));
        let mut ops_a: Vec<&str> = a.op_ids().map(|o| a.op(o).unwrap().op.name()).collect();
        let mut ops_b: Vec<&str> = b.op_ids().map(|o| b.op(o).unwrap().op.name()).collect();
        ops_a.sort();
        ops_b.sort();
        assert_eq!(ops_a, ops_b);
    }
    assert_same(&from_json_str(&to_json_string(&back).unwrap()).unwrap(), &back);
}

#[test]
fn plain_contract_document_imports() {
    let v = json!({
        "metadata": {"name": "seedish", "version": "0.6", "model_type": "Llama", "architecture_family": "Transformer",
                     "description": null, "author": "someone", "license": null, "additional": {"rope_theta": 10000.0}},
        "architecture": {"name": "LlamaForCausalLM",
                         "dimensions": {"vocab_size": 32000, "hidden_size": 0, "num_layers": 2, "num_heads": 4,
                                        "num_kv_heads": null, "intermediate_size": 11008, "max_sequence_length": 2048},
                         "config": {"tie_embeddings": true}},
        "parameters": [{"name": "w", "shape": [4, 8], "dtype": "f32", "trainable": true, "initialization": "Xavier",
                        "metadata": {"source": {"kind": "raw", "file": "w.bin", "offset": 0}}}],
        "layers": [
            {"name": "sm", "layer_type": "softmax", "inputs": [{"name": "h", "shape": [-1, 4], "dtype": "f32"}],
             "outputs": [{"name": "probs", "shape": [-1, 4], "dtype": "f32"}], "parameters": [], "config": {"axis": -1}},
            {"name": "fc", "layer_type": "linear",
             "inputs": [{"name": "input", "shape": [-1, 8], "dtype": "f32"}, {"name": "@w", "shape": [4, 8], "dtype": "f32"}],
             "outputs": [{"name": "h", "shape": [-1, 4], "dtype": "f32"}], "parameters": ["w"], "config": {}}
        ],
        "graph": {"inputs": ["input"], "outputs": ["probs"],
                  "nodes": [{"id": "n0", "layer_name": "fc", "metadata": {}}, {"id": "n1", "layer_name": "sm", "metadata": {}}],
                  "edges": [{"source": "n0", "target": "n1", "source_output": null, "target_input": null}]}
    });
    let m = import(&v).unwrap();
    assert_eq!(m.attrs["model_type"], Attr::Str("Llama".into()));
    assert_eq!(m.attrs["architecture"], Attr::Str("LlamaForCausalLM".into()));
    assert_eq!(m.attrs["author"], Attr::Str("someone".into()));
    assert_eq!(m.attrs["vocab_size"], Attr::Int(32000));
    assert_eq!(m.attrs["intermediate_size"], Attr::Int(11008));
    assert!(!m.attrs.contains_key("hidden_size"), "zero dimensions are not attributes");
    assert_eq!(m.attrs["rope_theta"], Attr::Float(10000.0));
    assert_eq!(m.attrs["tie_embeddings"], Attr::Bool(true));
    let f = m.function("forward").unwrap();
    assert_eq!(f.params()[0].0, "input");
    assert_eq!(f.ty(f.params()[0].1), &f32t(vec![Dim::Unknown, n(8)]));
    assert_eq!(f.outputs()[0].0, "probs");
    let order = f.op_order().unwrap();
    assert_eq!(f.op(order[0]).unwrap().op, Op::Linear);
    assert_eq!(f.op(order[1]).unwrap().op, Op::Softmax { axis: -1 });
}

#[test]
fn dim_expressions_parse_back_from_display() {
    let b = sym("batch");
    let s = sym("seq");
    let dims = [
        n(0),
        n(8),
        n(i64::MAX),
        n(i64::MIN),
        b.clone(),
        b.mul(&s),
        b.mul(&s).add(&n(1)),
        n(2).mul(&s).sub(&n(1)),
        n(0).sub(&b).add(&n(3)),
        b.mul(&b).mul(&s).add(&sym("past")).sub(&n(7)),
        Dim::Unknown,
    ];
    for d in dims {
        assert_eq!(parse_dim(&d.to_string()), Ok(d.clone()), "{d}");
    }
    assert_eq!(parse_dim(" ?a * 3 + 2 * ?a "), Ok(sym("a").mul(&n(5))));
    assert_eq!(parse_dim("?a-?a"), Ok(n(0)));
}

// ---------------------------------------------------------------------- hostile documents

#[test]
fn invalid_json_reports_line_and_column() {
    let err = from_json_str("{\n  \"metadata\": {\"name\": \"x\",}\n}").unwrap_err();
    assert!(matches!(err, JsonError::Syntax(_)));
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn deeply_nested_json_hits_the_recursion_limit() {
    let mut v = tiny_value();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    v["layers"][1]["config"]["axis"] = json!("PLACEHOLDER");
    let text = serde_json::to_string(&v).unwrap().replace("\"PLACEHOLDER\"", &deep);
    let err = from_json_str(&text).unwrap_err();
    assert!(matches!(err, JsonError::Syntax(_)));
    assert!(err.to_string().contains("recursion limit"), "{err}");
}

#[test]
fn unknown_layer_type_suggests_close_names() {
    let mut v = tiny_value();
    set(&mut v, "/layers/1/layer_type", json!("softmx"));
    let err = import(&v).unwrap_err();
    assert!(matches!(err, JsonError::UnknownLayerType { .. }));
    assert_eq!(err.to_string(), "layers[1].layer_type: unknown layer type `softmx` (did you mean `softmax`?)");
}

#[test]
fn unknown_attribute_is_rejected() {
    let mut v = tiny_value();
    v["layers"][1]["config"]["bogus"] = json!(1);
    let err = import_err(&v);
    assert!(err.starts_with("layers[1].config.bogus: op `softmax` has no attribute `bogus`"), "{err}");
}

#[test]
fn mistyped_attribute_is_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/layers/1/config/axis", json!(1.5));
    assert!(import_err(&v).starts_with("layers[1].config.axis: attribute `axis` of op `softmax` must be an integer"));
    set(&mut v, "/layers/1/config/axis", json!({"float": "nann"}));
    assert!(import_err(&v).starts_with("layers[1].config.axis.float: expected a number"));
    set(&mut v, "/layers/1/config/axis", json!({"weird": 1}));
    assert!(import_err(&v).starts_with("layers[1].config.axis: an attribute object must be"));
}

#[test]
fn undefined_tensor_is_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/layers/1/inputs/0/name", json!("forward/%9"));
    assert_eq!(import_err(&v), "layers[1].inputs[0]: unknown tensor `forward/%9`");
}

#[test]
fn undefined_weight_is_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/layers/0/inputs/1/name", json!("@nope"));
    assert_eq!(import_err(&v), "layers[0].inputs[1]: unknown tensor `@nope`");
}

#[test]
fn cycles_are_reported_with_layer_names() {
    let mut v = tiny_value();
    // linear now reads softmax's result, which reads linear's: a cycle.
    let out = v["layers"][1]["outputs"][0].clone();
    set(&mut v, "/layers/0/inputs/0", out);
    v["graph"]["edges"] = json!([]);
    let err = import(&v).unwrap_err();
    assert!(matches!(err, JsonError::Cycle { .. }));
    assert_eq!(
        err.to_string(),
        "layers[0]: the layers of function `forward` form a cycle through `forward/0`, `forward/1`"
    );
}

#[test]
fn self_reference_is_a_cycle() {
    let mut v = tiny_value();
    let out = v["layers"][1]["outputs"][0].clone();
    set(&mut v, "/layers/1/inputs/0", out);
    v["graph"]["edges"] = json!([]);
    assert_eq!(import_err(&v), "layers[1]: the layers of function `forward` form a cycle through `forward/1`");
}

#[test]
fn duplicate_layer_names_are_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/layers/1/name", json!("forward/0"));
    assert_eq!(import_err(&v), "layers[1].name: duplicate layer `forward/0`");
}

#[test]
fn duplicate_tensor_names_are_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/layers/1/outputs/0/name", json!("forward/%x"));
    assert_eq!(import_err(&v), "layers[1].outputs[0].name: duplicate tensor `forward/%x`");
}

#[test]
fn duplicate_parameters_are_rejected() {
    let mut v = tiny_value();
    let p = v["parameters"][0].clone();
    v["parameters"].as_array_mut().unwrap().push(p);
    assert_eq!(import_err(&v), "parameters[1].name: duplicate parameter `w`");
}

#[test]
fn dimensions_beyond_i64_are_rejected() {
    let text = to_json_string(&tiny()).unwrap().replacen(
        "\"shape\": [\n        4,",
        "\"shape\": [\n        99999999999999999999,",
        1,
    );
    assert!(text.contains("99999999999999999999"));
    let err = from_json_str(&text).unwrap_err();
    assert!(matches!(err, JsonError::Syntax(_)), "{err}");
}

#[test]
fn element_counts_beyond_2_pow_40_are_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/parameters/0/shape", json!([1 << 20, 1 << 20, 2]));
    assert_eq!(import_err(&v), "parameters[0].shape: element count exceeds the maximum 2^40");
}

#[test]
fn negative_dimensions_are_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/parameters/0/shape", json!([-4, 8]));
    assert_eq!(import_err(&v), "parameters[0].shape[0]: negative dimension -4");
}

#[test]
fn ranks_above_the_limit_are_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/parameters/0/shape", json!(vec![1; 17]));
    assert_eq!(import_err(&v), "parameters[0].shape: rank 17 exceeds the maximum 16");
}

#[test]
fn inline_literal_count_must_match_its_shape() {
    let mut v = tiny_value();
    set(
        &mut v,
        "/parameters/0/metadata/source",
        json!({"kind": "inline", "data": {"dtype": "f32", "shape": [2, 2], "values": [1.0, 2.0, 3.0]}}),
    );
    assert_eq!(
        import_err(&v),
        "parameters[0].metadata.source.data.values: shape [2, 2] has 4 elements but 3 values were given"
    );
}

#[test]
fn huge_claimed_literal_is_rejected_before_allocating() {
    let mut v = tiny_value();
    set(&mut v, "/layers/1/config/axis", json!({"dtype": "f32", "shape": [1u64 << 39, 1 << 20], "values": [1.0]}));
    assert_eq!(import_err(&v), "layers[1].config.axis.shape: element count exceeds the maximum 2^40 at dimension 1");
}

#[test]
fn bad_dtype_strings_are_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/layers/0/outputs/0/dtype", json!("f31"));
    assert!(import_err(&v).starts_with("layers[0].outputs[0].dtype: unknown dtype `f31`"));
    set(&mut v, "/layers/0/outputs/0/dtype", json!("int4<3>"));
    assert!(import_err(&v).starts_with("layers[0].outputs[0].dtype: unknown dtype `int4<3>`"));
}

#[test]
fn unparsable_dims_are_rejected() {
    for (bad, why) in [
        ("?a+", "expected a number or `?symbol` at offset 3, found the end"),
        ("?1x", "invalid symbol name `1x` at offset 0"),
        ("3**?a", "expected a number or `?symbol` at offset 2, found `*`"),
        ("?+1", "`?` at offset 0 is only allowed as a whole dim"),
        ("99999999999999999999", "integer at offset 0 is out of range"),
        ("9223372036854775807*2", "coefficient out of range"),
        ("8)", "expected `+`, `-`, `*` or the end at offset 1, found `)`"),
        ("", "expected a number or `?symbol` at offset 0, found the end"),
    ] {
        let mut v = tiny_value();
        set(&mut v, "/layers/0/outputs/0/dims/1", json!(bad));
        set(&mut v, "/layers/0/outputs/0/shape/1", json!(-1));
        let err = import_err(&v);
        assert!(
            err.starts_with(&format!("layers[0].outputs[0].dims[1]: cannot parse dim `{bad}`: {why}")),
            "{bad}: {err}"
        );
    }
    let long = "?a+".repeat(5000) + "1";
    assert!(parse_dim(&long).unwrap_err().contains("the maximum is 4096"));
}

#[test]
fn dims_must_agree_with_shape() {
    let mut v = tiny_value();
    set(&mut v, "/layers/0/outputs/0/dims/1", json!("5"));
    assert_eq!(import_err(&v), "layers[0].outputs[0].shape[1]: 4 disagrees with dims[1] = `5` (expected 5)");
}

#[test]
fn reference_types_must_match_definitions() {
    let mut v = tiny_value();
    set(&mut v, "/layers/1/inputs/0/dims/0", json!("?other"));
    let err = import_err(&v);
    assert_eq!(
        err,
        "layers[1].inputs[0]: type f32[?other, 4] of `forward/%0` disagrees with its definition at layers[0].outputs[0], which has type f32[?batch, 4]"
    );
}

#[test]
fn edges_inconsistent_with_layer_inputs_are_rejected() {
    let mut v = tiny_value();
    set(&mut v, "/graph/edges/0/source_output", json!(1));
    let err = import_err(&v);
    assert!(
        err.starts_with(
            "graph.edges[0]: edge `forward/0` -> `forward/1` (output Some(1), input Some(0)) matches no input"
        ),
        "{err}"
    );
    let mut v = tiny_value();
    set(&mut v, "/graph/edges/0/target_input", json!(1));
    assert_eq!(import_err(&v), "graph.edges[0].target_input: layer `forward/1` has 1 input(s)");
    let mut v = tiny_value();
    set(&mut v, "/graph/edges/0/source", json!("nowhere"));
    assert_eq!(import_err(&v), "graph.edges[0].source: unknown node `nowhere`");
}

#[test]
fn missing_edges_are_rejected_when_edges_are_given() {
    let mut v = tiny_value();
    // Add a second softmax reading the first; its dependency has no edge.
    let mut extra = v["layers"][1].clone();
    extra["name"] = json!("forward/2");
    extra["inputs"][0] = v["layers"][1]["outputs"][0].clone();
    extra["outputs"][0]["name"] = json!("forward/%2");
    v["layers"].as_array_mut().unwrap().push(extra);
    v["graph"]["nodes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "forward/2", "layer_name": "forward/2", "metadata": {"function": "forward"}}));
    assert_eq!(
        import_err(&v),
        "layers[2].inputs[0]: `forward/%1` comes from layer `forward/1` but graph.edges has no edge for it"
    );
}

#[test]
fn graph_lists_must_match_functions() {
    let mut v = tiny_value();
    set(&mut v, "/graph/outputs/0", json!("forward/%0"));
    assert_eq!(import_err(&v), "graph.outputs[0]: expected `forward/%1` (from `functions`), found `forward/%0`");
}

#[test]
fn cross_function_references_are_rejected() {
    let mut m = tiny();
    let mut g = Function::new("other");
    let p = g.add_param("p", f32t(vec![sym("batch"), n(4)]));
    let q = g.add_op1(Op::Relu, vec![p], f32t(vec![sym("batch"), n(4)]));
    g.add_output("q", q);
    m.functions.push(g);
    let mut v: Value = serde_json::from_str(&to_json_string(&m).unwrap()).unwrap();
    let out = v["layers"][0]["outputs"][0].clone();
    set(&mut v, "/layers/2/inputs/0", out);
    assert_eq!(
        import_err(&v),
        "layers[2].inputs[0].name: tensor `forward/%0` belongs to function `forward`, not `other`"
    );
}

#[test]
fn weights_need_a_source() {
    let mut v = tiny_value();
    v["parameters"][0]["metadata"] = json!({});
    assert!(import_err(&v).starts_with("parameters[0].metadata.source: missing"));
    set(&mut v, "/parameters/0/metadata", json!({"source": {"kind": "raw", "file": "w.bin", "offset": -1}}));
    assert_eq!(import_err(&v), "parameters[0].metadata.source.offset: expected a non-negative integer");
}

#[test]
fn graph_nodes_must_name_layers() {
    let mut v = tiny_value();
    set(&mut v, "/graph/nodes/1/layer_name", json!("forward/7"));
    assert_eq!(import_err(&v), "graph.nodes[1].layer_name: unknown layer `forward/7`");
}

#[test]
fn names_starting_with_at_are_reserved() {
    let mut v = tiny_value();
    set(&mut v, "/layers/1/outputs/0/name", json!("@w"));
    assert!(import_err(&v).starts_with("layers[1].outputs[0].name: tensor name `@w` starts with `@`"));
}

#[test]
fn error_type_is_usable_through_the_module_path() {
    // The public paths the driver uses.
    let e: json::JsonError = from_json_str("[]").unwrap_err();
    assert!(matches!(e, JsonError::Syntax(_)));
}

// ---------------------------------------------------------------------- properties

fn canonical_nan(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else {
        x
    }
}

fn arb_attr() -> impl proptest::strategy::Strategy<Value = Attr> {
    use proptest::prelude::*;
    let float = any::<u64>().prop_map(|b| canonical_nan(f64::from_bits(b)));
    prop_oneof![
        any::<i64>().prop_map(Attr::Int),
        float.clone().prop_map(Attr::Float),
        any::<bool>().prop_map(Attr::Bool),
        ".{0,12}".prop_map(Attr::Str),
        proptest::collection::vec(any::<i64>(), 0..6).prop_map(Attr::Ints),
        proptest::collection::vec(float, 0..6).prop_map(Attr::Floats),
        Just(Attr::DType(DType::BF16)),
    ]
}

proptest::proptest! {
    #[test]
    fn attributes_round_trip_through_json_text(attr in arb_attr()) {
        let text = serde_json::to_string(&json::attr_to_value(&attr)).unwrap();
        let back = json::value_to_attr(&serde_json::from_str(&text).unwrap(), "x").unwrap();
        proptest::prop_assert_eq!(back, attr);
    }

    #[test]
    fn dims_round_trip_through_their_text(ops in proptest::collection::vec((0u8..3, 0usize..4, -50i64..50), 0..8)) {
        let syms = ["a", "b", "seq", "x.y"];
        let mut d = Dim::fixed(1);
        for (op, s, k) in ops {
            let other = if k % 2 == 0 { Dim::sym(syms[s]) } else { Dim::fixed(k) };
            d = match op {
                0 => d.add(&other),
                1 => d.sub(&other),
                _ => d.mul(&other),
            };
        }
        proptest::prop_assert_eq!(parse_dim(&d.to_string()), Ok(d));
    }
}
