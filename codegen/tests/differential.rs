//! Differential tests: kernels JIT-compiled for the host against the reference interpreter.
//! Tolerances: rtol 1e-5 for arithmetic-only elementwise groups, 1e-4 for reductions and
//! transcendental functions (plus the absolute term of [`common::assert_close`]).

mod common;

use common::{check, check_kernels_only, Rng};
use ferrumc_ir::{DType, Tensor};

const SIZES: [usize; 5] = [1, 3, 5, 17, 64];

fn inputs(pairs: Vec<(&str, Tensor)>) -> Vec<(String, Tensor)> {
    pairs.into_iter().map(|(n, t)| (n.to_string(), t)).collect()
}

#[test]
fn arithmetic_chain_with_broadcasting() {
    for n in SIZES {
        let src = format!(
            "module @m
func @forward(%x: f32[?rows, {n}], %w: f32[{n}], %b: f32[?rows, 1]) -> (y: f32[?rows, {n}]) {{
  %0 = mul %x, %w : f32[?rows, {n}]
  %1 = add %0, %b : f32[?rows, {n}]
  %2 = sub %1, %x : f32[?rows, {n}]
  %3 = max %2, %w : f32[?rows, {n}]
  %4 = min %3, %b : f32[?rows, {n}]
  %5 = neg %4 : f32[?rows, {n}]
  %6 = abs %5 : f32[?rows, {n}]
  %7 = add %6, %x : f32[?rows, {n}]
  %8 = div %7, %w : f32[?rows, {n}]
  %9 = relu %8 : f32[?rows, {n}]
  return %9
}}
"
        );
        let mut rng = Rng(n as u64);
        let x = rng.tensor(&[3, n], -2.0, 2.0);
        let w = rng.tensor(&[n], 0.5, 2.0);
        let b = rng.tensor(&[3, 1], -1.0, 1.0);
        check(&src, &inputs(vec![("x", x), ("w", w), ("b", b)]), 1e-5);
    }
}

#[test]
fn transcendental_chain() {
    for n in SIZES {
        let src = format!(
            "module @m
func @forward(%x: f32[2, 3, {n}], %p: f32[{n}]) -> (y: f32[2, 3, {n}], z: f32[2, 3, {n}]) {{
  %0 = exp %x : f32[2, 3, {n}]
  %1 = tanh %x : f32[2, 3, {n}]
  %2 = sigmoid %1 : f32[2, 3, {n}]
  %3 = silu %x : f32[2, 3, {n}]
  %4 = erf %x : f32[2, 3, {n}]
  %5 = gelu %x {{approximate = \"none\"}} : f32[2, 3, {n}]
  %6 = gelu %x {{approximate = \"tanh\"}} : f32[2, 3, {n}]
  %7 = add %0, %2 : f32[2, 3, {n}]
  %8 = add %7, %3 : f32[2, 3, {n}]
  %9 = add %8, %4 : f32[2, 3, {n}]
  %10 = add %9, %5 : f32[2, 3, {n}]
  %11 = add %10, %6 : f32[2, 3, {n}]
  %12 = sqrt %p : f32[{n}]
  %13 = rsqrt %p : f32[{n}]
  %14 = reciprocal %p : f32[{n}]
  %15 = mul %12, %13 : f32[{n}]
  %16 = add %15, %14 : f32[{n}]
  %17 = mul %11, %16 : f32[2, 3, {n}]
  %18 = silu_mul %x, %17 : f32[2, 3, {n}]
  return %17, %18
}}
"
        );
        let mut rng = Rng(100 + n as u64);
        let x = rng.tensor(&[2, 3, n], -5.0, 5.0);
        let p = rng.tensor(&[n], 0.1, 4.0);
        check(&src, &inputs(vec![("x", x), ("p", p)]), 1e-4);
    }
}

#[test]
fn transcendentals_over_a_wide_range() {
    // Large magnitudes: saturation of tanh/erf/sigmoid, exp near over- and underflow.
    let n = 1024;
    let v: Vec<f64> = (0..n).map(|i| -90.0 + 178.0 * i as f64 / (n - 1) as f64).collect();
    let x = Tensor::from_f64(DType::F32, vec![n], v.iter().map(|x| *x as f32 as f64).collect()).unwrap();
    for op in ["exp", "tanh", "erf", "sigmoid", "silu"] {
        let src = format!(
            "module @m
func @forward(%x: f32[{n}]) -> (y: f32[{n}]) {{
  %0 = {op} %x : f32[{n}]
  return %0
}}
"
        );
        // Values are compared against max|want|, so exp's tiny results only need to be tiny.
        check(&src, &inputs(vec![("x", x.clone())]), 1e-4);
        let small: Vec<f64> = (0..n).map(|i| (-4.0 + 8.0 * i as f64 / (n - 1) as f64) as f32 as f64).collect();
        let xs = Tensor::from_f64(DType::F32, vec![n], small).unwrap();
        check(&src, &inputs(vec![("x", xs)]), 1e-4);
    }
}

#[test]
fn where_and_casts() {
    for n in SIZES {
        let src = format!(
            "module @m
func @forward(%c: bool[4, {n}], %x: f32[4, {n}], %y: f32[{n}], %i: i64[4, {n}]) -> (a: f32[4, {n}], b: i64[4, {n}]) {{
  %0 = where %c, %x, %y : f32[4, {n}]
  %1 = cast %i {{to = f32}} : f32[4, {n}]
  %2 = add %0, %1 : f32[4, {n}]
  %3 = cast %2 {{to = i64}} : i64[4, {n}]
  %4 = add %3, %i : i64[4, {n}]
  %5 = mul %4, %i : i64[4, {n}]
  return %2, %5
}}
"
        );
        let mut rng = Rng(7 + n as u64);
        let c = Tensor::from_i64(DType::Bool, vec![4, n], (0..4 * n).map(|_| (rng.next_u64() & 1) as i64).collect())
            .unwrap();
        let x = rng.tensor(&[4, n], -50.0, 50.0);
        let y = rng.tensor(&[n], -50.0, 50.0);
        let i = Tensor::from_i64(DType::I64, vec![4, n], (0..4 * n).map(|_| rng.below(200) as i64 - 100).collect())
            .unwrap();
        check(&src, &inputs(vec![("c", c), ("x", x), ("y", y), ("i", i)]), 1e-5);
    }
}

#[test]
fn reductions_over_the_last_axis() {
    for n in SIZES {
        for (op, keep) in [
            ("reduce_sum", true),
            ("reduce_mean", true),
            ("reduce_max", true),
            ("reduce_sum", false),
            ("reduce_max", false),
        ] {
            let out = if keep { "f32[?r, 3, 1]".to_string() } else { "f32[?r, 3]".to_string() };
            let src = format!(
                "module @m
func @forward(%x: f32[?r, 3, {n}], %s: f32[{n}]) -> (y: {out}) {{
  %0 = mul %x, %s : f32[?r, 3, {n}]
  %1 = {op} %0 {{axes = [-1], keepdims = {keep}}} : {out}
  return %1
}}
"
            );
            let mut rng = Rng(n as u64 * 31);
            let x = rng.tensor(&[2, 3, n], -3.0, 3.0);
            let s = rng.tensor(&[n], 0.5, 1.5);
            check(&src, &inputs(vec![("x", x), ("s", s)]), 1e-4);
        }
    }
}

#[test]
fn reduction_with_epilogue() {
    // x - mean(x), scaled: a per-row scalar consumed by a row-varying epilogue.
    for n in SIZES {
        let src = format!(
            "module @m
func @forward(%x: f32[5, {n}], %g: f32[{n}]) -> (y: f32[5, {n}], m: f32[5, 1]) {{
  %0 = reduce_mean %x {{axes = [1], keepdims = true}} : f32[5, 1]
  %1 = sub %x, %0 : f32[5, {n}]
  %2 = mul %1, %g : f32[5, {n}]
  %3 = exp %0 : f32[5, 1]
  return %2, %3
}}
"
        );
        let mut rng = Rng(n as u64 * 5);
        check(&src, &inputs(vec![("x", rng.tensor(&[5, n], -2.0, 2.0)), ("g", rng.tensor(&[n], -1.0, 1.0))]), 1e-4);
    }
}

#[test]
fn softmax_with_prologue() {
    for n in SIZES {
        let src = format!(
            "module @m
func @forward(%x: f32[2, ?h, 3, {n}], %mask: f32[3, {n}]) -> (y: f32[2, ?h, 3, {n}]) {{
  %0 = mul %x, %x : f32[2, ?h, 3, {n}]
  %1 = add %0, %mask : f32[2, ?h, 3, {n}]
  %2 = softmax %1 {{axis = -1}} : f32[2, ?h, 3, {n}]
  return %2
}}
"
        );
        let mut rng = Rng(n as u64 * 11);
        check(
            &src,
            &inputs(vec![("x", rng.tensor(&[2, 2, 3, n], -3.0, 3.0)), ("mask", rng.tensor(&[3, n], -5.0, 0.0))]),
            1e-4,
        );
    }
}

#[test]
fn rms_norm_with_residual_prologue() {
    for n in SIZES {
        let src = format!(
            "module @m
func @forward(%x: f32[?t, {n}], %r: f32[?t, {n}], %w: f32[{n}]) -> (y: f32[?t, {n}]) {{
  %0 = add %x, %r : f32[?t, {n}]
  %1 = rms_norm %0, %w {{epsilon = 1e-5}} : f32[?t, {n}]
  %2 = silu %1 : f32[?t, {n}]
  return %2
}}
"
        );
        let mut rng = Rng(n as u64 * 13);
        let t = 7;
        check(
            &src,
            &inputs(vec![
                ("x", rng.tensor(&[t, n], -2.0, 2.0)),
                ("r", rng.tensor(&[t, n], -2.0, 2.0)),
                ("w", rng.tensor(&[n], 0.5, 1.5)),
            ]),
            1e-4,
        );
    }
}

#[test]
fn linear_matmul_and_packed_linear_with_epilogues() {
    // n ≥ 64 takes the column-split template (tiles of 32, and of 64 from 1024 on; 200 and
    // 1040 end in a partial tile, 200 inside a packed panel).
    for (k, n) in [(1usize, 1usize), (3, 5), (17, 16), (64, 17), (5, 40), (37, 64), (16, 200), (9, 1040)] {
        let np = n.div_ceil(16);
        let src = format!(
            "module @m
func @forward(%x: f32[?t, {k}], %w: f32[{n}, {k}], %b: f32[{n}], %wt: f32[{k}, {n}], %wp: f32[{np}, {k}, 16], %res: f32[?t, {n}]) -> (a: f32[?t, {n}], c: f32[?t, {n}], d: f32[?t, {n}]) {{
  %0 = linear %x, %w, %b : f32[?t, {n}]
  %1 = gelu %0 {{approximate = \"tanh\"}} : f32[?t, {n}]
  %2 = matmul %x, %wt : f32[?t, {n}]
  %3 = add %2, %res : f32[?t, {n}]
  %4 = packed_linear %x, %wp, %b {{out_features = {n}}} : f32[?t, {n}]
  %5 = mul %4, %b : f32[?t, {n}]
  return %1, %3, %5
}}
"
        );
        for t in [1usize, 3, 20, 37] {
            let mut rng = Rng((k * 1000 + n * 10 + t) as u64);
            let x = rng.tensor(&[t, k], -1.0, 1.0);
            let w = rng.tensor(&[n, k], -1.0, 1.0);
            let wv = w.to_f64_vec();
            let wt: Vec<f64> = (0..k * n).map(|i| wv[(i % n) * k + i / n]).collect();
            let mut wp = vec![0.0; np * k * 16];
            for p in 0..np {
                for kk in 0..k {
                    for j in 0..16 {
                        if 16 * p + j < n {
                            wp[(p * k + kk) * 16 + j] = wv[(16 * p + j) * k + kk];
                        }
                    }
                }
            }
            let ins = inputs(vec![
                ("x", x),
                ("w", w),
                ("b", rng.tensor(&[n], -1.0, 1.0)),
                ("wt", Tensor::from_f64(DType::F32, vec![k, n], wt).unwrap()),
                ("wp", Tensor::from_f64(DType::F32, vec![np, k, 16], wp).unwrap()),
                ("res", rng.tensor(&[t, n], -1.0, 1.0)),
            ]);
            check(&src, &ins, 1e-4);
        }
    }
}

fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            da.max(db)
        })
        .collect()
}

fn ty(shape: &[usize]) -> String {
    format!("f32[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// Random elementwise DAGs over broadcasting inputs, seeded.
#[test]
fn random_elementwise_dags() {
    let unary = ["neg", "abs", "exp", "tanh", "sigmoid", "silu", "relu", "sqrt", "rsqrt", "reciprocal", "erf", "gelu"];
    let binary = ["add", "sub", "mul", "div", "max", "min", "silu_mul"];
    for seed in 0..80u64 {
        let mut rng = Rng(seed);
        let n = SIZES[rng.below(SIZES.len())];
        let rows = 1 + rng.below(4);
        let full = vec![rows, n];
        let mut lines: Vec<String> = Vec::new();
        // Inputs x [rows, n], y [n], z [rows, 1], pos [n] (positive, to keep roots and divisions defined).
        let mut vals: Vec<(String, Vec<usize>)> =
            vec![("%x".into(), full.clone()), ("%y".into(), vec![n]), ("%z".into(), vec![rows, 1])];
        let mut next = 0;
        let mut emit =
            |lines: &mut Vec<String>, op: &str, args: &[&(String, Vec<usize>)], attrs: &str| -> (String, Vec<usize>) {
                let shape = args.iter().fold(Vec::new(), |acc, a| broadcast(&acc, &a.1));
                let name = format!("%{next}");
                next += 1;
                let names: Vec<&str> = args.iter().map(|a| a.0.as_str()).collect();
                lines.push(format!("  {name} = {op} {}{attrs} : {}", names.join(", "), ty(&shape)));
                (name, shape)
            };
        let pos = ("%pos".to_string(), vec![n]);
        let ops = 3 + rng.below(8);
        for _ in 0..ops {
            let a = vals[rng.below(vals.len())].clone();
            let result = if rng.below(2) == 0 {
                let op = unary[rng.below(unary.len())];
                let attrs = if op == "gelu" { " {approximate = \"none\"}" } else { "" };
                let arg = match op {
                    // Bounded input for exp, positive for roots and reciprocals.
                    "exp" => emit(&mut lines, "tanh", &[&a], ""),
                    "sqrt" | "rsqrt" | "reciprocal" => {
                        let ab = emit(&mut lines, "abs", &[&a], "");
                        emit(&mut lines, "add", &[&ab, &pos], "")
                    }
                    _ => a,
                };
                emit(&mut lines, op, &[&arg], attrs)
            } else {
                let b = vals[rng.below(vals.len())].clone();
                let op = binary[rng.below(binary.len())];
                if op == "silu_mul" && a.1 != b.1 {
                    continue;
                }
                let b = if op == "div" {
                    let ab = emit(&mut lines, "abs", &[&b], "");
                    emit(&mut lines, "add", &[&ab, &pos], "")
                } else {
                    b
                };
                if op == "silu_mul" && a.1 != b.1 {
                    continue;
                }
                emit(&mut lines, op, &[&a, &b], "")
            };
            vals.push(result);
        }
        // The output: the last value broadcast to the full shape (x - x + last).
        let last = vals.last().unwrap().clone();
        let x = ("%x".to_string(), full.clone());
        let zero = emit(&mut lines, "sub", &[&x, &x], "");
        let out = emit(&mut lines, "add", &[&zero, &last], "");
        let src = format!(
            "module @m\nfunc @forward(%x: {}, %y: f32[{n}], %z: f32[{rows}, 1], %pos: f32[{n}]) -> (out: {}) {{\n{}\n  return {}\n}}\n",
            ty(&full),
            ty(&out.1),
            lines.join("\n"),
            out.0
        );
        let ins = inputs(vec![
            ("x", rng.tensor(&[rows, n], -2.0, 2.0)),
            ("y", rng.tensor(&[n], -2.0, 2.0)),
            ("z", rng.tensor(&[rows, 1], -2.0, 2.0)),
            ("pos", rng.tensor(&[n], 0.5, 1.5)),
        ]);
        let result = std::panic::catch_unwind(|| check(&src, &ins, 1e-4));
        if let Err(e) = result {
            panic!("seed {seed} failed on\n{src}\n{e:?}");
        }
    }
}

#[test]
fn quantized_linear_q8_0_and_q4_0() {
    // The weight is quantized by a weight-derived `cast` (evaluated once, ungrouped), as the
    // quantize-weights pass produces it.
    // n = 96 takes the column-split template (3 tiles of 32 weight rows).
    for (k, n) in [(64usize, 24usize), (64, 96)] {
        let mut rng = Rng(99);
        let wf = rng.tensor(&[n, k], -1.0, 1.0);
        let literal = wf.to_f64_vec().iter().map(|v| format!("{:?}", *v as f32)).collect::<Vec<_>>().join(", ");
        for dt in ["q8_0", "q4_0"] {
            let src = format!(
                "module @m
weight @wf : f32[{n}, {k}] = dense<f32[{n}, {k}]: [{literal}]>
func @forward(%x: f32[?t, {k}], %b: f32[{n}]) -> (y: f32[?t, {n}]) {{
  %0 = cast @wf {{to = {dt}}} : {dt}[{n}, {k}]
  %1 = quantized_linear %x, %0, %b : f32[?t, {n}]
  %2 = silu %1 : f32[?t, {n}]
  return %2
}}
"
            );
            for t in [1usize, 5, 33] {
                let ins = inputs(vec![("x", rng.tensor(&[t, k], -1.0, 1.0)), ("b", rng.tensor(&[n], -1.0, 1.0))]);
                check(&src, &ins, 1e-4);
            }
        }
    }
}

#[test]
fn rms_norm_residual_and_row_keeping_reshapes() {
    for n in SIZES {
        let src = format!(
            "module @m
func @forward(%x: f32[1, ?t, {n}], %r: f32[?t, {n}], %w: f32[{n}], %wt: f32[{n}, 8]) -> (y: f32[?t, {n}], s: f32[1, ?t, {n}], z: f32[1, ?t, 8]) {{
  %0 = reshape %x {{allowzero = false}} : f32[?t, {n}]
  %1, %2 = rms_norm_residual %0, %r, %w {{epsilon = 1e-6}} : f32[?t, {n}], f32[?t, {n}]
  %3 = reshape %2 {{allowzero = false}} : f32[1, ?t, {n}]
  %4 = exp %3 : f32[1, ?t, {n}]
  %5 = matmul %1, %wt : f32[?t, 8]
  %6 = reshape %5 {{allowzero = false}} : f32[1, ?t, 8]
  %7 = tanh %6 : f32[1, ?t, 8]
  return %1, %4, %7
}}
"
        );
        let mut rng = Rng(n as u64 * 17);
        let t = 6;
        check(
            &src,
            &inputs(vec![
                ("x", rng.tensor(&[1, t, n], -1.0, 1.0)),
                ("r", rng.tensor(&[t, n], -1.0, 1.0)),
                ("w", rng.tensor(&[n], 0.5, 1.5)),
                ("wt", rng.tensor(&[n, 8], -1.0, 1.0)),
            ]),
            1e-4,
        );
    }
}

fn i64_tensor(shape: &[usize], v: Vec<i64>) -> Tensor {
    Tensor::from_f64(DType::I64, shape.to_vec(), v.into_iter().map(|x| x as f64).collect()).unwrap()
}

#[test]
fn gather_rows_with_negative_indices() {
    for n in SIZES {
        let src = format!(
            "module @m
func @forward(%e: f32[11, {n}], %ids: i64[?b, ?s]) -> (y: f32[?b, ?s, {n}]) {{
  %0 = gather %e, %ids {{axis = 0}} : f32[?b, ?s, {n}]
  return %0
}}
"
        );
        let mut rng = Rng(300 + n as u64);
        let e = rng.tensor(&[11, n], -2.0, 2.0);
        let ids = i64_tensor(&[2, 3], vec![0, 10, -1, 4, -11, 7]);
        check_kernels_only(&src, &inputs(vec![("e", e), ("ids", ids)]), 1e-6);
    }
}

/// `linear`/`matmul` → reshape into heads → transpose → optional rotary (one matmul group).
fn head_split_src(proj: &str, rotary: Option<(bool, i64)>, d: usize) -> String {
    let (h, k) = (3, 5);
    let n = h * d;
    let (wty, op) = match proj {
        "linear" => (format!("f32[{n}, {k}]"), "linear"),
        _ => (format!("f32[{k}, {n}]"), "matmul"),
    };
    let half = match rotary {
        Some((_, rd)) if rd > 0 => rd as usize / 2,
        _ => d / 2,
    };
    let (rot_params, rot_op, last) = match rotary {
        Some((interleaved, rd)) => (
            format!(", %cos: f32[9, {half}], %sin: f32[9, {half}], %pos: i64[?b, ?s]"),
            format!(
                "  %3 = rotary_embedding %2, %cos, %sin, %pos {{interleaved = {interleaved}, rotary_dim = {rd}}} : f32[?b, {h}, ?s, {d}]\n"
            ),
            "%3",
        ),
        None => (String::new(), String::new(), "%2"),
    };
    format!(
        "module @m
func @forward(%x: f32[?b, ?s, {k}], %w: {wty}{rot_params}) -> (y: f32[?b, {h}, ?s, {d}]) {{
  %0 = {op} %x, %w : f32[?b, ?s, {n}]
  %1 = reshape %0 {{allowzero = false}} : f32[?b, ?s, {h}, {d}]
  %2 = transpose %1 {{perm = [0, 2, 1, 3]}} : f32[?b, {h}, ?s, {d}]
{rot_op}  return {last}
}}
"
    )
}

/// (projection op, rotary (interleaved, rotary_dim), head size).
type HeadCase = (&'static str, Option<(bool, i64)>, usize);

#[test]
fn head_split_projections_with_rotary() {
    // Head sizes that are whole 16-column panels take the split-by-heads form.
    // With fewer than 4 heads, tiles are parts of heads: 32/16-column tiles without rotary,
    // and 16-column tiles from both halves of a head with rotary (head sizes 64 and 96).
    let cases: [HeadCase; 15] = [
        ("linear", None, 3),
        ("matmul", None, 5),
        ("linear", Some((false, 0)), 4),
        ("matmul", Some((false, 0)), 18),
        ("linear", Some((true, 0)), 6),
        ("matmul", Some((false, 4)), 10),
        ("linear", None, 16),
        ("linear", Some((false, 0)), 16),
        ("matmul", Some((true, 0)), 32),
        ("linear", Some((false, 8)), 16),
        ("linear", None, 64),
        ("matmul", None, 48),
        ("linear", Some((false, 0)), 64),
        ("matmul", Some((false, 0)), 96),
        ("linear", Some((true, 0)), 64),
    ];
    for (i, (proj, rot, d)) in cases.into_iter().enumerate() {
        let src = head_split_src(proj, rot, d);
        let (b, s, k, n) = (2, 5, 5, 3 * d);
        let mut rng = Rng(400 + i as u64);
        let mut ins = vec![("x", rng.tensor(&[b, s, k], -1.0, 1.0))];
        ins.push(("w", if proj == "linear" { rng.tensor(&[n, k], -1.0, 1.0) } else { rng.tensor(&[k, n], -1.0, 1.0) }));
        if let Some((_, rd)) = rot {
            let half = if rd > 0 { rd as usize / 2 } else { d / 2 };
            ins.push(("cos", rng.tensor(&[9, half], -1.0, 1.0)));
            ins.push(("sin", rng.tensor(&[9, half], -1.0, 1.0)));
            ins.push(("pos", i64_tensor(&[b, s], (0..(b * s) as i64).map(|p| (p * 7) % 9).collect())));
        }
        check_kernels_only(&src, &inputs(ins), 1e-4);
    }
}

struct Att {
    causal: bool,
    /// Past length (a KV cache) or none.
    past: Option<usize>,
    /// "none", "f32" (`[B, 1, S, T]`), "f32h" (`[B, H, S, T]`) or "bool" (`[S, T]`).
    mask: &'static str,
    /// Transpose + head-merging reshape epilogue.
    merge: bool,
    d: usize,
    dv: usize,
    s: usize,
}

fn attention_src(a: &Att) -> String {
    let (h, hkv, d, dv) = (4, 2, a.d, a.dv);
    let t = if a.past.is_some() { "?p+?s" } else { "?s" };
    let mut params = format!("%q: f32[?b, {h}, ?s, {d}], %k: f32[?b, {hkv}, ?s, {d}], %v: f32[?b, {hkv}, ?s, {dv}]");
    let mut operands = "%q, %k, %v".to_string();
    match a.mask {
        "f32" => params.push_str(&format!(", %m: f32[?b, 1, ?s, {t}]")),
        "f32h" => params.push_str(&format!(", %m: f32[?b, {h}, ?s, {t}]")),
        "bool" => params.push_str(&format!(", %m: bool[?s, {t}]")),
        _ => {}
    }
    if a.mask != "none" {
        operands.push_str(", %m");
    }
    let mut results = format!("f32[?b, {h}, ?s, {dv}]");
    let mut outs = format!("y: f32[?b, {h}, ?s, {dv}]");
    let mut values = "%0".to_string();
    let mut rets = "%0".to_string();
    if a.past.is_some() {
        params.push_str(&format!(", %pk: f32[?b, {hkv}, ?p, {d}], %pv: f32[?b, {hkv}, ?p, {dv}]"));
        operands.push_str(", %pk, %pv");
        results.push_str(&format!(", f32[?b, {hkv}, ?p+?s, {d}], f32[?b, {hkv}, ?p+?s, {dv}]"));
        outs.push_str(&format!(", pk2: f32[?b, {hkv}, ?p+?s, {d}], pv2: f32[?b, {hkv}, ?p+?s, {dv}]"));
        values.push_str(", %1, %2");
        rets.push_str(", %1, %2");
    }
    let mut epilogue = String::new();
    if a.merge {
        outs = outs.replacen(&format!("y: f32[?b, {h}, ?s, {dv}]"), &format!("y: f32[?b, ?s, {}]", h * dv), 1);
        epilogue = format!(
            "  %3 = transpose %0 {{perm = [0, 2, 1, 3]}} : f32[?b, ?s, {h}, {dv}]\n  %4 = reshape %3 {{allowzero = false}} : f32[?b, ?s, {}]\n",
            h * dv
        );
        rets = rets.replacen("%0", "%4", 1);
    }
    format!(
        "module @m
func @forward({params}) -> ({outs}) {{
  {values} = attention {operands} {{causal = {}}} : {results}
{epilogue}  return {rets}
}}
",
        a.causal
    )
}

#[test]
fn attention_gqa_causal_masks_and_cache() {
    let cases = [
        Att { causal: true, past: None, mask: "none", merge: true, d: 16, dv: 16, s: 7 },
        Att { causal: true, past: None, mask: "none", merge: false, d: 5, dv: 3, s: 1 },
        Att { causal: true, past: Some(6), mask: "none", merge: true, d: 16, dv: 16, s: 1 },
        Att { causal: true, past: Some(4), mask: "none", merge: false, d: 7, dv: 9, s: 3 },
        Att { causal: false, past: Some(3), mask: "f32", merge: false, d: 8, dv: 8, s: 5 },
        Att { causal: true, past: None, mask: "f32", merge: true, d: 17, dv: 17, s: 6 },
        Att { causal: true, past: Some(3), mask: "f32h", merge: true, d: 8, dv: 5, s: 2 },
        Att { causal: false, past: Some(2), mask: "bool", merge: false, d: 4, dv: 4, s: 3 },
        Att { causal: true, past: Some(0), mask: "bool", merge: true, d: 4, dv: 6, s: 4 },
    ];
    for (ci, a) in cases.iter().enumerate() {
        let src = attention_src(a);
        let (b, h, hkv) = (2, 4, 2);
        let p = a.past.unwrap_or(0);
        let t = p + a.s;
        let mut rng = Rng(500 + ci as u64);
        let mut ins = vec![
            ("q", rng.tensor(&[b, h, a.s, a.d], -1.0, 1.0)),
            ("k", rng.tensor(&[b, hkv, a.s, a.d], -1.0, 1.0)),
            ("v", rng.tensor(&[b, hkv, a.s, a.dv], -1.0, 1.0)),
        ];
        match a.mask {
            "f32" => ins.push(("m", rng.tensor(&[b, 1, a.s, t], -2.0, 2.0))),
            "f32h" => ins.push(("m", rng.tensor(&[b, h, a.s, t], -2.0, 2.0))),
            "bool" => {
                // Row 0 fully masked (→ zeros), the others random.
                let vals = (0..a.s * t).map(|i| if i < t { 0.0 } else { (rng.below(3) != 0) as u8 as f64 }).collect();
                ins.push(("m", Tensor::from_f64(DType::Bool, vec![a.s, t], vals).unwrap()));
            }
            _ => {}
        }
        if a.past.is_some() {
            ins.push(("pk", rng.tensor(&[b, hkv, p, a.d], -1.0, 1.0)));
            ins.push(("pv", rng.tensor(&[b, hkv, p, a.dv], -1.0, 1.0)));
        }
        check_kernels_only(&src, &inputs(ins), 1e-4);
    }
}

#[test]
fn data_movement_copies() {
    for n in [1usize, 3, 17] {
        let src = format!(
            "module @m
func @forward(%x: f32[?r, 4, {n}], %y: f32[?r, 2, {n}], %z: f32[4, 1], %w: f32[3, 1]) -> (a: f32[{n}, ?r, 4], b: f32[?r, 6, {n}], c: f32[?r, {m}], d: f32[?r, 2, {s}], e: f32[?r, 4, {n}], f: f32[?r, 3, 4], g: f32[?r, 3, {n}]) {{
  %0 = transpose %x {{perm = [2, 0, 1]}} : f32[{n}, ?r, 4]
  %1 = concat %y, %x {{axis = -2}} : f32[?r, 6, {n}]
  %2 = reshape %x {{allowzero = false}} : f32[?r, {m}]
  %3 = slice %x {{axes = [1, 2], starts = [-1, 0], ends = [-5, 100], steps = [-2, 2]}} : f32[?r, 2, {s}]
  %4 = expand %z : f32[?r, 4, {n}]
  %5 = slice %x {{axes = [1], starts = [1], ends = [4], steps = []}} : f32[?r, 3, {n}]
  %6 = expand %w : f32[?r, 3, 4]
  return %0, %1, %2, %3, %4, %6, %5
}}
",
            m = 4 * n,
            s = n.div_ceil(2)
        );
        let mut rng = Rng(600 + n as u64);
        let ins = vec![
            ("x", rng.tensor(&[3, 4, n], -1.0, 1.0)),
            ("y", rng.tensor(&[3, 2, n], -1.0, 1.0)),
            ("z", rng.tensor(&[4, 1], -1.0, 1.0)),
            ("w", rng.tensor(&[3, 1], -1.0, 1.0)),
        ];
        check_kernels_only(&src, &inputs(ins), 1e-6);
    }
}
