//! Differential check of kernels over every plain dtype the compiler takes besides f32/i64:
//! `i8`, `u8`, `i32` (computed in i64, stores wrap), `f16`, `bf16` (computed in f32, stores
//! round to nearest even) and `f64` (computed in f64). For each dtype one small ModelIR
//! module applies arithmetic with broadcasting, comparisons and `where`, casts to and from
//! other dtypes, `max`/`min`, `mod`/`fmod`, `pow`, constants, unary math, reductions over
//! either axis, softmax and causal grouped-query attention (fused groups, so intermediates of
//! a narrow dtype must be narrowed inside a kernel); it is compiled at `-O0` and `-O2`, run
//! through the runtime and compared with the reference interpreter on the same optimized
//! module. Inputs cover each dtype's edges (wrap-around sums and products, ±0, ±inf, NaN,
//! the largest finite half, half subnormals).
//!
//! Tolerances: integer outputs, and float outputs of single correctly rounded operations
//! (arithmetic, `mod`, `sqrt`, casts, comparisons; see [`float_module`]), exactly. Float
//! transcendentals and sums: `f64` rtol 1e-12, atol 1e-12 (f64-accurate, far below what an
//! f32 computation could reach); `f16` rtol 2e-3, atol 1e-4 (one half ulp is 9.8e-4
//! relative: an f32 intermediate may round the other way); `bf16` rtol 1.6e-2, atol 1e-3
//! (one bf16 ulp is 7.8e-3). Outputs are returned in their own dtype, so the comparison sees
//! exactly what the kernels stored.

use ferrumc_codegen::compile::CompileOptions;
use ferrumc_ir::weights::InlineWeights;
use ferrumc_ir::{DType, Tensor};
use ferrumc_tests::compare::Tolerance;
use ferrumc_tests::compiled::check_compiled;

use ferrumc_tests::rng::SplitMix64 as Rng;

const ROWS: usize = 4;
const COLS: usize = 6;

/// The function over integer dtype `t`: `a: t[4, 6]`, `b: t[6]` (no zeros), `e: t[6]`
/// (small non-negative exponents).
fn int_module(t: &str) -> String {
    let other = if t == "i32" { "i8" } else { "i32" };
    format!(
        "module @dtypes_{t}

func @main(%a: {t}[4, 6], %b: {t}[6], %e: {t}[6]) -> (sum: {t}[4, 6], diff: {t}[4, 6], prod: {t}[4, 6], \
         quot: {t}[4, 6], hi: {t}[4, 6], lo: {t}[4, 6], rem: {t}[4, 6], crem: {t}[4, 6], sel: {t}[4, 6], \
         eq: bool[4, 6], neg: {t}[4, 6], mag: {t}[4, 6], as_f32: f32[4, 6], as_other: {other}[4, 6], \
         as_f16: f16[4, 6], from_f32: {t}[4, 6], chain: {t}[4, 6], power: {t}[4, 6], rsum: {t}[4, 1], \
         rmax: {t}[6], rmin: {t}[4], any: bool[6], aw: {t}[4, 6]) {{
  %sum = add %a, %b : {t}[4, 6]
  %diff = sub %a, %b : {t}[4, 6]
  %prod = mul %a, %b : {t}[4, 6]
  %quot = div %a, %b : {t}[4, 6]
  %hi = max %a, %b : {t}[4, 6]
  %lo = min %a, %b : {t}[4, 6]
  %rem = mod %a, %b : {t}[4, 6]
  %crem = fmod %a, %b : {t}[4, 6]
  %lt = less %a, %b : bool[4, 6]
  %sel = where %lt, %sum, %prod : {t}[4, 6]
  %eq = equal %rem, %crem : bool[4, 6]
  %neg = neg %a : {t}[4, 6]
  %mag = abs %a : {t}[4, 6]
  %as_f32 = cast %a {{to = f32}} : f32[4, 6]
  %as_other = cast %prod {{to = {other}}} : {other}[4, 6]
  %as_f16 = cast %sum {{to = f16}} : f16[4, 6]
  %scaled = mul %as_f32, %as_f32 : f32[4, 6]
  %from_f32 = cast %scaled {{to = {t}}} : {t}[4, 6]
  %twice = add %sum, %sum : {t}[4, 6]
  %chain = mul %twice, %diff : {t}[4, 6]
  %power = pow %a, %e : {t}[4, 6]
  %rsum = reduce_sum %sum {{axes = [1], keepdims = true}} : {t}[4, 1]
  %rmax = reduce_max %prod {{axes = [0], keepdims = false}} : {t}[6]
  %rmin = reduce_min %a {{axes = [1], keepdims = false}} : {t}[4]
  %ltu = cast %lt {{to = u8}} : u8[4, 6]
  %anyu = reduce_max %ltu {{axes = [0], keepdims = false}} : u8[6]
  %any = cast %anyu {{to = bool}} : bool[6]
  %w = constant {{value = dense<{t}[6]: [1, 2, 3, 100, 0, 17]>}} : {t}[6]
  %aw = mul %a, %w : {t}[4, 6]
  return %sum, %diff, %prod, %quot, %hi, %lo, %rem, %crem, %sel, %eq, %neg, %mag, %as_f32, %as_other, \
         %as_f16, %from_f32, %chain, %power, %rsum, %rmax, %rmin, %any, %aw
}}
"
    )
}

/// The functions over float dtype `t`, each on `a: t[4, 6]` (with specials), `b: t[6]`
/// (finite, non-zero), `c: t[4, 6]` (finite, moderate). `@exact` holds the ops whose
/// result is one correctly rounded operation (or a chain of them): computed in f32 and
/// rounded to a half type they give exactly the interpreter's f64-then-round result (f32
/// has more than twice the bits of f16/bf16 plus two, so the double rounding is
/// innocuous). `@approx` holds transcendental functions and sums, whose f32 evaluation may
/// round to a neighbouring half.
fn float_module(t: &str) -> String {
    let pow_line = if t == "f64" {
        "  %power = pow %c, %b : f64[4, 6]\n".to_string()
    } else {
        format!("  %power = abs %c : {t}[4, 6]\n")
    };
    format!(
        "module @dtypes_{t}

func @exact(%a: {t}[4, 6], %b: {t}[6], %c: {t}[4, 6]) -> (sum: {t}[4, 6], diff: {t}[4, 6], prod: {t}[4, 6], \
         quot: {t}[4, 6], hi: {t}[4, 6], lo: {t}[4, 6], rem: {t}[4, 6], crem: {t}[4, 6], sel: {t}[4, 6], \
         as_f32: f32[4, 6], as_i32: i32[4, 6], as_u8: u8[4, 6], nan: bool[4, 6], chain: {t}[4, 6], \
         rt: {t}[4, 6], rmax: {t}[6], back: {t}[4, 6], cw: {t}[4, 6]) {{
  %sum = add %a, %b : {t}[4, 6]
  %diff = sub %a, %b : {t}[4, 6]
  %prod = mul %a, %b : {t}[4, 6]
  %quot = div %a, %b : {t}[4, 6]
  %hi = max %a, %b : {t}[4, 6]
  %lo = min %a, %b : {t}[4, 6]
  %rem = mod %c, %b : {t}[4, 6]
  %crem = fmod %c, %b : {t}[4, 6]
  %lt = less %a, %b : bool[4, 6]
  %sel = where %lt, %sum, %prod : {t}[4, 6]
  %as_f32 = cast %quot {{to = f32}} : f32[4, 6]
  %as_i32 = cast %a {{to = i32}} : i32[4, 6]
  %as_u8 = cast %c {{to = u8}} : u8[4, 6]
  %nan = isnan %quot : bool[4, 6]
  %third = div %c, %b : {t}[4, 6]
  %chain = mul %third, %b : {t}[4, 6]
  %mag = abs %c : {t}[4, 6]
  %rt = sqrt %mag : {t}[4, 6]
  %rmax = reduce_max %a {{axes = [0], keepdims = false}} : {t}[6]
  %wide = cast %c {{to = f32}} : f32[4, 6]
  %tenth = mul %wide, %wide : f32[4, 6]
  %back = cast %tenth {{to = {t}}} : {t}[4, 6]
  %w = constant {{value = dense<{t}[6]: [0.5, -1.25, 3.0, 0.1, -0.3, 7.0]>}} : {t}[6]
  %cw = mul %c, %w : {t}[4, 6]
  return %sum, %diff, %prod, %quot, %hi, %lo, %rem, %crem, %sel, %as_f32, %as_i32, %as_u8, %nan, %chain, \
         %rt, %rmax, %back, %cw
}}

func @approx(%a: {t}[4, 6], %b: {t}[6], %c: {t}[4, 6]) -> (ex: {t}[4, 6], ln: {t}[4, 6], th: {t}[4, 6], \
         sn: {t}[4, 6], cs: {t}[4, 6], ef: {t}[4, 6], sg: {t}[4, 6], power: {t}[4, 6], rsum: {t}[4, 1], \
         sm: {t}[4, 6], att: {t}[1, 2, 3, 4]) {{
  %ex = exp %c : {t}[4, 6]
  %mag = abs %c : {t}[4, 6]
  %mag1 = add %mag, %mag : {t}[4, 6]
  %ln = log %mag1 : {t}[4, 6]
  %th = tanh %c : {t}[4, 6]
  %sn = sin %c : {t}[4, 6]
  %cs = cos %c : {t}[4, 6]
  %ef = erf %c : {t}[4, 6]
  %sg = sigmoid %c : {t}[4, 6]
{pow_line}  %rsum = reduce_sum %c {{axes = [1], keepdims = true}} : {t}[4, 1]
  %sm = softmax %c {{axis = 1}} : {t}[4, 6]
  %q4 = reshape %c {{allowzero = false}} : {t}[1, 2, 3, 4]
  %k4 = reshape %c {{allowzero = false}} : {t}[1, 1, 6, 4]
  %v4 = reshape %th {{allowzero = false}} : {t}[1, 1, 6, 4]
  %att = attention %q4, %k4, %v4 {{causal = true}} : {t}[1, 2, 3, 4]
  return %ex, %ln, %th, %sn, %cs, %ef, %sg, %power, %rsum, %sm, %att
}}
"
    )
}

fn tensor(dtype: DType, shape: Vec<usize>, values: Vec<f64>) -> Tensor {
    let t = if dtype.is_float() {
        Tensor::from_f64(dtype, shape, values)
    } else {
        Tensor::from_i64(dtype, shape, values.into_iter().map(|v| v as i64).collect())
    };
    t.unwrap_or_else(|e| panic!("test input: {e}"))
}

fn int_inputs(dtype: DType, rng: &mut Rng) -> Vec<(String, Tensor)> {
    let (lo, hi) = match dtype {
        DType::I8 => (-128, 127),
        DType::U8 => (0, 255),
        _ => (-2_000_000_000, 2_000_000_000),
    };
    let mut a: Vec<f64> = (0..ROWS * COLS).map(|_| rng.int_in(lo, hi) as f64).collect();
    // The extremes themselves (negating the minimum wraps).
    a[0] = lo as f64;
    a[1] = hi as f64;
    let b: Vec<f64> = (0..COLS)
        .map(|k| {
            let v = rng.int_in(lo, hi);
            let v = if k % 2 == 0 { v % 13 } else { v };
            if v == 0 {
                7.0
            } else {
                v as f64
            }
        })
        .collect();
    let e: Vec<f64> = (0..COLS).map(|k| (k % 5) as f64).collect();
    vec![
        ("a".into(), tensor(dtype, vec![ROWS, COLS], a)),
        ("b".into(), tensor(dtype, vec![COLS], b)),
        ("e".into(), tensor(dtype, vec![COLS], e)),
    ]
}

fn float_inputs(dtype: DType, rng: &mut Rng) -> Vec<(String, Tensor)> {
    let mut a: Vec<f64> = (0..ROWS * COLS).map(|_| rng.uniform(-8.0, 8.0)).collect();
    let specials = [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-6, -3.0e-7, 60000.0];
    for (k, s) in specials.iter().enumerate() {
        a[k * 3] = *s;
    }
    let b: Vec<f64> =
        (0..COLS).map(|k| if k % 2 == 0 { rng.uniform(0.5, 3.0) } else { rng.uniform(-3.0, -0.5) }).collect();
    let c: Vec<f64> = (0..ROWS * COLS).map(|_| rng.uniform(-6.0, 6.0)).collect();
    vec![
        ("a".into(), tensor(dtype, vec![ROWS, COLS], a)),
        ("b".into(), tensor(dtype, vec![COLS], b)),
        ("c".into(), tensor(dtype, vec![ROWS, COLS], c)),
    ]
}

fn check(dtype: DType) -> Result<(), String> {
    let name = dtype.to_string();
    const EXACT: Tolerance = Tolerance { rtol: 0.0, atol: 0.0 };
    // (function, tolerance) pairs.
    let (text, functions) = match dtype {
        DType::F16 => (float_module(&name), vec![("exact", EXACT), ("approx", Tolerance { rtol: 2e-3, atol: 1e-4 })]),
        DType::BF16 => {
            (float_module(&name), vec![("exact", EXACT), ("approx", Tolerance { rtol: 1.6e-2, atol: 1e-3 })])
        }
        DType::F64 => (float_module(&name), vec![("exact", EXACT), ("approx", Tolerance { rtol: 1e-12, atol: 1e-12 })]),
        _ => (int_module(&name), vec![("main", EXACT)]),
    };
    let m = ferrumc_ir::text::parse_module(&text).map_err(|e| format!("{name}: module does not parse: {e}\n{text}"))?;
    if let Err(errors) = ferrumc_ir::verify::verify_module(&m) {
        let list: Vec<String> = errors.iter().map(|e| ferrumc_ir::verify::describe(&m, e)).collect();
        return Err(format!("{name}: module does not verify: {}", list.join("; ")));
    }
    let mut rng = Rng(0xD7E5 ^ (u64::from(name.as_bytes()[1]) << 8) ^ name.len() as u64);
    for (function, tol) in functions {
        let runs: Vec<(String, Vec<(String, Tensor)>)> = (0..2)
            .map(|_| {
                let inputs = if dtype.is_float() { float_inputs(dtype, &mut rng) } else { int_inputs(dtype, &mut rng) };
                (function.to_string(), inputs)
            })
            .collect();
        for level in [0, 2] {
            let options = CompileOptions { level, ..CompileOptions::default() };
            check_compiled(&format!("{name} -O{level}"), &m, &InlineWeights, &options, &runs, tol)?;
        }
    }
    Ok(())
}

#[test]
fn integer_dtypes_compile_and_match_the_interpreter_exactly() {
    let failures: Vec<String> = [DType::I8, DType::U8, DType::I32].into_iter().filter_map(|d| check(d).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn half_and_double_dtypes_compile_and_match_the_interpreter() {
    let failures: Vec<String> =
        [DType::F16, DType::BF16, DType::F64].into_iter().filter_map(|d| check(d).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
