//! numpy/ONNX promotion of 1-D `matmul` operands for the lowerings: a 1-D left operand `[k]`
//! is viewed as `[1, k]` and a 1-D right operand `[k]` as `[k, 1]`, the product is computed
//! as an ordinary (batched) matrix product, and the added unit dims are absent from the
//! result. The buffers are not touched — a unit dim changes no element's offset — so only
//! the shapes and the result coordinates are rewritten: the coordinate of each removed dim is
//! pinned to 0.

use crate::kernel::Expr;
use ferrumc_ir::dim::Dim;

/// The operand shapes `a`, `b` with 1-D operands promoted, the result shape `result` with the
/// promoted unit dims put back (`[…batch, m, n]`), and `coords` (of `result`) extended to
/// match.
pub(crate) fn promote_vector_operands(
    a: Vec<Dim>,
    b: Vec<Dim>,
    result: &[Dim],
    coords: &[Expr],
) -> (Vec<Dim>, Vec<Dim>, Vec<Dim>, Vec<Expr>) {
    let (a_vector, b_vector) = (a.len() == 1, b.len() == 1);
    let mut full = result.to_vec();
    let mut at = coords.to_vec();
    if a_vector {
        // The removed `m` sits before `n` (or at the end when `n` was removed too).
        let pos = full.len() - usize::from(!b_vector).min(full.len());
        full.insert(pos, Dim::fixed(1));
        at.insert(pos.min(at.len()), Expr::i64(0));
    }
    if b_vector {
        full.push(Dim::fixed(1));
        at.push(Expr::i64(0));
    }
    let a = if a_vector { vec![Dim::fixed(1), a[0].clone()] } else { a };
    let b = if b_vector { vec![b[0].clone(), Dim::fixed(1)] } else { b };
    (a, b, full, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(v: &[i64]) -> Vec<Dim> {
        v.iter().map(|&d| Dim::fixed(d)).collect()
    }

    #[test]
    fn promotes_and_pins_removed_coordinates() {
        let c = |n: usize| (0..n).map(|k| Expr::i64(10 + k as i64)).collect::<Vec<_>>();
        // [k] · [k]: scalar result.
        let (a, b, r, at) = promote_vector_operands(dims(&[3]), dims(&[3]), &[], &[]);
        assert_eq!((a, b, r), (dims(&[1, 3]), dims(&[3, 1]), dims(&[1, 1])));
        assert_eq!(at, vec![Expr::i64(0), Expr::i64(0)]);
        // [k] · [b, k, n] → [b, n].
        let (a, _, r, at) = promote_vector_operands(dims(&[3]), dims(&[2, 3, 4]), &dims(&[2, 4]), &c(2));
        assert_eq!((a, r), (dims(&[1, 3]), dims(&[2, 1, 4])));
        assert_eq!(at, vec![Expr::i64(10), Expr::i64(0), Expr::i64(11)]);
        // [b, m, k] · [k] → [b, m].
        let (_, b, r, at) = promote_vector_operands(dims(&[2, 5, 3]), dims(&[3]), &dims(&[2, 5]), &c(2));
        assert_eq!((b, r), (dims(&[3, 1]), dims(&[2, 5, 1])));
        assert_eq!(at, vec![Expr::i64(10), Expr::i64(11), Expr::i64(0)]);
    }
}
