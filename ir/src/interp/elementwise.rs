//! Elementwise ops: unary math, `cast`, broadcasting binary arithmetic, logic and
//! comparisons, and `where`; plus a double-precision [`erf`].
//!
//! Integer arithmetic wraps (two's complement, then to the dtype's width); integer
//! `div`, `mod` and `fmod` by zero are run-time errors. Integer `pow` with a negative
//! exponent follows truncating integer division (`1`, `±1` for a base of ±1, `0`
//! otherwise, and an error for a zero base). An integer base with a float exponent is
//! computed in f64 and converted like `cast` (truncation, saturation). `cast` to a block
//! dtype quantizes along the last dim with [`crate::quant`] and holds the dequantized values.

use super::common::{
    broadcast_shapes, broadcast_strides, class, float_tensor, int_tensor, require_numeric, vec_with_capacity, Class,
    OffsetIter, OpResult,
};
use crate::dtype::DType;
use crate::op::{GeluApproximation, Op};
use crate::quant::quantize_blocks;
use crate::tensor::{wrap_int, Tensor, TensorData};

const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

/// The Gauss error function in double precision (relative error around 1e-15).
///
/// For `|x| < 2.5` it sums the series `erf(x) = 2/√π · e^{-x²} · Σ (2x²)ⁿ x / (1·3·…·(2n+1))`
/// (all terms positive, so no cancellation); for `2.5 ≤ |x| < 6` it evaluates the
/// Laplace continued fraction of `erfc`, and beyond 6 `erf` is ±1 to double precision.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        erf_series(ax)
    } else if ax < 6.0 {
        1.0 - erfc_continued_fraction(ax)
    } else {
        1.0
    };
    r.copysign(x)
}

fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= 2.0 * x2 / f64::from(2 * n + 1);
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    FRAC_2_SQRT_PI * (-x2).exp() * sum
}

/// `erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`, evaluated
/// bottom-up; 120 levels are enough for full double precision from x = 2.5 on.
fn erfc_continued_fraction(x: f64) -> f64 {
    let mut t = x;
    for n in (1..=120).rev() {
        t = x + (f64::from(n) * 0.5) / t;
    }
    (-x * x).exp() / (t * std::f64::consts::PI.sqrt())
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `silu(x) = x · sigmoid(x)`.
pub(crate) fn silu(x: f64) -> f64 {
    x * sigmoid(x)
}

fn gelu(x: f64, approx: GeluApproximation) -> f64 {
    match approx {
        GeluApproximation::None => 0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2)),
        GeluApproximation::Tanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
    }
}

fn map_float(x: &Tensor, f: impl Fn(f64) -> f64) -> OpResult<Tensor> {
    let TensorData::Float(v) = &x.data else {
        return Err(format!("operand must be float, found {}", x.dtype));
    };
    let mut out = vec_with_capacity(v.len())?;
    out.extend(v.iter().map(|&a| f(a)));
    Ok(float_tensor(x.dtype, x.shape.clone(), out))
}

fn map_int(x: &Tensor, f: impl Fn(i64) -> i64) -> OpResult<Tensor> {
    let TensorData::Int(v) = &x.data else {
        return Err(format!("operand must be an integer, found {}", x.dtype));
    };
    let mut out = vec_with_capacity(v.len())?;
    out.extend(v.iter().map(|&a| f(a)));
    Ok(int_tensor(x.dtype, x.shape.clone(), out))
}

/// Convert a float to an integer like `cast`: truncate toward zero, NaN → 0, saturate
/// to i64, then wrap to `to`.
pub(crate) fn float_to_int(v: f64, to: DType) -> i64 {
    if to == DType::Bool {
        return (v != 0.0) as i64;
    }
    wrap_int(v as i64, to)
}

/// `cast x {to}`.
pub(crate) fn cast(x: &Tensor, to: DType) -> OpResult<Tensor> {
    if to.is_quantized() {
        return quantize(x, to);
    }
    let shape = x.shape.clone();
    Ok(match (&x.data, class(to)) {
        (TensorData::Float(v), Class::Float) => float_tensor(to, shape, v.clone()),
        (TensorData::Float(v), _) => int_tensor(to, shape, v.iter().map(|&a| float_to_int(a, to)).collect()),
        (TensorData::Int(v), Class::Float) => float_tensor(to, shape, v.iter().map(|&a| a as f64).collect()),
        (TensorData::Int(v), _) => int_tensor(to, shape, v.clone()),
    })
}

/// `cast x {to}` with a block dtype: quantize along the last dim, then hold the values
/// dequantized back from the storage bytes (so they are exactly what a stored weight holds).
fn quantize(x: &Tensor, to: DType) -> OpResult<Tensor> {
    let TensorData::Float(v) = &x.data else {
        return Err(format!("cast to {to} needs a float operand, found {}", x.dtype));
    };
    let last = x.shape.last().copied().unwrap_or(1) as u64;
    if x.shape.is_empty() || last % to.block_len() != 0 {
        return Err(format!(
            "cast to {to}: last dim {last} of shape {:?} is not a multiple of the block length {}",
            x.shape,
            to.block_len()
        ));
    }
    let bytes = quantize_blocks(to, v).ok_or_else(|| format!("cannot quantize to {to}"))?;
    Tensor::from_le_bytes(to, x.shape.clone(), &bytes).map_err(|e| e.to_string())
}

/// Unary elementwise ops (everything [`Op::is_unary_elementwise`] accepts).
pub(crate) fn unary(op: &Op, x: &Tensor) -> OpResult<Tensor> {
    let c = class(x.dtype);
    let float_only = |f: fn(f64) -> f64| -> OpResult<Tensor> {
        if c != Class::Float {
            return Err(format!("`{}` needs a float operand, found {}", op.name(), x.dtype));
        }
        map_float(x, f)
    };
    match op {
        Op::Identity => Ok(x.clone()),
        Op::Cast { to } => cast(x, *to),
        Op::Sqrt => float_only(f64::sqrt),
        Op::Rsqrt => float_only(|a| 1.0 / a.sqrt()),
        Op::Reciprocal => float_only(|a| 1.0 / a),
        Op::Exp => float_only(f64::exp),
        Op::Log => float_only(f64::ln),
        Op::Tanh => float_only(f64::tanh),
        Op::Erf => float_only(erf),
        Op::Sigmoid => float_only(sigmoid),
        Op::Silu => float_only(silu),
        Op::Softplus => float_only(softplus),
        Op::Sin => float_only(f64::sin),
        Op::Cos => float_only(f64::cos),
        Op::Floor => float_only(f64::floor),
        Op::Ceil => float_only(f64::ceil),
        Op::Round => float_only(f64::round_ties_even),
        Op::Gelu { approximate } => {
            if c != Class::Float {
                return Err(format!("`gelu` needs a float operand, found {}", x.dtype));
            }
            let a = *approximate;
            map_float(x, |v| gelu(v, a))
        }
        Op::LeakyRelu { alpha } => {
            if c != Class::Float {
                return Err(format!("`leaky_relu` needs a float operand, found {}", x.dtype));
            }
            let alpha = *alpha;
            map_float(x, |v| if v >= 0.0 { v } else { alpha * v })
        }
        Op::IsNan => match &x.data {
            TensorData::Float(v) if c == Class::Float => {
                Ok(int_tensor(DType::Bool, x.shape.clone(), v.iter().map(|a| a.is_nan() as i64).collect()))
            }
            _ => Err(format!("`isnan` needs a float operand, found {}", x.dtype)),
        },
        Op::Not => {
            if c != Class::Bool {
                return Err(format!("`not` needs a bool operand, found {}", x.dtype));
            }
            map_int(x, |a| (a == 0) as i64)
        }
        Op::Neg | Op::Abs | Op::Relu | Op::Sign | Op::Clip { .. } => {
            require_numeric(x, &format!("the operand of `{}`", op.name()))?;
            numeric_unary(op, x, c)
        }
        other => Err(format!("internal error: `{}` is not a unary elementwise op", other.name())),
    }
}

fn numeric_unary(op: &Op, x: &Tensor, c: Class) -> OpResult<Tensor> {
    if c == Class::Float {
        return match op {
            Op::Neg => map_float(x, |a| -a),
            Op::Abs => map_float(x, f64::abs),
            Op::Relu => map_float(x, |a| if a.is_nan() { a } else { a.max(0.0) }),
            Op::Sign => map_float(x, |a| {
                if a.is_nan() {
                    a
                } else if a > 0.0 {
                    1.0
                } else if a < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }),
            Op::Clip { min, max } => {
                let (lo, hi) = (*min, *max);
                map_float(x, |a| {
                    let mut r = a;
                    if let Some(lo) = lo {
                        if r < lo {
                            r = lo;
                        }
                    }
                    if let Some(hi) = hi {
                        if r > hi {
                            r = hi;
                        }
                    }
                    r
                })
            }
            _ => Err("internal error".into()),
        };
    }
    let dt = x.dtype;
    match op {
        Op::Neg => map_int(x, i64::wrapping_neg),
        Op::Abs => map_int(x, i64::wrapping_abs),
        Op::Relu => map_int(x, |a| a.max(0)),
        Op::Sign => map_int(x, i64::signum),
        Op::Clip { min, max } => {
            // Bounds are compared exactly against the integer; a bound that wins is
            // converted like `cast` (truncation toward zero).
            let (lo, hi) = (*min, *max);
            map_int(x, |a| {
                let mut r = a;
                if let Some(lo) = lo {
                    if (r as f64) < lo && !lo.is_nan() {
                        r = float_to_int(lo, dt);
                    }
                }
                if let Some(hi) = hi {
                    if (r as f64) > hi && !hi.is_nan() {
                        r = float_to_int(hi, dt);
                    }
                }
                r
            })
        }
        _ => Err("internal error".into()),
    }
}

/// Apply `f` over the broadcast of `a` and `b`.
fn zip_broadcast<A: Copy, B: Copy, R>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    out_shape: &[usize],
    f: impl Fn(A, B) -> R,
) -> OpResult<Vec<R>> {
    let n = super::common::numel(out_shape)?;
    let mut out = vec_with_capacity(n)?;
    if a_shape == b_shape {
        out.extend(a.iter().zip(b).map(|(&x, &y)| f(x, y)));
    } else if b.len() == 1 && a_shape == out_shape {
        let y = b[0];
        out.extend(a.iter().map(|&x| f(x, y)));
    } else if a.len() == 1 && b_shape == out_shape {
        let x = a[0];
        out.extend(b.iter().map(|&y| f(x, y)));
    } else {
        let ia = OffsetIter::new(out_shape, &broadcast_strides(a_shape, out_shape)?, 0);
        let ib = OffsetIter::new(out_shape, &broadcast_strides(b_shape, out_shape)?, 0);
        for (oa, ob) in ia.zip(ib) {
            match (a.get(oa), b.get(ob)) {
                (Some(&x), Some(&y)) => out.push(f(x, y)),
                _ => return Err("internal error: broadcast offset out of range".into()),
            }
        }
    }
    if out.len() != n {
        return Err("internal error: broadcast produced the wrong element count".into());
    }
    Ok(out)
}

fn python_mod_f(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r == 0.0 {
        0.0f64.copysign(b)
    } else if (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

fn python_mod_i(a: i64, b: i64) -> i64 {
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) {
        r.wrapping_add(b)
    } else {
        r
    }
}

fn int_pow(base: i64, exp: i64) -> OpResult<i64> {
    if exp < 0 {
        return match base {
            0 => Err("integer `pow`: zero raised to a negative power".into()),
            1 => Ok(1),
            -1 => Ok(if exp % 2 == 0 { 1 } else { -1 }),
            _ => Ok(0),
        };
    }
    let (mut result, mut b, mut e) = (1i64, base, exp as u64);
    while e > 0 {
        if e & 1 == 1 {
            result = result.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    Ok(result)
}

fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn min_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Broadcasting binary ops (everything [`Op::is_binary_elementwise`] accepts).
pub(crate) fn binary(op: &Op, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    let name = op.name();
    let out_shape = broadcast_shapes(&a.shape, &b.shape)?;
    if !matches!(op, Op::Pow) && a.dtype != b.dtype {
        return Err(format!("`{name}` needs operands of one dtype, found {} and {}", a.dtype, b.dtype));
    }
    let ca = class(a.dtype);
    let zb =
        |fa: &[f64], fb: &[f64], f: &dyn Fn(f64, f64) -> f64| zip_broadcast(fa, &a.shape, fb, &b.shape, &out_shape, f);
    let zi =
        |ia: &[i64], ib: &[i64], f: &dyn Fn(i64, i64) -> i64| zip_broadcast(ia, &a.shape, ib, &b.shape, &out_shape, f);

    if matches!(op, Op::And | Op::Or | Op::Xor) {
        let (TensorData::Int(x), TensorData::Int(y), Class::Bool) = (&a.data, &b.data, ca) else {
            return Err(format!("`{name}` needs bool operands, found {} and {}", a.dtype, b.dtype));
        };
        let f: &dyn Fn(i64, i64) -> i64 = match op {
            Op::And => &|p, q| (p != 0 && q != 0) as i64,
            Op::Or => &|p, q| (p != 0 || q != 0) as i64,
            _ => &|p, q| ((p != 0) != (q != 0)) as i64,
        };
        return Ok(int_tensor(DType::Bool, out_shape.clone(), zi(x, y, f)?));
    }

    if op.is_comparison() {
        let v = match (&a.data, &b.data) {
            (TensorData::Float(x), TensorData::Float(y)) => {
                zip_broadcast(x, &a.shape, y, &b.shape, &out_shape, |p, q| compare(op, p, q) as i64)?
            }
            (TensorData::Int(x), TensorData::Int(y)) => {
                zip_broadcast(x, &a.shape, y, &b.shape, &out_shape, |p, q| compare(op, p, q) as i64)?
            }
            _ => return Err(format!("`{name}`: operand data kinds differ")),
        };
        return Ok(int_tensor(DType::Bool, out_shape.clone(), v));
    }

    require_numeric(a, &format!("the first operand of `{name}`"))?;
    require_numeric(b, &format!("the second operand of `{name}`"))?;
    match (&a.data, &b.data) {
        (TensorData::Float(x), TensorData::Float(y)) => {
            let f: &dyn Fn(f64, f64) -> f64 = match op {
                Op::Add => &|p, q| p + q,
                Op::Sub => &|p, q| p - q,
                Op::Mul => &|p, q| p * q,
                Op::Div => &|p, q| p / q,
                Op::Pow => &f64::powf,
                Op::Max => &max_nan,
                Op::Min => &min_nan,
                Op::Mod => &python_mod_f,
                Op::Fmod => &|p, q| p % q,
                _ => return Err(format!("internal error: `{name}` on floats")),
            };
            Ok(float_tensor(a.dtype, out_shape.clone(), zb(x, y, f)?))
        }
        (TensorData::Float(x), TensorData::Int(y)) if matches!(op, Op::Pow) => {
            let v = zip_broadcast(x, &a.shape, y, &b.shape, &out_shape, |p, q| p.powf(q as f64))?;
            Ok(float_tensor(a.dtype, out_shape.clone(), v))
        }
        (TensorData::Int(x), TensorData::Float(y)) if matches!(op, Op::Pow) => {
            let dt = a.dtype;
            let v = zip_broadcast(x, &a.shape, y, &b.shape, &out_shape, |p, q| float_to_int((p as f64).powf(q), dt))?;
            Ok(int_tensor(a.dtype, out_shape.clone(), v))
        }
        (TensorData::Int(x), TensorData::Int(y)) => {
            let out_n = super::common::numel(&out_shape)?;
            if matches!(op, Op::Div | Op::Mod | Op::Fmod) && out_n > 0 && y.contains(&0) {
                return Err(format!("integer `{name}` by zero"));
            }
            if matches!(op, Op::Pow) {
                let v = zip_broadcast(x, &a.shape, y, &b.shape, &out_shape, int_pow)?;
                let v: Vec<i64> = v.into_iter().collect::<OpResult<_>>()?;
                return Ok(int_tensor(a.dtype, out_shape.clone(), v));
            }
            let f: &dyn Fn(i64, i64) -> i64 = match op {
                Op::Add => &i64::wrapping_add,
                Op::Sub => &i64::wrapping_sub,
                Op::Mul => &i64::wrapping_mul,
                Op::Div => &|p, q| if q == 0 { 0 } else { p.wrapping_div(q) },
                Op::Max => &|p: i64, q| p.max(q),
                Op::Min => &|p: i64, q| p.min(q),
                Op::Mod => &|p, q| if q == 0 { 0 } else { python_mod_i(p, q) },
                Op::Fmod => &|p, q| if q == 0 { 0 } else { p.wrapping_rem(q) },
                _ => return Err(format!("internal error: `{name}` on integers")),
            };
            Ok(int_tensor(a.dtype, out_shape.clone(), zi(x, y, f)?))
        }
        _ => Err(format!("`{name}` needs operands of one dtype, found {} and {}", a.dtype, b.dtype)),
    }
}

/// `where cond, a, b`.
pub(crate) fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    let c = super::common::bools(cond, "the condition of `where`")?;
    if a.dtype != b.dtype {
        return Err(format!("`where` needs both branches of one dtype, found {} and {}", a.dtype, b.dtype));
    }
    let shape = broadcast_shapes(&broadcast_shapes(&cond.shape, &a.shape)?, &b.shape)?;
    let n = super::common::numel(&shape)?;
    let ic = OffsetIter::new(&shape, &broadcast_strides(&cond.shape, &shape)?, 0);
    let ia = OffsetIter::new(&shape, &broadcast_strides(&a.shape, &shape)?, 0);
    let ib = OffsetIter::new(&shape, &broadcast_strides(&b.shape, &shape)?, 0);
    fn pick<T: Copy>(
        c: &[i64],
        x: &[T],
        y: &[T],
        offs: impl Iterator<Item = ((usize, usize), usize)>,
        n: usize,
    ) -> OpResult<Vec<T>> {
        let mut out = vec_with_capacity(n)?;
        for ((oc, oa), ob) in offs {
            let v = if c.get(oc).copied().unwrap_or(0) != 0 { x.get(oa) } else { y.get(ob) };
            out.push(*v.ok_or("internal error: where offset out of range")?);
        }
        Ok(out)
    }
    let offs = ic.zip(ia).zip(ib);
    Ok(match (&a.data, &b.data) {
        (TensorData::Float(x), TensorData::Float(y)) => float_tensor(a.dtype, shape, pick(c, x, y, offs, n)?),
        (TensorData::Int(x), TensorData::Int(y)) => int_tensor(a.dtype, shape, pick(c, x, y, offs, n)?),
        _ => return Err("`where`: branch data kinds differ".into()),
    })
}

/// The comparison `op` (one of `equal`, `less`, `less_equal`, `greater`, `greater_equal`)
/// on two elements; NaN compares false, as in IEEE 754.
fn compare<T: PartialOrd>(op: &Op, p: T, q: T) -> bool {
    match op {
        Op::Equal => p == q,
        Op::Less => p < q,
        Op::LessEqual => p <= q,
        Op::Greater => p > q,
        _ => p >= q,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::*;

    fn un(op: Op, x: &Tensor) -> Vec<f64> {
        unary(&op, x).unwrap().to_f64_vec()
    }

    #[test]
    fn erf_matches_reference_values() {
        // Reference values from Python's math.erf / math.erfc (correctly rounded libm).
        let cases = [
            (0.0, 0.0),
            (1e-10, 1.1283791670955126e-10),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (2.4999, 0.9995928300996666),
            (2.5, 0.999593047982555),
            (3.0, 0.9999779095030014),
            (4.0, 0.9999999845827421),
            (6.5, 1.0),
        ];
        for (x, e) in cases {
            let r = erf(x);
            assert!((r - e).abs() <= 1e-15 * e.abs() || r == e, "erf({x}) = {r:e}, expected {e:e}");
            assert_eq!(erf(-x), -r);
        }
        // erfc accuracy in the tail.
        let ec = erfc_continued_fraction(3.0);
        assert!((ec - 2.2090496998585438e-05).abs() < 1e-15 * 2.3e-5, "{ec:e}");
        assert!(erf(f64::NAN).is_nan());
        assert_eq!(erf(f64::INFINITY), 1.0);
    }

    #[test]
    fn unary_float_ops() {
        let x = f64t(&[5], &[-2.5, -0.5, 0.0, 0.5, 2.5]);
        assert_eq!(un(Op::Round, &x), vec![-2.0, -0.0, 0.0, 0.0, 2.0]);
        assert_eq!(un(Op::Round, &f64t(&[3], &[1.5, 3.5, -1.5])), vec![2.0, 4.0, -2.0]);
        assert_eq!(un(Op::Floor, &x), vec![-3.0, -1.0, 0.0, 0.0, 2.0]);
        assert_eq!(un(Op::Ceil, &x), vec![-2.0, -0.0, 0.0, 1.0, 3.0]);
        assert_eq!(un(Op::Sign, &f64t(&[4], &[-3.0, 0.0, 2.0, f64::NAN]))[..3], [-1.0, 0.0, 1.0]);
        assert_eq!(un(Op::Relu, &x), vec![0.0, 0.0, 0.0, 0.5, 2.5]);
        assert_eq!(un(Op::LeakyRelu { alpha: 0.1 }, &x), vec![-0.25, -0.05, 0.0, 0.5, 2.5]);
        assert_eq!(un(Op::Clip { min: Some(-1.0), max: None }, &x), vec![-1.0, -0.5, 0.0, 0.5, 2.5]);
        assert_eq!(un(Op::Clip { min: None, max: Some(0.0) }, &x), vec![-2.5, -0.5, 0.0, 0.0, 0.0]);
        assert_close(&un(Op::Sigmoid, &f64t(&[3], &[0.0, 800.0, -800.0])), &[0.5, 1.0, 0.0], 0.0);
        assert_close(
            &un(Op::Softplus, &f64t(&[3], &[0.0, 800.0, -800.0])),
            &[std::f64::consts::LN_2, 800.0, 0.0],
            1e-15,
        );
        assert_close(&un(Op::Silu, &f64t(&[1], &[1.0])), &[0.7310585786300049], 1e-15);
        assert_close(&un(Op::Rsqrt, &f64t(&[1], &[4.0])), &[0.5], 0.0);
        assert_close(
            &un(Op::Gelu { approximate: GeluApproximation::None }, &f64t(&[2], &[1.0, -1.0])),
            &[0.8413447460685429, -0.15865525393145707],
            1e-15,
        );
        assert_close(
            &un(Op::Gelu { approximate: GeluApproximation::Tanh }, &f64t(&[1], &[1.0])),
            &[0.8411919906082768],
            1e-15,
        );
        // f32 results are rounded to f32.
        let r = un(Op::Exp, &f32t(&[1], &[1.0]))[0];
        assert_eq!(r, std::f64::consts::E as f32 as f64);
        assert!(unary(&Op::Sqrt, &i64t(&[1], &[4])).unwrap_err().contains("float"));
        assert!(unary(&Op::Not, &f32t(&[1], &[1.0])).is_err());
        let nan = unary(&Op::IsNan, &f32t(&[2], &[f64::NAN, 1.0])).unwrap();
        assert_eq!((nan.dtype, nan.to_i64_vec()), (DType::Bool, vec![1, 0]));
    }

    #[test]
    fn unary_int_ops_and_casts() {
        let x = Tensor::from_i64(DType::I8, vec![4], vec![-128, -3, 0, 5]).unwrap();
        assert_eq!(unary(&Op::Neg, &x).unwrap().to_i64_vec(), vec![-128, 3, 0, -5]);
        assert_eq!(unary(&Op::Abs, &x).unwrap().to_i64_vec(), vec![-128, 3, 0, 5]);
        assert_eq!(unary(&Op::Sign, &x).unwrap().to_i64_vec(), vec![-1, -1, 0, 1]);
        assert_eq!(unary(&Op::Clip { min: Some(-2.5), max: Some(4.0) }, &x).unwrap().to_i64_vec(), vec![-2, -2, 0, 4]);
        let f = f64t(&[6], &[2.7, -2.7, f64::NAN, 1e30, 300.0, 0.0]);
        assert_eq!(cast(&f, DType::I64).unwrap().to_i64_vec(), vec![2, -2, 0, i64::MAX, 300, 0]);
        assert_eq!(cast(&f, DType::I8).unwrap().to_i64_vec(), vec![2, -2, 0, -1, 44, 0]);
        assert_eq!(cast(&f, DType::Bool).unwrap().to_i64_vec(), vec![1, 1, 1, 1, 1, 0]);
        assert_eq!(cast(&boolt(&[2], &[true, false]), DType::F32).unwrap().to_f64_vec(), vec![1.0, 0.0]);
        assert_eq!(cast(&i64t(&[2], &[257, -1]), DType::U8).unwrap().to_i64_vec(), vec![1, 255]);
        assert_eq!(
            cast(&f64t(&[1], &[0.1]), DType::F16).unwrap().to_f64_vec(),
            vec![half::f16::from_f64(0.1).to_f64()]
        );
        assert!(cast(&f64t(&[1], &[0.1]), DType::Q4_0).is_err(), "last dim not a multiple of 32");
        let q = cast(&f64t(&[2, 32], &[0.25; 64]), DType::Q8_0).unwrap();
        assert_eq!(q.dtype, DType::Q8_0);
        assert!(q.to_f64_vec().iter().all(|&v| (v - 0.25).abs() < 1e-3));
        assert!(cast(&i64t(&[32], &[1; 32]), DType::Q8_0).is_err(), "integers are not quantized");
    }

    #[test]
    fn binary_broadcast_and_semantics() {
        let a = f64t(&[2, 1], &[1.0, 2.0]);
        let b = f64t(&[3], &[10.0, 20.0, 30.0]);
        let r = binary(&Op::Add, &a, &b).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2, 3], vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]));
        assert!(binary(&Op::Add, &f64t(&[2], &[0.0; 2]), &f64t(&[3], &[0.0; 3])).is_err());
        let m = |op: Op, x: f64, y: f64| binary(&op, &f64t(&[], &[x]), &f64t(&[], &[y])).unwrap().to_f64_vec()[0];
        assert_eq!(m(Op::Mod, -7.0, 3.0), 2.0);
        assert_eq!(m(Op::Mod, 7.0, -3.0), -2.0);
        assert_eq!(m(Op::Fmod, -7.0, 3.0), -1.0);
        assert!(m(Op::Max, f64::NAN, 1.0).is_nan());
        assert!(m(Op::Min, 1.0, f64::NAN).is_nan());
        assert_eq!(m(Op::Pow, 2.0, 10.0), 1024.0);
        let i = |op: Op, x: i64, y: i64| binary(&op, &i64t(&[], &[x]), &i64t(&[], &[y])).map(|t| t.to_i64_vec()[0]);
        assert_eq!(i(Op::Div, -7, 2), Ok(-3));
        assert_eq!(i(Op::Mod, -7, 2), Ok(1));
        assert_eq!(i(Op::Fmod, -7, 2), Ok(-1));
        assert_eq!(i(Op::Pow, 3, 4), Ok(81));
        assert_eq!(i(Op::Pow, 3, -1), Ok(0));
        assert_eq!(i(Op::Add, i64::MAX, 1), Ok(i64::MIN));
        assert!(i(Op::Div, 1, 0).unwrap_err().contains("by zero"));
        assert!(i(Op::Mod, 1, 0).is_err());
        let i8s = |v: &[i64]| Tensor::from_i64(DType::I8, vec![v.len()], v.to_vec()).unwrap();
        assert_eq!(binary(&Op::Add, &i8s(&[100]), &i8s(&[100])).unwrap().to_i64_vec(), vec![-56]);
        // Mixed-dtype pow: float base with integer exponent.
        assert_eq!(binary(&Op::Pow, &f32t(&[1], &[2.0]), &i64t(&[1], &[3])).unwrap().to_f64_vec(), vec![8.0]);
        assert!(binary(&Op::Add, &f32t(&[1], &[2.0]), &i64t(&[1], &[3])).unwrap_err().contains("one dtype"));
        // Comparisons and logic.
        let c = binary(&Op::Less, &f64t(&[3], &[1.0, f64::NAN, 3.0]), &f64t(&[], &[2.0])).unwrap();
        assert_eq!((c.dtype, c.to_i64_vec()), (DType::Bool, vec![1, 0, 0]));
        let l = binary(&Op::Xor, &boolt(&[2], &[true, false]), &boolt(&[2, 1], &[true, false])).unwrap();
        assert_eq!(l.to_i64_vec(), vec![0, 1, 1, 0]);
        assert!(binary(&Op::And, &i64t(&[1], &[1]), &i64t(&[1], &[1])).is_err());
        assert!(binary(&Op::Add, &boolt(&[1], &[true]), &boolt(&[1], &[true])).is_err());
    }

    #[test]
    fn where_broadcasts_three_ways() {
        let c = boolt(&[2, 1], &[true, false]);
        let r = where_(&c, &f64t(&[3], &[1.0, 2.0, 3.0]), &f64t(&[], &[0.0])).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2, 3], vec![1.0, 2.0, 3.0, 0.0, 0.0, 0.0]));
        assert!(where_(&f64t(&[1], &[1.0]), &f64t(&[1], &[1.0]), &f64t(&[1], &[1.0])).is_err());
    }
}
