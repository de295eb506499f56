//! Comparing tensors against a reference: exact dtype and shape, then elementwise
//! `|actual - expected| <= atol + rtol * |expected|`, with NaN matching NaN and
//! infinities matching exactly.

use ferrumc_ir::Tensor;

/// Tolerances for a comparison; integer and bool tensors always compare exactly.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

/// Compare `actual` with `expected`; the error says where and by how much they differ.
pub fn assert_close(name: &str, actual: &Tensor, expected: &Tensor, tol: Tolerance) -> Result<(), String> {
    if actual.dtype != expected.dtype {
        return Err(format!("{name}: dtype {} but the reference is {}", actual.dtype, expected.dtype));
    }
    if actual.shape != expected.shape {
        return Err(format!("{name}: shape {:?} but the reference is {:?}", actual.shape, expected.shape));
    }
    let exact = !(expected.dtype.is_float() || expected.dtype.is_quantized());
    let (a, e) = (actual.to_f64_vec(), expected.to_f64_vec());
    let mut worst: Option<(usize, f64)> = None;
    let mut mismatches = 0usize;
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        let ok = if y.is_nan() {
            x.is_nan()
        } else if y.is_infinite() || exact {
            x == y
        } else {
            (x - y).abs() <= tol.atol + tol.rtol * y.abs()
        };
        if !ok {
            mismatches += 1;
            let diff = (x - y).abs();
            if worst.is_none_or(|(_, d)| diff > d || diff.is_nan()) {
                worst = Some((i, diff));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, diff)) => Err(format!(
            "{name}: {mismatches} of {} elements differ (rtol {}, atol {}); worst at flat index {i}: got {}, expected {} (|diff| = {diff:e})",
            e.len(),
            tol.rtol,
            tol.atol,
            a[i],
            e[i]
        )),
    }
}

/// The largest absolute difference between two same-shaped tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec().iter().zip(b.to_f64_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}
