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
use std::cmp::Ordering;

/// A comparable key: floats by value with NaN above everything, integers exactly.
#[derive(Clone, Copy)]
enum Key {
    Float(f64),
    Int(i64),
}

fn cmp_keys(a: Key, b: Key) -> Ordering {
    match (a, b) {
        (Key::Int(x), Key::Int(y)) => x.cmp(&y),
        (Key::Float(x), Key::Float(y)) => match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        },
        // Never mixed within one lane.
        (Key::Int(_), Key::Float(_)) => Ordering::Less,
        (Key::Float(_), Key::Int(_)) => Ordering::Greater,
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

/// The key of the element at `p` (`elem` known).
unsafe fn key_at(p: *const u8, elem: u32) -> Key {
    unsafe {
        match elem {
            elem_code::F32 => Key::Float(f64::from(p.cast::<f32>().read_unaligned())),
            elem_code::F64 => Key::Float(p.cast::<f64>().read_unaligned()),
            elem_code::I64 => Key::Int(p.cast::<i64>().read_unaligned()),
            elem_code::I32 => Key::Int(i64::from(p.cast::<i32>().read_unaligned())),
            elem_code::I8 => Key::Int(i64::from(p.cast::<i8>().read_unaligned())),
            elem_code::U8 => Key::Int(i64::from(p.read())),
            elem_code::F16 => Key::Float(half::f16::from_bits(p.cast::<u16>().read_unaligned()).to_f64()),
            _ => Key::Float(half::bf16::from_bits(p.cast::<u16>().read_unaligned()).to_f64()),
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
    let mut lane: Vec<(Key, u64)> = (0..n).map(|i| (unsafe { key_at(x.add(i * xs), elem) }, i as u64)).collect();
    let better = |a: &(Key, u64), b: &(Key, u64)| {
        let by_key = cmp_keys(a.0, b.0);
        let by_key = if largest != 0 { by_key.reverse() } else { by_key };
        by_key.then(a.1.cmp(&b.1))
    };
    if k < n {
        lane.select_nth_unstable_by(k - 1, better);
    }
    let best = &mut lane[..k];
    best.sort_unstable_by(better);
    for (j, &(_, i)) in best.iter().enumerate() {
        unsafe {
            std::ptr::copy_nonoverlapping(x.add(i as usize * xs), values.add(j * vs), bytes);
            indices.add(j * is).write_unaligned(i as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: a stable sort of the whole lane.
    fn reference(x: &[f32], k: usize, largest: bool) -> (Vec<f32>, Vec<i64>) {
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&p, &q| {
            let c = cmp_keys(Key::Float(f64::from(x[p])), Key::Float(f64::from(x[q])));
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
                        v => (v % 5) as f32 - 2.0,
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
