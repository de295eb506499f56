//! Differential tests of the single-op templates and the 1-D matmul promotion against the
//! reference interpreter (`ferrumc_ir::interp::run_function`, on the same optimized module):
//! `cumsum` (scan kernel: every axis, exclusive × reverse, f32 and i64, a symbolic dim),
//! `scatter_nd` (reductions none/add/mul/max/min, duplicate and negative indices, slice and
//! element indices, i64 data), `topk` (largest/smallest, ties, `k = n`, inner axes, i64), and
//! `matmul` with 1-D operands. Integers (and top-k/scatter copies) compare exactly; float sums
//! within rtol 1e-5, atol 1e-5 (the kernels accumulate in f32, the interpreter in f64).
//! Also: compile-time input binding (`CompileOptions::bound_inputs`) gives the interpreter's
//! result on the unbound module, and an out-of-range `scatter_nd` index leaves the output
//! unchanged (the documented kernel behaviour; the interpreter reports an error there).

use ferrumc_codegen::compile::CompileOptions;
use ferrumc_ir::weights::InlineWeights;
use ferrumc_ir::{DType, Tensor};
use ferrumc_tests::compare::Tolerance;
use ferrumc_tests::compiled::{check_compiled, compare_outputs, compile, run_compiled};
use ferrumc_tests::rng::SplitMix64;

const FLOAT_SUM: Tolerance = Tolerance { rtol: 1e-5, atol: 1e-5 };
const EXACT: Tolerance = Tolerance { rtol: 0.0, atol: 0.0 };

/// Deterministic pseudo-random values (splitmix64).
/// Test tensors from a splitmix64 stream.
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(SplitMix64(seed))
    }
    fn f32s(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        let v = (0..n).map(|_| self.0.uniform(-2.0, 2.0)).collect();
        Tensor::from_f64(DType::F32, shape.to_vec(), v).expect("valid tensor")
    }
    /// Small integers, so ties are frequent.
    fn ints(&mut self, dtype: DType, shape: &[usize], lo: i64, hi: i64) -> Tensor {
        let n = shape.iter().product();
        let v: Vec<i64> = (0..n).map(|_| self.0.int_in(lo, hi)).collect();
        match dtype {
            DType::I64 => Tensor::from_i64(dtype, shape.to_vec(), v),
            _ => Tensor::from_f64(dtype, shape.to_vec(), v.into_iter().map(|x| x as f64).collect()),
        }
        .expect("valid tensor")
    }
}

fn dims(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

/// Compile `text` at -O2 (and -O0) and compare every run with the interpreter.
fn check(label: &str, text: &str, runs: Vec<Vec<(String, Tensor)>>, tol: Tolerance) {
    let m = ferrumc_ir::text::parse_module(text).unwrap_or_else(|e| panic!("{label}: parse: {e}\n{text}"));
    let runs: Vec<(String, Vec<(String, Tensor)>)> = runs.into_iter().map(|r| ("f".to_string(), r)).collect();
    for level in [0, 2] {
        let options = CompileOptions { level, ..CompileOptions::default() };
        if let Err(e) = check_compiled(&format!("{label} -O{level}"), &m, &InlineWeights, &options, &runs, tol) {
            panic!("{e}\n{text}");
        }
    }
}

#[test]
fn cumsum_matches_the_interpreter() {
    let mut rng = Rng::new(1);
    for (dtype, tol) in [("f32", FLOAT_SUM), ("i64", EXACT)] {
        for shape in [vec![7usize], vec![3, 5], vec![2, 3, 4]] {
            for axis in -(shape.len() as i64)..shape.len() as i64 {
                for (exclusive, reverse) in [(false, false), (true, false), (false, true), (true, true)] {
                    let s = dims(&shape);
                    let text = format!(
                        "module @m\n\nfunc @f(%x: {dtype}[{s}]) -> (y: {dtype}[{s}]) {{\n  %0 = cumsum %x {{axis = {axis}, exclusive = {exclusive}, reverse = {reverse}}} : {dtype}[{s}]\n  return %0\n}}\n"
                    );
                    let x = if dtype == "f32" { rng.f32s(&shape) } else { rng.ints(DType::I64, &shape, -50, 50) };
                    check(
                        &format!("cumsum {dtype}[{s}] axis {axis} ex {exclusive} rev {reverse}"),
                        &text,
                        vec![vec![("x".into(), x)]],
                        tol,
                    );
                }
            }
        }
    }
    // A symbolic row count: the parallel loop's extent and the strides are dims.
    let text = "module @m\n\nfunc @f(%x: f32[?n, 6]) -> (y: f32[?n, 6]) {\n  %0 = cumsum %x {axis = 0, exclusive = true, reverse = true} : f32[?n, 6]\n  return %0\n}\n";
    let runs = [1usize, 5, 40].iter().map(|&n| vec![("x".to_string(), rng.f32s(&[n, 6]))]).collect();
    check("cumsum f32[?n, 6]", text, runs, FLOAT_SUM);
}

#[test]
fn scatter_nd_matches_the_interpreter() {
    let mut rng = Rng::new(2);
    for reduction in ["none", "add", "mul", "max", "min"] {
        for dtype in ["f32", "i64"] {
            let data_of = |rng: &mut Rng, shape: &[usize]| {
                if dtype == "f32" {
                    rng.f32s(shape)
                } else {
                    rng.ints(DType::I64, shape, -9, 9)
                }
            };
            // Slices: tuples of length 1 into data [5, 4, 3] (duplicates and a negative index).
            let idx = Tensor::from_i64(DType::I64, vec![4, 1], vec![1, -1, 1, 0]).expect("valid");
            let text = format!(
                "module @m\n\nfunc @f(%d: {dtype}[5, 4, 3], %i: i64[4, 1], %u: {dtype}[4, 4, 3]) -> (y: {dtype}[5, 4, 3]) {{\n  %0 = scatter_nd %d, %i, %u {{reduction = \"{reduction}\"}} : {dtype}[5, 4, 3]\n  return %0\n}}\n"
            );
            let run = vec![
                ("d".to_string(), data_of(&mut rng, &[5, 4, 3])),
                ("i".to_string(), idx),
                ("u".to_string(), data_of(&mut rng, &[4, 4, 3])),
            ];
            check(&format!("scatter_nd {reduction} {dtype} slices"), &text, vec![run], FLOAT_SUM);
            // Elements: full tuples into data [3, 4], batched [2, 3, 2] tuples.
            let idx =
                Tensor::from_i64(DType::I64, vec![2, 3, 2], vec![0, 1, 2, 3, 0, 1, -1, -4, 1, 1, 0, 1]).expect("valid");
            let text = format!(
                "module @m\n\nfunc @f(%d: {dtype}[3, 4], %i: i64[2, 3, 2], %u: {dtype}[2, 3]) -> (y: {dtype}[3, 4]) {{\n  %0 = scatter_nd %d, %i, %u {{reduction = \"{reduction}\"}} : {dtype}[3, 4]\n  return %0\n}}\n"
            );
            let run = vec![
                ("d".to_string(), data_of(&mut rng, &[3, 4])),
                ("i".to_string(), idx),
                ("u".to_string(), data_of(&mut rng, &[2, 3])),
            ];
            check(&format!("scatter_nd {reduction} {dtype} elements"), &text, vec![run], FLOAT_SUM);
        }
    }
}

#[test]
fn scatter_nd_drops_out_of_range_updates() {
    let text = "module @m\n\nfunc @f(%d: f32[4, 2], %i: i64[3, 1], %u: f32[3, 2]) -> (y: f32[4, 2]) {\n  %0 = scatter_nd %d, %i, %u {reduction = \"add\"} : f32[4, 2]\n  return %0\n}\n";
    let m = ferrumc_ir::text::parse_module(text).expect("parses");
    let bytes = compile(&m, &InlineWeights, &CompileOptions::default()).expect("compiles");
    let data = Tensor::from_f64(DType::F32, vec![4, 2], (0..8).map(f64::from).collect()).expect("valid");
    let upd = Tensor::from_f64(DType::F32, vec![3, 2], vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0]).expect("valid");
    // Tuple 1 (index 7) and tuple 2 (index -5) are out of range: only tuple 0 lands (row 2).
    let idx = Tensor::from_i64(DType::I64, vec![3, 1], vec![2, 7, -5]).expect("valid");
    let inputs = vec![("d".to_string(), data), ("i".to_string(), idx), ("u".to_string(), upd)];
    let got = run_compiled(&bytes, "f", &inputs).expect("runs");
    let want = Tensor::from_f64(DType::F32, vec![4, 2], vec![0.0, 1.0, 2.0, 3.0, 14.0, 25.0, 6.0, 7.0]).expect("valid");
    compare_outputs("scatter_nd out of range", &got, &[("y".to_string(), want)], EXACT)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn topk_matches_the_interpreter() {
    let mut rng = Rng::new(3);
    let cases: [(&[usize], i64, i64); 5] =
        [(&[3, 10], -1, 4), (&[4, 6, 3], 1, 6), (&[4, 6, 3], 0, 1), (&[17], 0, 17), (&[2, 40], 1, 7)];
    for (shape, axis, k) in cases {
        for largest in [true, false] {
            for dtype in ["f32", "i64"] {
                let s = dims(shape);
                let a = if axis < 0 { axis + shape.len() as i64 } else { axis } as usize;
                let mut out = shape.to_vec();
                out[a] = k as usize;
                let o = dims(&out);
                let text = format!(
                    "module @m\n\nfunc @f(%x: {dtype}[{s}]) -> (v: {dtype}[{o}], i: i64[{o}]) {{\n  %0, %1 = topk %x {{axis = {axis}, k = {k}, largest = {largest}, sorted = true}} : {dtype}[{o}], i64[{o}]\n  return %0, %1\n}}\n"
                );
                // Small integers (also as floats): many ties, resolved by lower index.
                let x = rng.ints(if dtype == "f32" { DType::F32 } else { DType::I64 }, shape, -3, 3);
                check(
                    &format!("topk {dtype}[{s}] axis {axis} k {k} largest {largest}"),
                    &text,
                    vec![vec![("x".into(), x)]],
                    EXACT,
                );
            }
        }
    }
}

#[test]
fn matmul_with_vector_operands_matches_the_interpreter() {
    let mut rng = Rng::new(4);
    let cases: [(&[usize], &[usize], &[usize]); 4] =
        [(&[5], &[5], &[]), (&[5], &[2, 5, 3], &[2, 3]), (&[2, 3, 5], &[5], &[2, 3]), (&[5], &[5, 4], &[4])];
    for (a, b, r) in cases {
        let text = format!(
            "module @m\n\nfunc @f(%a: f32[{}], %b: f32[{}]) -> (c: f32[{}]) {{\n  %0 = matmul %a, %b : f32[{}]\n  return %0\n}}\n",
            dims(a),
            dims(b),
            dims(r),
            dims(r)
        );
        let run = vec![("a".to_string(), rng.f32s(a)), ("b".to_string(), rng.f32s(b))];
        check(&format!("matmul [{}]·[{}]", dims(a), dims(b)), &text, vec![run], FLOAT_SUM);
    }
}

#[test]
fn bound_inputs_compile_to_the_unbound_result() {
    // `reshape x, shape` with the target a function input: its result dims are unknown until
    // the input is bound; then it compiles and computes what the interpreter computes on the
    // unbound module given the same value.
    let text = "module @m\n\nfunc @f(%x: f32[2, 3, 4], %s: i64[3]) -> (y: f32[?, ?, ?]) {\n  %0 = reshape %x, %s {allowzero = false} : f32[?, ?, ?]\n  %1 = exp %0 : f32[?, ?, ?]\n  return %1\n}\n";
    let m = ferrumc_ir::text::parse_module(text).expect("parses");
    let x = Rng::new(5).f32s(&[2, 3, 4]);
    let shape = Tensor::from_i64(DType::I64, vec![3], vec![4, 0, -1]).expect("valid");
    let unbound = CompileOptions::default();
    let refused = compile(&m, &InlineWeights, &unbound).expect_err("unknown dims are refused");
    assert!(refused.contains("(`?`)"), "{refused}");
    let want = ferrumc_ir::interp::run_function(
        &m,
        "f",
        &[("x".to_string(), x.clone()), ("s".to_string(), shape.clone())],
        &InlineWeights,
    )
    .expect("interpreter");
    let options = CompileOptions { bound_inputs: [("s".to_string(), shape)].into_iter().collect(), ..unbound };
    let bytes = compile(&m, &InlineWeights, &options).expect("compiles once bound");
    let got = run_compiled(&bytes, "f", &[("x".to_string(), x)]).expect("runs without the bound input");
    compare_outputs("bound reshape", &got, &want, Tolerance { rtol: 1e-6, atol: 0.0 })
        .unwrap_or_else(|e| panic!("{e}"));
    // A bound value of the wrong dtype or shape, or an unknown name, is refused by name.
    for (name, value) in [
        ("s", Tensor::from_i64(DType::I64, vec![2], vec![4, 6]).expect("valid")),
        ("s", Tensor::from_f64(DType::F32, vec![3], vec![4.0, 0.0, -1.0]).expect("valid")),
        ("nope", Tensor::from_i64(DType::I64, vec![3], vec![4, 0, -1]).expect("valid")),
    ] {
        let options = CompileOptions {
            bound_inputs: [(name.to_string(), value)].into_iter().collect(),
            ..CompileOptions::default()
        };
        let e = compile(&m, &InlineWeights, &options).expect_err("refused");
        assert!(e.contains(&format!("bound input `{name}`")), "{e}");
    }
}

/// The kernels have the intended form: the scan is one sequential loop per row (not a
/// reduction per element), scatter copies then applies in order, topk calls the helper.
#[test]
fn kernels_have_the_intended_form() {
    let kernels = |text: &str| -> Vec<String> {
        let m = ferrumc_ir::text::parse_module(text).expect("parses");
        let o = ferrumc_codegen::compile::optimize_module(&m, &CompileOptions::default()).expect("optimizes");
        let groups = ferrumc_codegen::lower::lower_function(&o.functions[0]).expect("lowers");
        groups.into_iter().map(|(_, k)| k.expect("group lowers").kernel.print()).collect()
    };
    let scan = kernels("module @m\n\nfunc @f(%x: f32[2, 300, 4]) -> (y: f32[2, 300, 4]) {\n  %0 = cumsum %x {axis = 1, exclusive = true, reverse = true} : f32[2, 300, 4]\n  return %0\n}\n");
    assert_eq!(scan.len(), 1);
    assert_eq!(scan[0].matches("for ").count(), 2, "{}", scan[0]);
    assert_eq!(scan[0].matches(" := ").count(), 1, "{}", scan[0]);
    assert!(!scan[0].contains("reduce_"), "{}", scan[0]);
    let scatter = kernels("module @m\n\nfunc @f(%d: f32[5, 4], %i: i64[3, 1], %u: f32[3, 4]) -> (y: f32[5, 4]) {\n  %0 = scatter_nd %d, %i, %u {reduction = \"mul\"} : f32[5, 4]\n  return %0\n}\n");
    assert!(scatter[0].contains("ult("), "{}", scatter[0]);
    let topk = kernels("module @m\n\nfunc @f(%x: f32[4, 600]) -> (v: f32[4, 300], i: i64[4, 300]) {\n  %0, %1 = topk %x {axis = 1, k = 300, largest = false, sorted = true} : f32[4, 300], i64[4, 300]\n  return %0, %1\n}\n");
    assert!(topk[0].contains("call topk("), "{}", topk[0]);
    assert_eq!(topk[0].matches("for ").count(), 1, "{}", topk[0]);
}
