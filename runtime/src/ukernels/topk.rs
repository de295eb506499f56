//! The `topk` array helper ([`crate::abi::TopKFn`]): the `k` best elements of one strided
//! lane, any numeric element type.
//!
//! Selection, not a full sort: the lane's positions are partitioned around the k-th best with
//! `select_nth_unstable_by` (O(n) on average) and only the first `k` are sorted
//! (O(k log k)), so a lane costs O(n + k log k) — a kernel-form formulation without arrays
//! or data-dependent control flow would have to rank every element against every other
//! (O(n²)). The order is total (key, then position), so the result is deterministic and
//! equal elements keep the lower position first, as the interpreter's stable sort does.
//!
//! One implementation serves every tier: the work is comparisons and moves, not arithmetic
//! SIMD would speed up.

use crate::abi::elem_code;

/// An order-preserving integer key of a float: equal floats (`-0.0` and `0.0` too) get equal
/// keys, every NaN the largest key.
fn float_key(x: f64) -> i64 {
    if x.is_nan() {
        return i64::MAX;
    }
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits() as i64;
    // Negative floats order backwards in their bit patterns: flip all but the sign bit.
    if bits < 0 {
        bits ^ i64::MAX
    } else {
        bits
    }
}

/// Bytes per element of `elem`, or `None` for an unknown code.
fn elem_bytes(elem: u32) -> Option<usize> {
    Some(match elem {
        elem_code::F32 | elem_code::I32 => 4,
        elem_code::F64 | elem_code::I64 => 8,
        elem_code::I8 | elem_code::U8 => 1,
        elem_code::F16 | elem_code::BF16 => 2,
        _ => return None,
    })
}

/// The key of the element at `p` (`elem` known): integers as they are, floats through
/// [`float_key`], so one integer comparison orders any element type.
unsafe fn key_at(p: *const u8, elem: u32) -> i64 {
    unsafe {
        match elem {
            elem_code::F32 => float_key(f64::from(p.cast::<f32>().read_unaligned())),
            elem_code::F64 => float_key(p.cast::<f64>().read_unaligned()),
            elem_code::I64 => p.cast::<i64>().read_unaligned(),
            elem_code::I32 => i64::from(p.cast::<i32>().read_unaligned()),
            elem_code::I8 => i64::from(p.cast::<i8>().read_unaligned()),
            elem_code::U8 => i64::from(p.read()),
            elem_code::F16 => float_key(half::f16::from_bits(p.cast::<u16>().read_unaligned()).to_f64()),
            _ => float_key(half::bf16::from_bits(p.cast::<u16>().read_unaligned()).to_f64()),
        }
    }
}

/// See [`crate::abi::TopKFn`].
///
/// # Safety
/// `x` must be readable at `n` elements of stride `x_stride`, `values` and `indices` writable
/// at `min(k, n)` elements of their strides.
pub unsafe extern "C" fn topk(
    x: *const u8,
    n: u64,
    x_stride: u64,
    k: u64,
    elem: u32,
    largest: u32,
    values: *mut u8,
    v_stride: u64,
    indices: *mut i64,
    i_stride: u64,
) {
    let Some(bytes) = elem_bytes(elem) else { return };
    let (Ok(n), Ok(k)) = (usize::try_from(n), usize::try_from(k)) else { return };
    let k = k.min(n);
    if k == 0 {
        return;
    }
    let (xs, vs, is) = (x_stride as usize * bytes, v_stride as usize * bytes, i_stride as usize);
    // SAFETY (all blocks below): positions < n and outputs < k lie in the caller's buffers.
    let mut lane: Vec<(i64, usize)> = (0..n).map(|i| (unsafe { key_at(x.add(i * xs), elem) }, i)).collect();
    let better = |a: &(i64, usize), b: &(i64, usize)| {
        let by_key = if largest != 0 { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) };
        by_key.then(a.1.cmp(&b.1))
    };
    if k < n {
        lane.select_nth_unstable_by(k - 1, better);
    }
    let best = &mut lane[..k];
    best.sort_unstable_by(better);
    for (j, &(_, i)) in best.iter().enumerate() {
        unsafe {
            std::ptr::copy_nonoverlapping(x.add(i * xs), values.add(j * vs), bytes);
            indices.add(j * is).write_unaligned(i as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    /// Reference: a stable sort of the whole lane.
    fn reference(x: &[f32], k: usize, largest: bool) -> (Vec<f32>, Vec<i64>) {
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&p, &q| {
            let (a, b) = (x[p], x[q]);
            let c = match (a.is_nan(), b.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            };
            if largest {
                c.reverse()
            } else {
                c
            }
        });
        order.truncate(k);
        (order.iter().map(|&i| x[i]).collect(), order.iter().map(|&i| i as i64).collect())
    }

    #[test]
    fn matches_a_stable_sort_with_ties_and_nan() {
        let mut seed = 7u32;
        for n in [1usize, 2, 5, 17, 64, 300] {
            let x: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    match seed >> 28 {
                        0 => f32::NAN,
                        1 => -0.0,
                        2 => f32::NEG_INFINITY,
                        v => (v % 5) as f32 - 2.0 + if v % 3 == 0 { 1e-30 } else { 0.0 },
                    }
                })
                .collect();
            for k in [1, n / 2, n] {
                for largest in [true, false] {
                    let (mut v, mut i) = (vec![0f32; k.max(1)], vec![0i64; k.max(1)]);
                    unsafe {
                        topk(
                            x.as_ptr().cast(),
                            n as u64,
                            1,
                            k as u64,
                            elem_code::F32,
                            u32::from(largest),
                            v.as_mut_ptr().cast(),
                            1,
                            i.as_mut_ptr(),
                            1,
                        )
                    };
                    let (rv, ri) = reference(&x, k, largest);
                    assert_eq!(&i[..k], ri.as_slice(), "n={n} k={k} largest={largest}");
                    let same = v[..k].iter().zip(&rv).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "n={n} k={k} largest={largest}");
                }
            }
        }
    }

    #[test]
    fn strided_integer_lane() {
        // Column 1 of a [4, 2] i64 matrix: 9, 3, 9, -1.
        let x: [i64; 8] = [0, 9, 0, 3, 0, 9, 0, -1];
        let (mut v, mut i) = ([0i64; 6], [0i64; 6]);
        unsafe {
            topk(x[1..].as_ptr().cast(), 4, 2, 3, elem_code::I64, 1, v.as_mut_ptr().cast(), 2, i.as_mut_ptr(), 2)
        };
        assert_eq!((v[0], v[2], v[4]), (9, 9, 3));
        assert_eq!((i[0], i[2], i[4]), (0, 2, 1));
    }
}
