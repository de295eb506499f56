//! `fuse-gelu`: the decomposed GELU exporters emit becomes `gelu x {approximate}`.
//!
//! * erf form `0.5 · x · (1 + erf(x / √2))` (or `erf(x · 1/√2)`) → `approximate = none`;
//! * tanh form `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))` with `x³` as
//!   `pow(x, 3)` or repeated multiplies → `approximate = tanh`.
//!
//! Products are matched as flattened factor lists, so any association and operand order of
//! the multiplies works (a trailing `/ 2` counts as `· 0.5`). Constants match within a
//! relative tolerance of 1e-4. Every intermediate must be used only inside the pattern and
//! the result must have `x`'s type.

use crate::fusion_util::{self as fu, binary, either, unary};
use crate::matchers::{single_use, splat_value};
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::op::GeluApproximation;
use ferrumc_ir::{Function, Module, Op, ValueId};

/// The `fuse-gelu` pass.
#[derive(Debug)]
pub struct FuseGelu;

impl OptimizationPass for FuseGelu {
    fn name(&self) -> &'static str {
        "fuse-gelu"
    }

    fn summary(&self) -> &'static str {
        "erf/tanh GELU decompositions -> gelu"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let (mut erf, mut tanh, mut erased) = (0usize, 0usize, 0usize);
        fu::each_function(module, |m, f| {
            for id in fu::ops_in_order(f) {
                let Some(data) = f.op(id) else { continue };
                if !matches!(data.op, Op::Mul | Op::Div) {
                    continue;
                }
                let root = data.results[0];
                let Some((x, approximate)) = match_gelu(m, f, root) else { continue };
                match approximate {
                    GeluApproximation::None => erf += 1,
                    GeluApproximation::Tanh => tanh += 1,
                }
                let ty = f.ty(root).clone();
                let new = f.add_op1(Op::Gelu { approximate }, vec![x], ty);
                f.replace_all_uses(root, new);
                let before = f.op_count();
                fu::erase_dead(f, [id]);
                erased += before - f.op_count();
            }
        });
        let mut result = OptimizationResult::unchanged();
        if erf + tanh > 0 {
            result.applied = true;
            result.stats.operations_eliminated = erased;
            result.notes.push(format!("{} gelu fused ({erf} erf, {tanh} tanh)", erf + tanh));
        }
        Ok(result)
    }
}

const TOLERANCE: f64 = 1e-4;

fn close(value: f64, expected: f64) -> bool {
    (value - expected).abs() <= TOLERANCE * expected.abs()
}

/// A product flattened through multiplies (and divisions by constants): the product of its
/// constant factors and its other factors.
struct Product {
    constant: f64,
    factors: Vec<ValueId>,
}

/// Flatten the product rooted at `v`. Inner nodes (all but `v`) must be used once.
fn product(m: &Module, f: &Function, v: ValueId) -> Product {
    let mut p = Product { constant: 1.0, factors: Vec::new() };
    flatten(m, f, v, true, &mut p, 0);
    p
}

fn flatten(m: &Module, f: &Function, v: ValueId, root: bool, p: &mut Product, depth: usize) {
    if let Some(c) = splat_value(m, f, v) {
        p.constant *= c;
        return;
    }
    if depth < 8 && (root || single_use(f, v)) {
        if let Some((_, a, b)) = binary(f, v, fu::is_mul) {
            flatten(m, f, a, false, p, depth + 1);
            flatten(m, f, b, false, p, depth + 1);
            return;
        }
        if let Some((_, a, b)) = binary(f, v, fu::is_div) {
            if let Some(c) = splat_value(m, f, b).filter(|c| *c != 0.0) {
                flatten(m, f, a, false, p, depth + 1);
                p.constant /= c;
                return;
            }
        }
    }
    p.factors.push(v);
}

/// `root = 0.5 · x · h`: returns `x` and the form `h` matched.
fn match_gelu(m: &Module, f: &Function, root: ValueId) -> Option<(ValueId, GeluApproximation)> {
    let p = product(m, f, root);
    if p.factors.len() != 2 || !close(p.constant, 0.5) {
        return None;
    }
    let (x, approximate) = either(p.factors[0], p.factors[1], |x, h| Some((x, one_plus(m, f, x, h)?)))?;
    (f.ty(x) == f.ty(root) && f.ty(x).dtype.is_float()).then_some((x, approximate))
}

/// `h = 1 + erf(x/√2)` or `h = 1 + tanh(√(2/π)(x + 0.044715 x³))`, used once.
fn one_plus(m: &Module, f: &Function, x: ValueId, h: ValueId) -> Option<GeluApproximation> {
    if !single_use(f, h) {
        return None;
    }
    let (_, a, b) = binary(f, h, fu::is_add)?;
    let t = either(a, b, |one, t| splat_value(m, f, one).filter(|c| close(*c, 1.0)).map(|_| t))?;
    if !single_use(f, t) || f.ty(t) != f.ty(x) {
        return None;
    }
    if let Some((_, arg)) = unary(f, t, |op| matches!(op, Op::Erf)) {
        let p = product(m, f, arg);
        let ok = p.factors == [x] && close(p.constant, std::f64::consts::FRAC_1_SQRT_2) && single_use(f, arg);
        return ok.then_some(GeluApproximation::None);
    }
    let (_, arg) = unary(f, t, |op| matches!(op, Op::Tanh))?;
    // arg = √(2/π) · (x + 0.044715 · x³)
    let p = product(m, f, arg);
    let sqrt_2_over_pi = (2.0 / std::f64::consts::PI).sqrt();
    if !single_use(f, arg) || p.factors.len() != 1 || !close(p.constant, sqrt_2_over_pi) {
        return None;
    }
    let inner = p.factors[0];
    if inner != arg && !single_use(f, inner) {
        return None;
    }
    let (_, a, b) = binary(f, inner, fu::is_add)?;
    either(a, b, |lone, cube| (lone == x && is_cubic_term(m, f, x, cube)).then_some(()))?;
    Some(GeluApproximation::Tanh)
}

/// `v = 0.044715 · x³` with `x³` spelled with `pow(x, 3)` and/or multiplies.
fn is_cubic_term(m: &Module, f: &Function, x: ValueId, v: ValueId) -> bool {
    if !single_use(f, v) {
        return false;
    }
    let p = product(m, f, v);
    let mut power = 0.0;
    for &factor in &p.factors {
        if factor == x {
            power += 1.0;
        } else if let Some((_, base, e)) = binary(f, factor, |op| matches!(op, Op::Pow)) {
            match splat_value(m, f, e) {
                Some(e) if base == x && single_use(f, factor) => power += e,
                _ => return false,
            }
        } else {
            return false;
        }
    }
    power == 3.0 && close(p.constant, 0.044715)
}

#[cfg(test)]
mod tests {
    use crate::fusion_util::testing::*;

    const ERF: &str = r#"module @m
func @forward(%x: f32[2, 8]) -> (y: f32[2, 8]) {
  %0 = constant {value = dense<f32[]: [1.4142135]>} : f32[]
  %1 = constant {value = dense<f32[]: [1.0]>} : f32[]
  %2 = constant {value = dense<f32[]: [0.5]>} : f32[]
  %3 = div %x, %0 : f32[2, 8]
  %4 = erf %3 : f32[2, 8]
  %5 = add %4, %1 : f32[2, 8]
  %6 = mul %x, %5 : f32[2, 8]
  %7 = mul %6, %2 : f32[2, 8]
  return %7
}
"#;

    const TANH: &str = r#"module @m
func @forward(%x: f32[2, 8]) -> (y: f32[2, 8]) {
  %0 = constant {value = dense<f32[]: [0.044715]>} : f32[]
  %1 = constant {value = dense<f32[]: [0.7978846]>} : f32[]
  %2 = constant {value = dense<f32[]: [1.0]>} : f32[]
  %3 = constant {value = dense<f32[]: [0.5]>} : f32[]
  %4 = mul %x, %x : f32[2, 8]
  %5 = mul %4, %x : f32[2, 8]
  %6 = mul %5, %0 : f32[2, 8]
  %7 = add %x, %6 : f32[2, 8]
  %8 = mul %7, %1 : f32[2, 8]
  %9 = tanh %8 : f32[2, 8]
  %10 = add %9, %2 : f32[2, 8]
  %11 = mul %3, %x : f32[2, 8]
  %12 = mul %11, %10 : f32[2, 8]
  return %12
}
"#;

    #[test]
    fn erf_form_fuses_and_agrees() {
        let m = check_random(ERF, &["fuse-gelu"]);
        assert_eq!((count(&m, "gelu"), m.op_count()), (1, 1));
        let text = ferrumc_ir::text::print_module(&m);
        assert!(text.contains("approximate = \"none\""), "{text}");
        // 0.5 · (x · (1 + erf(x · 1/√2))): multiply by 1/√2 and the half on the left.
        let alt = ERF
            .replace("div %x, %0", "mul %x, %0")
            .replace("[1.4142135]", "[0.70710677]")
            .replace("%7 = mul %6, %2", "%7 = mul %2, %6");
        let m = check_random(&alt, &["fuse-gelu"]);
        assert_eq!(count(&m, "gelu"), 1);
    }

    #[test]
    fn tanh_form_fuses_and_agrees() {
        let m = check_random(TANH, &["fuse-gelu"]);
        assert_eq!((count(&m, "gelu"), m.op_count()), (1, 1));
        assert!(ferrumc_ir::text::print_module(&m).contains("approximate = \"tanh\""));
    }

    #[test]
    fn wrong_constants_and_extra_uses_do_not_fuse() {
        for src in [
            ERF.replace("[0.5]", "[0.6]"),
            ERF.replace("[1.4142135]", "[1.5]"),
            ERF.replace("return %7", "%8 = add %7, %5 : f32[2, 8]\n  return %8"),
            TANH.replace("[0.044715]", "[0.05]"),
            TANH.replace("%5 = mul %4, %x", "%5 = mul %4, %4"),
        ] {
            let m = check_random(&src, &["fuse-gelu"]);
            assert_eq!(count(&m, "gelu"), 0, "{src}");
        }
    }
}
