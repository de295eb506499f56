//! Graphviz export: the expected nodes and edges of a tiny module, and escaping of
//! hostile names (asserted on exact escaped substrings; nothing is parsed).

use ferrumc_ir::dot::to_dot;
use ferrumc_ir::{Attr, DType, Dim, Function, Module, Op, Tensor, TensorType, WeightDecl, WeightSource};

fn tiny() -> Module {
    let mut m = Module::new("tiny");
    m.weights.push(WeightDecl {
        name: "w".into(),
        ty: TensorType::fixed(DType::F32, &[16, 8]),
        source: WeightSource::Safetensors { file: "m.safetensors".into(), tensor: "w".into() },
    });
    let mut f = Function::new("forward");
    let b = Dim::sym("b");
    let x = f.add_param("x", TensorType::new(DType::F32, vec![b.clone(), Dim::fixed(8)]));
    let w = f.weight("w", TensorType::fixed(DType::F32, &[16, 8]));
    let h = f.add_op1(Op::Linear, vec![x, w], TensorType::new(DType::F32, vec![b.clone(), Dim::fixed(16)]));
    let y = f.add_op1(Op::Softmax { axis: -1 }, vec![h], TensorType::new(DType::F32, vec![b.clone(), Dim::fixed(16)]));
    f.add_output("y", y);
    m.functions.push(f);
    m
}

#[test]
fn tiny_module_has_the_expected_nodes_and_edges() {
    let dot = to_dot(&tiny());
    let expected = [
        "digraph \"tiny\" {\n",
        "  subgraph \"cluster_forward\" {\n",
        "    label=\"func @forward\";\n",
        "    \"f0_in0\" [shape=ellipse, label=\"%x: f32[?b, 8]\"];\n",
        "    \"f0_w0\" [shape=box, style=filled, fillcolor=gray88, color=gray45, label=\"@w: f32[16, 8]\"];\n",
        "    \"f0_op0\" [shape=Mrecord, label=\"{linear(%x, @w)|%0: f32[?b, 16]}\"];\n",
        "    \"f0_op1\" [shape=Mrecord, label=\"{softmax(%0)|axis=-1|%1: f32[?b, 16]}\"];\n",
        "    \"f0_out0\" [shape=invhouse, style=filled, fillcolor=lightblue, label=\"y\"];\n",
        "    \"f0_in0\" -> \"f0_op0\" [label=\"%x: f32[?b, 8]\"];\n",
        "    \"f0_w0\" -> \"f0_op0\" [label=\"@w: f32[16, 8]\"];\n",
        "    \"f0_op0\" -> \"f0_op1\" [label=\"%0: f32[?b, 16]\"];\n",
        "    \"f0_op1\" -> \"f0_out0\" [label=\"%1: f32[?b, 16]\"];\n",
    ];
    for line in expected {
        assert!(dot.contains(line), "missing {line:?} in\n{dot}");
    }
    assert_eq!(dot.matches(" -> ").count(), 4, "{dot}");
    assert!(dot.ends_with("  }\n}\n"));
    assert_eq!(dot, to_dot(&tiny()), "deterministic");
}

#[test]
fn multi_result_ops_and_long_attrs_are_drawn() {
    let mut m = Module::new("multi");
    let mut f = Function::new("main");
    let x = f.add_param("x", TensorType::fixed(DType::F32, &[4, 10]));
    let topk = f.add_op(
        Op::TopK { axis: -1, k: 2, largest: true, sorted: true },
        vec![x],
        vec![TensorType::fixed(DType::F32, &[4, 2]), TensorType::fixed(DType::I64, &[4, 2])],
    );
    let r = f.op(topk).unwrap().results.clone();
    let t =
        f.add_op1(Op::Transpose { perm: (0..10).rev().collect() }, vec![r[0]], TensorType::fixed(DType::F32, &[2, 4]));
    let c = f.add_op1(
        Op::Constant { value: Tensor::from_f64(DType::F32, vec![8], vec![0.5; 8]).unwrap() },
        vec![],
        TensorType::fixed(DType::F32, &[8]),
    );
    f.add_output("values", t);
    f.add_output("indices", r[1]);
    f.add_output("c", c);
    m.functions.push(f);
    let dot = to_dot(&m);
    assert!(
        dot.contains("label=\"{topk(%x)|axis=-1\\nk=2\\nlargest=true\\nsorted=true|%0: f32[4, 2]\\n%1: i64[4, 2]}\""),
        "{dot}"
    );
    assert!(dot.contains("perm=[9, 8, 7, 6, 5, 4, 3, 2, …]"), "{dot}");
    assert!(dot.contains("value=dense\\<f32[8]: …\\>"), "{dot}");
    assert!(dot.contains("\"f0_op0\" -> \"f0_out1\" [label=\"%1: i64[4, 2]\"];"), "{dot}");
}

#[test]
fn hostile_names_are_escaped() {
    let mut m = Module::new("m\"od\\ule");
    m.attrs.insert("k".into(), Attr::Int(1));
    let mut f = Function::new("fn\nname {|}");
    let x = f.add_param("a\"b\\c{|}<>", TensorType::fixed(DType::F32, &[2]));
    let w = f.weight("w{|}\"", TensorType::fixed(DType::Int4 { group_size: 2 }, &[2]));
    let y = f.add_op1(Op::QuantizedLinear, vec![x, w], TensorType::fixed(DType::F32, &[2]));
    f.add_output("out\"\n{|}\u{7}", y);
    m.functions.push(f);
    let dot = to_dot(&m);
    // Module and cluster names: quotes, backslashes and newlines escaped.
    assert!(dot.contains("digraph \"m\\\"od\\\\ule\" {"), "{dot}");
    assert!(dot.contains("subgraph \"cluster_fn\\nname {|}\" {"), "{dot}");
    // A param's text-format name is `%"a\"b\\c{|}<>"`; in a plain label only quotes and
    // backslashes are escaped again.
    assert!(dot.contains("[shape=ellipse, label=\"%\\\"a\\\\\\\"b\\\\\\\\c{|}<>\\\": f32[2]\"];"), "{dot}");
    // In the op's record label, the record metacharacters are escaped as well, and the
    // int4<2> type of the weight shows up escaped in its edge label only.
    assert!(dot.contains("label=\"{quantized_linear(%\\\"a\\\\\\\"b\\\\\\\\c\\{\\|\\}\\<\\>\\\", @\\\"w\\{\\|\\}\\\\\\\"\\\")|%0: f32[2]}\""), "{dot}");
    assert!(dot.contains("label=\"@\\\"w{|}\\\\\\\"\\\": int4<2>[2]\"];"), "{dot}");
    // Output names: newline as \n, the bell character shown visibly.
    assert!(dot.contains("label=\"out\\\"\\n{|}\\\\u{7}\"];"), "{dot}");
    // No raw newline inside any line: every line is a complete statement.
    for line in dot.lines() {
        let t = line.trim();
        assert!(t.ends_with(';') || t.ends_with('{') || t == "}", "unterminated line {line:?}");
    }
}
