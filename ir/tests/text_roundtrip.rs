//! Round-trip tests of the `.fir` text format: a golden printout of a small hand-built
//! module, and a property test over random modules (random weights of every source kind,
//! random functions over every op with random attributes, symbolic and polynomial
//! dims, quoted names) asserting `parse(print(m)) == m.canonical()` and that printing
//! the parsed module reproduces the text; truncated and randomly edited printouts must
//! give errors with sane positions, never panics.

use ferrumc_ir::op::{GeluApproximation, PadMode, ScatterReduction};
use ferrumc_ir::text::{parse_module, print_module};
use ferrumc_ir::{
    Attr, DType, Dim, Function, GroupKind, Module, Op, Tensor, TensorType, ValueId, WeightDecl, WeightSource,
};
use proptest::prelude::*;
use std::collections::HashSet;

// ------------------------------------------------------------------------- golden

fn f32s(dims: &[i64]) -> TensorType {
    TensorType::fixed(DType::F32, dims)
}

fn golden_module() -> Module {
    let mut m = Module::new("golden");
    m.attrs.insert("opset".into(), Attr::Int(17));
    m.attrs.insert("eps".into(), Attr::Float(1e-5));
    m.weights.push(WeightDecl {
        name: "onnx::MatMul_1".into(),
        ty: TensorType::fixed(DType::Int4 { group_size: 32 }, &[4, 64]),
        source: WeightSource::Safetensors { file: "w.safetensors".into(), tensor: "a \"b\"".into() },
    });
    m.weights.push(WeightDecl {
        name: "bias".into(),
        ty: f32s(&[4]),
        source: WeightSource::Raw { file: "b.bin".into(), offset: 128 },
    });
    let table = Tensor::from_f64(DType::F32, vec![2], vec![0.1, f64::NEG_INFINITY]).unwrap();
    m.weights.push(WeightDecl { name: "t".into(), ty: f32s(&[2]), source: WeightSource::Inline(table) });

    let batch_seq = Dim::sym("batch").mul(&Dim::sym("seq"));
    let x_ty = TensorType::new(DType::F32, vec![batch_seq.clone(), Dim::fixed(64)]);
    let y_ty = TensorType::new(DType::F32, vec![batch_seq.clone(), Dim::fixed(4)]);
    let mut f = Function::new("forward");
    let x = f.add_param("x", x_ty);
    let w = f.weight("onnx::MatMul_1", m.weights[0].ty.clone());
    let b = f.weight("bias", f32s(&[4]));
    let y = f.add_op1(Op::QuantizedLinear, vec![x, w, b], y_ty.clone());
    let top = f.add_op(
        Op::TopK { axis: -1, k: 2, largest: true, sorted: true },
        vec![y],
        vec![
            TensorType::new(DType::F32, vec![batch_seq.clone(), Dim::fixed(2)]),
            TensorType::new(DType::I64, vec![batch_seq, Dim::fixed(2)]),
        ],
    );
    let results = f.op(top).unwrap().results.clone();
    let s = f.add_op1(Op::Softmax { axis: -1 }, vec![y], y_ty);
    f.add_output("probs", s);
    f.add_output("top k", results[1]);
    m.functions.push(f);
    m
}

const GOLDEN: &str = r#"module @golden {eps = 1e-5, opset = 17}

weight @"onnx::MatMul_1" : int4<32>[4, 64] = safetensors("w.safetensors", "a \"b\"")
weight @bias : f32[4] = raw("b.bin", offset = 128)
weight @t : f32[2] = dense<f32[2]: [0.1, -inf]>

func @forward(%x: f32[?batch*?seq, 64]) -> (probs: f32[?batch*?seq, 4], "top k": i64[?batch*?seq, 2]) {
  %0 = quantized_linear %x, @"onnx::MatMul_1", @bias : f32[?batch*?seq, 4]
  %1, %2 = topk %0 {axis = -1, k = 2, largest = true, sorted = true} : f32[?batch*?seq, 2], i64[?batch*?seq, 2]
  %3 = softmax %0 {axis = -1} : f32[?batch*?seq, 4]
  return %3, %2
}
"#;

#[test]
fn golden_printout() {
    let m = golden_module();
    assert_eq!(print_module(&m), GOLDEN);
    assert_eq!(parse_module(GOLDEN).unwrap(), m.canonical().unwrap());
}

// ------------------------------------------------------------------------- strategies

/// Names of every flavour: plain identifiers, ONNX-style, digits, printable unicode with
/// spaces and quotes, and arbitrary chars including control characters.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z_][a-zA-Z0-9_.]{0,8}",
        1 => Just("onnx::MatMul_1".to_string()),
        1 => "[0-9]{1,3}",
        1 => "[ \"\\\\a-zé€😀]{0,6}",
        1 => "\\PC{0,6}",
        1 => prop::collection::vec(any::<char>(), 0..5).prop_map(|c| c.into_iter().collect()),
    ]
}

fn symbol() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,4}"
}

/// Static, unknown, symbolic and polynomial dims (never a negative constant).
fn dim() -> impl Strategy<Value = Dim> {
    prop_oneof![
        3 => (0i64..100).prop_map(Dim::fixed),
        1 => Just(Dim::Unknown),
        2 => symbol().prop_map(Dim::sym),
        2 => (symbol(), symbol(), -3i64..4, -5i64..6, any::<bool>()).prop_map(|(a, b, c, k, minus)| {
            let product = Dim::sym(a).mul(&Dim::sym(b)).mul(&Dim::fixed(c));
            let d = if minus { product.sub(&Dim::fixed(k)) } else { product.add(&Dim::fixed(k)) };
            match d.as_fixed() {
                Some(n) if n < 0 => Dim::fixed(-n),
                _ => d,
            }
        }),
    ]
}

fn dtype() -> impl Strategy<Value = DType> {
    prop_oneof![
        5 => prop::sample::select(DType::PLAIN.to_vec()),
        1 => (1u32..=2048).prop_map(|g| DType::Int4 { group_size: 2 * g }),
    ]
}

fn tensor_type() -> impl Strategy<Value = TensorType> {
    (dtype(), prop::collection::vec(dim(), 0..4)).prop_map(|(d, shape)| TensorType::new(d, shape))
}

fn static_type() -> impl Strategy<Value = TensorType> {
    (dtype(), prop::collection::vec(0i64..70, 0..3)).prop_map(|(d, dims)| TensorType::fixed(d, &dims))
}

/// Floats including infinities, zeros of both signs, subnormals and (canonical) NaN; the
/// text format spells every NaN `nan`, so NaN payloads are not representable.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>().prop_map(|v| if v.is_nan() { f64::NAN } else { v }),
        2 => any::<f32>().prop_map(|v| if v.is_nan() { f64::NAN } else { f64::from(v) }),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.1, 1.0]),
    ]
}

/// Float attributes of ops: `Op`'s derived `PartialEq` compares them with `==`, so a
/// NaN op attribute would make a module unequal to itself; NaN is covered in attributes
/// of modules and in tensors, which compare bitwise.
fn op_float() -> impl Strategy<Value = f64> {
    float().prop_map(|v| if v.is_nan() { 0.5 } else { v })
}

/// Inline literals of f32, f16, bf16, f64, i64, i8 and bool dtypes.
fn literal() -> impl Strategy<Value = Tensor> {
    let dtypes = vec![DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64, DType::I8, DType::Bool];
    (prop::sample::select(dtypes), prop::collection::vec(0usize..4, 0..3)).prop_flat_map(|(d, shape)| {
        let n: usize = shape.iter().product();
        if d.is_float() {
            prop::collection::vec(float(), n).prop_map(move |v| Tensor::from_f64(d, shape.clone(), v).unwrap()).boxed()
        } else {
            prop::collection::vec(any::<i64>(), n)
                .prop_map(move |v| Tensor::from_i64(d, shape.clone(), v).unwrap())
                .boxed()
        }
    })
}

fn attr() -> impl Strategy<Value = Attr> {
    prop_oneof![
        any::<i64>().prop_map(Attr::Int),
        float().prop_map(Attr::Float),
        any::<bool>().prop_map(Attr::Bool),
        name().prop_map(Attr::Str),
        prop::collection::vec(any::<i64>(), 0..4).prop_map(Attr::Ints),
        // `[]` always reads back as an empty integer list, so float lists are non-empty.
        prop::collection::vec(float(), 1..4).prop_map(Attr::Floats),
        dtype().prop_map(Attr::DType),
        literal().prop_map(Attr::Tensor),
    ]
}

fn weight_source(ty: TensorType) -> impl Strategy<Value = (TensorType, WeightSource)> {
    prop_oneof![
        (name(), name()).prop_map({
            let ty = ty.clone();
            move |(file, tensor)| (ty.clone(), WeightSource::Safetensors { file, tensor })
        }),
        (name(), any::<u64>()).prop_map(move |(file, offset)| (ty.clone(), WeightSource::Raw { file, offset })),
        literal().prop_map(|t| (
            TensorType::fixed(t.dtype, &t.shape.iter().map(|&d| d as i64).collect::<Vec<_>>()),
            WeightSource::Inline(t)
        )),
    ]
}

/// Random attribute values an op is built from.
#[derive(Debug, Clone)]
struct Seed {
    i: i64,
    j: i64,
    f: f64,
    g: f64,
    b: bool,
    c: bool,
    ints: Vec<i64>,
    more_ints: Vec<i64>,
    dtype: DType,
    tensor: Tensor,
}

fn seed() -> impl Strategy<Value = Seed> {
    (
        (any::<i64>(), -4i64..4, op_float(), op_float(), any::<bool>(), any::<bool>()),
        (prop::collection::vec(-5i64..5, 0..4), prop::collection::vec(any::<i64>(), 0..4), dtype(), literal()),
    )
        .prop_map(|((i, j, f, g, b, c), (ints, more_ints, dtype, tensor))| Seed {
            i,
            j,
            f,
            g,
            b,
            c,
            ints,
            more_ints,
            dtype,
            tensor,
        })
}

/// Every op with attributes, built from `s`.
fn ops_with_attrs(s: &Seed) -> Vec<Op> {
    let (axes, keepdims) = (s.ints.clone(), s.b);
    vec![
        Op::Constant { value: s.tensor.clone() },
        Op::Gelu { approximate: GeluApproximation::ALL[usize::from(s.b)] },
        Op::LeakyRelu { alpha: s.f },
        Op::Clip { min: s.b.then_some(s.f), max: s.c.then_some(s.g) },
        Op::Cast { to: s.dtype },
        Op::ReduceSum { axes: axes.clone(), keepdims },
        Op::ReduceMean { axes: axes.clone(), keepdims },
        Op::ReduceMax { axes: axes.clone(), keepdims },
        Op::ReduceMin { axes: axes.clone(), keepdims },
        Op::ReduceProd { axes: axes.clone(), keepdims },
        Op::ReduceSumSquare { axes: axes.clone(), keepdims },
        Op::ReduceL1 { axes: axes.clone(), keepdims },
        Op::ReduceL2 { axes: axes.clone(), keepdims },
        Op::ReduceLogSumExp { axes: axes.clone(), keepdims },
        Op::ArgMax { axis: s.j, keepdims, select_last_index: s.c },
        Op::ArgMin { axis: s.j, keepdims, select_last_index: s.c },
        Op::Softmax { axis: s.j },
        Op::LogSoftmax { axis: s.i },
        Op::CumSum { axis: s.j, exclusive: s.b, reverse: s.c },
        Op::TopK { axis: s.j, k: s.i, largest: s.b, sorted: s.c },
        Op::PackedLinear { out_features: s.i },
        Op::Gemm { alpha: s.f, beta: s.g, trans_a: s.b, trans_b: s.c },
        Op::Reshape { allowzero: s.b },
        Op::Transpose { perm: axes.clone() },
        Op::Concat { axis: s.j },
        Op::Split { axis: s.j },
        Op::Slice { axes: axes.clone(), starts: s.more_ints.clone(), ends: s.more_ints.clone(), steps: axes.clone() },
        Op::Gather { axis: s.j },
        Op::GatherElements { axis: s.j },
        Op::GatherNd { batch_dims: s.j },
        Op::ScatterNd { reduction: ScatterReduction::ALL[s.j.unsigned_abs() as usize % ScatterReduction::ALL.len()] },
        Op::Squeeze { axes: axes.clone() },
        Op::Unsqueeze { axes: axes.clone() },
        Op::Shape { start: s.j, end: s.b.then_some(s.i) },
        Op::ConstantOfShape { value: s.tensor.clone() },
        Op::Trilu { upper: s.b, k: s.i },
        Op::Pad {
            pads: s.more_ints.clone(),
            mode: PadMode::ALL[s.j.unsigned_abs() as usize % PadMode::ALL.len()],
            value: s.f,
        },
        Op::Tile { repeats: axes.clone() },
        Op::LayerNorm { axis: s.j, epsilon: s.f },
        Op::RmsNorm { epsilon: s.f },
        Op::RmsNormResidual { epsilon: s.g },
        Op::RotaryEmbedding { interleaved: s.b, rotary_dim: s.i },
        Op::Attention { scale: s.c.then_some(s.f), causal: s.b },
        Op::Sample { temperature: s.f, top_k: s.i, top_p: s.g, repetition_penalty: s.f, seed: s.i },
    ]
}

/// Every op: the attribute-free ones straight from the table, plus `ops_with_attrs`.
fn all_ops(s: &Seed) -> Vec<Op> {
    let plain = Op::NAMES.iter().filter_map(|n| Op::from_parts(n, &Default::default()).ok());
    plain.chain(ops_with_attrs(s)).collect()
}

#[test]
fn generator_covers_every_op() {
    let seed = Seed {
        i: 1,
        j: 0,
        f: 0.5,
        g: 2.0,
        b: true,
        c: false,
        ints: vec![],
        more_ints: vec![],
        dtype: DType::F32,
        tensor: Tensor::scalar_f64(DType::F32, 1.0),
    };
    let generated: HashSet<&str> = all_ops(&seed).iter().map(Op::name).collect();
    let table: HashSet<&str> = Op::NAMES.iter().copied().collect();
    assert_eq!(generated, table);
}

#[derive(Debug, Clone)]
struct OpPlan {
    choice: usize,
    seed: Seed,
    operands: Vec<usize>,
    result_types: Vec<TensorType>,
    /// Fusion group id (sparse on purpose, so canonical() must renumber) and kind index.
    group: Option<(u32, usize)>,
}

fn op_plan() -> impl Strategy<Value = OpPlan> {
    (
        any::<usize>(),
        seed(),
        prop::collection::vec(any::<usize>(), 0..5),
        prop::collection::vec(tensor_type(), 1..4),
        prop::option::of(((0u32..6).prop_map(|g| g * 7), any::<usize>())),
    )
        .prop_map(|(choice, seed, operands, result_types, group)| OpPlan {
            choice,
            seed,
            operands,
            result_types,
            group,
        })
}

#[derive(Debug, Clone)]
struct FuncPlan {
    name: String,
    params: Vec<(String, TensorType)>,
    ops: Vec<OpPlan>,
    outputs: Vec<(String, usize)>,
    erase: Vec<usize>,
}

fn func_plan() -> impl Strategy<Value = FuncPlan> {
    (
        name(),
        prop::collection::vec((name(), tensor_type()), 0..4),
        prop::collection::vec(op_plan(), 0..8),
        prop::collection::vec((name(), any::<usize>()), 0..4),
        prop::collection::vec(any::<usize>(), 0..3),
    )
        .prop_map(|(name, params, ops, outputs, erase)| FuncPlan { name, params, ops, outputs, erase })
}

#[derive(Debug, Clone)]
struct ModulePlan {
    name: String,
    attrs: Vec<(String, Attr)>,
    weights: Vec<(String, TensorType, WeightSource)>,
    functions: Vec<FuncPlan>,
}

fn module_plan() -> impl Strategy<Value = ModulePlan> {
    (
        name(),
        prop::collection::vec((name(), attr()), 0..4),
        prop::collection::vec((name(), static_type().prop_flat_map(weight_source)), 0..4),
        prop::collection::vec(func_plan(), 0..3),
    )
        .prop_map(|(name, attrs, weights, functions)| ModulePlan {
            name,
            attrs,
            weights: weights.into_iter().map(|(n, (ty, src))| (n, ty, src)).collect(),
            functions,
        })
}

// ------------------------------------------------------------------------- building

/// Make names unique by suffixing repeats.
fn unique(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .into_iter()
        .map(|mut n| {
            while !seen.insert(n.clone()) {
                n.push('#');
            }
            n
        })
        .collect()
}

/// A value an operand or output may pick.
#[derive(Debug, Clone, Copy)]
enum Candidate {
    Value(ValueId),
    Weight(usize),
}

fn resolve(f: &mut Function, weights: &[WeightDecl], c: Candidate) -> ValueId {
    match c {
        Candidate::Value(v) => v,
        Candidate::Weight(i) => f.weight(&weights[i].name, weights[i].ty.clone()),
    }
}

fn build_function(plan: &FuncPlan, name: String, weights: &[WeightDecl]) -> Function {
    let mut f = Function::new(name);
    let mut pool: Vec<Candidate> = (0..weights.len()).map(Candidate::Weight).collect();
    let param_names = unique(plan.params.iter().map(|(n, _)| n.clone()));
    for (n, (_, ty)) in param_names.into_iter().zip(&plan.params) {
        pool.push(Candidate::Value(f.add_param(n, ty.clone())));
    }
    for op_plan in &plan.ops {
        let ops = all_ops(&op_plan.seed);
        let op = ops[op_plan.choice % ops.len()].clone();
        let (min_in, max_in) = op.operand_range();
        let count = op_plan.operands.len().clamp(min_in, max_in.min(5));
        if count > 0 && pool.is_empty() {
            continue;
        }
        let picks = op_plan.operands.iter().copied().chain(0..).take(count);
        let operands = picks.map(|p| resolve(&mut f, weights, pool[p % pool.len()])).collect();
        let (min_out, max_out) = op.result_range();
        let results = op_plan.result_types.len().clamp(min_out, max_out.min(3));
        let types = op_plan.result_types.iter().cycle().take(results).cloned().collect();
        let id = f.add_op(op, operands, types);
        if let Some((g, kind)) = op_plan.group {
            if f.group_kind(g).is_none() {
                f.set_group_kind(g, GroupKind::ALL[kind % GroupKind::ALL.len()]);
            }
            f.set_group(id, Some(g));
        }
        pool.extend(f.op(id).unwrap().results.iter().map(|&r| Candidate::Value(r)));
    }
    if !pool.is_empty() {
        let names = unique(plan.outputs.iter().map(|(n, _)| n.clone()));
        for (n, (_, pick)) in names.into_iter().zip(&plan.outputs) {
            let v = resolve(&mut f, weights, pool[pick % pool.len()]);
            f.add_output(n, v);
        }
    }
    erase_some_dead_ops(&mut f, &plan.erase);
    f
}

/// Erase ops whose results nothing uses, so canonical() has holes to renumber.
fn erase_some_dead_ops(f: &mut Function, picks: &[usize]) {
    for pick in picks {
        let dead: Vec<_> = f.op_ids().filter(|&o| f.op(o).unwrap().results.iter().all(|&r| !f.is_used(r))).collect();
        if !dead.is_empty() {
            f.erase_op(dead[pick % dead.len()]);
        }
    }
}

fn build_module(plan: &ModulePlan) -> Module {
    let mut m = Module::new(plan.name.clone());
    m.attrs = plan.attrs.iter().cloned().collect();
    let names = unique(plan.weights.iter().map(|(n, _, _)| n.clone()));
    for (name, (_, ty, source)) in names.into_iter().zip(&plan.weights) {
        m.weights.push(WeightDecl { name, ty: ty.clone(), source: source.clone() });
    }
    let names = unique(plan.functions.iter().map(|f| f.name.clone()));
    for (name, fp) in names.into_iter().zip(&plan.functions) {
        let f = build_function(fp, name, &m.weights);
        m.functions.push(f);
    }
    m
}

// ------------------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn print_parse_round_trips(plan in module_plan()) {
        let m = build_module(&plan);
        let text = print_module(&m);
        let parsed = match parse_module(&text) {
            Ok(parsed) => parsed,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
        };
        prop_assert_eq!(&parsed, &m.canonical().unwrap(), "{}", text);
        prop_assert_eq!(print_module(&parsed), text);
    }

    #[test]
    fn truncated_text_never_panics(plan in module_plan(), cut in any::<prop::sample::Index>()) {
        let text = print_module(&build_module(&plan));
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        if !boundaries.is_empty() {
            let _ = parse_module(&text[..boundaries[cut.index(boundaries.len())]]);
        }
    }

    #[test]
    fn mutated_text_never_panics(
        plan in module_plan(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 1..4),
    ) {
        let mut chars: Vec<char> = print_module(&build_module(&plan)).chars().collect();
        for (at, c, kind) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 if i < chars.len() => chars[i] = c,
                _ if i < chars.len() => {
                    chars.remove(i);
                }
                _ => {}
            }
        }
        let text: String = chars.into_iter().collect();
        if let Err(e) = parse_module(&text) {
            prop_assert!(e.line >= 1 && e.column >= 1 && e.line <= text.lines().count() + 1);
        }
    }
}
