//! Scalar f64 math for kernels that compute in f64 ([`crate::abi::ScalarMathF64`]): thin
//! `extern "C"` wrappers over Rust's `f64` methods, plus a double-precision `erf` (the std
//! one is not stable), so f64 kernels get f64-accurate transcendentals.

use crate::abi::ScalarMathF64;

/// The table every tier hands out.
pub const SCALAR_MATH_F64: ScalarMathF64 = ScalarMathF64 { exp, log, tanh, erf, sin, cos, pow, fmod };

pub extern "C" fn exp(x: f64) -> f64 {
    x.exp()
}

pub extern "C" fn log(x: f64) -> f64 {
    x.ln()
}

pub extern "C" fn tanh(x: f64) -> f64 {
    x.tanh()
}

pub extern "C" fn sin(x: f64) -> f64 {
    x.sin()
}

pub extern "C" fn cos(x: f64) -> f64 {
    x.cos()
}

pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    x.powf(y)
}

/// C's `fmod`: the remainder with the dividend's sign (exact).
pub extern "C" fn fmod(x: f64, y: f64) -> f64 {
    x % y
}

/// The Gauss error function (relative error about 1e-15): the Maclaurin-type series
/// `2/√π · e^{-x²} · Σ (2x²)ⁿ x / (1·3·…·(2n+1))` for `|x| < 2.5` (positive terms, no
/// cancellation), the Laplace continued fraction of `erfc` for `2.5 ≤ |x| < 6`, ±1 beyond.
pub extern "C" fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        let x2 = ax * ax;
        let (mut term, mut sum) = (ax, ax);
        for n in 1..200 {
            term *= 2.0 * x2 / f64::from(2 * n + 1);
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        std::f64::consts::FRAC_2_SQRT_PI * (-x2).exp() * sum
    } else if ax < 6.0 {
        // erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), bottom-up.
        let mut t = ax;
        for n in (1..=120).rev() {
            t = ax + f64::from(n) * 0.5 / t;
        }
        1.0 - (-ax * ax).exp() / (std::f64::consts::PI.sqrt() * t)
    } else {
        1.0
    };
    r.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_reference_values() {
        // Python's math.erf (correctly rounded libm).
        for (x, e) in [
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (4.0, 0.9999999845827421),
        ] {
            assert!((erf(x) - e).abs() <= 2e-15 * e, "erf({x}) = {}", erf(x));
            assert_eq!(erf(-x), -erf(x));
        }
        assert!(erf(f64::NAN).is_nan());
        assert_eq!(erf(f64::INFINITY), 1.0);
    }

    #[test]
    fn wrappers_are_std() {
        assert_eq!(fmod(-7.5, 2.0), -1.5);
        assert_eq!(pow(2.0, 10.0), 1024.0);
        assert_eq!(exp(1.0), std::f64::consts::E);
        assert_eq!(log(std::f64::consts::E), 1.0);
    }
}
