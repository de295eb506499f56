//! The *top-k template*: `topk` (values and i64 indices of the `k` largest or smallest
//! elements along an axis, best first, ties by lower index) as one call of the runtime's
//! `topk` helper per lane ([`Stmt::CallTopK`], `abi::TopKFn`).
//!
//! Why a runtime helper and not a kernel-form loop nest: the kernel form has no arrays in
//! registers and no data-dependent control flow, so selecting the best `k` there means ranking
//! every element against every other lane element — O(n²) per lane, and O(n·k) even for an
//! incremental "next best" scan. The helper selects in O(n + k log k) with a partition and a
//! sort of the first `k` (IREE does the same with its ukernels), and takes any numeric element
//! type, so the lowering is dtype-generic.
//!
//! With `x: [outer…, n, inner…]` a *lane* is one line along the axis (`outer·inner` of them,
//! walked by the parallel loop in tiles of [`LANE_TILE`]): lane `l` starts at element
//! `(l / inner)·n·inner + l % inner` of `x` and `(l / inner)·k·inner + l % inner` of the
//! results, with stride `inner` in all three.

use super::builder::{axis_of, size_expr, unsupported, BResult, KernelBuilder};
use crate::kernel::*;
use ferrumc_ir::{Function, Op, OpId, ValueId};

/// Lanes per parallel iteration.
pub const LANE_TILE: u32 = 4;

/// Lower the single-op group `topk` (op `op`) to a kernel named `name`.
pub(crate) fn topk_template(f: &Function, op: OpId, name: &str) -> BResult<(Kernel, Vec<ValueId>)> {
    const OP: &str = "topk";
    let d = f.op(op).ok_or_else(|| unsupported(OP, "erased op"))?;
    let Op::TopK { axis, k, largest, sorted: _ } = &d.op else {
        return Err(unsupported(d.op.name(), "not a topk"));
    };
    let (x, values, indices) = (d.operands[0], d.results[0], d.results[1]);
    let mut g = KernelBuilder::new(f);
    let ty = g.scalar(x, OP)?;
    if ty == ScalarType::Bool || g.scalar(values, OP)? != ty || g.scalar(indices, OP)? != ScalarType::I64 {
        return Err(unsupported(OP, "numeric values of the operand's dtype and i64 indices"));
    }
    let shape = f.ty(x).shape.clone();
    let a = axis_of(*axis, shape.len(), OP)?;
    let outer = g.product(&shape[..a], OP)?;
    let n = g.size(&shape[a], OP)?;
    let inner = g.product(&shape[a + 1..], OP)?;
    let k_dim = f.ty(values).shape.get(a).cloned().ok_or_else(|| unsupported(OP, "result rank"))?;
    let k_size = g.size(&k_dim, OP)?;
    // Sorted output is always produced (ONNX allows any order when `sorted` is false); `k`
    // beyond the axis length is the interpreter's error, refused here.
    if k_size.as_constant() != Some(*k) || n.as_constant().is_some_and(|n| *k > n) || *k < 0 {
        return Err(unsupported(OP, format!("k = {k} does not match the result or the axis")));
    }
    let xb = g.buffer(x, BufferRole::Input);
    let vb = g.buffer(values, BufferRole::Output);
    let ib = g.buffer(indices, BufferRole::Output);

    let r = g.var();
    let mut lane_body = Vec::new();
    let lane = Expr::Index(IndexExpr::var(Var::PARALLEL, Size::constant(1)).plus_var(r, &Size::constant(1)));
    let (x_base, out_base) = if inner.as_constant() == Some(1) {
        let lane = g.bind(ScalarType::I64, lane, &mut lane_body);
        (
            Expr::binary(BinaryOp::Mul, lane.clone(), size_expr(&n)),
            Expr::binary(BinaryOp::Mul, lane, size_expr(&k_size)),
        )
    } else {
        let lane = g.bind(ScalarType::I64, lane, &mut lane_body);
        let o = g.bind(ScalarType::I64, Expr::binary(BinaryOp::Div, lane.clone(), size_expr(&inner)), &mut lane_body);
        let i = Expr::binary(BinaryOp::Sub, lane, Expr::binary(BinaryOp::Mul, o.clone(), size_expr(&inner)));
        let i = g.bind(ScalarType::I64, i, &mut lane_body);
        let start = |len: &Size| {
            Expr::binary(BinaryOp::Add, Expr::binary(BinaryOp::Mul, o.clone(), size_expr(&len.mul(&inner))), i.clone())
        };
        (start(&n), start(&k_size))
    };
    let x_base = g.bind(ScalarType::I64, x_base, &mut lane_body);
    let out_base = g.bind(ScalarType::I64, out_base, &mut lane_body);
    let at = |buffer: u32, base: &Expr| DynRef { buffer, base: Some(base.clone()), index: IndexExpr::default() };
    lane_body.push(Stmt::CallTopK(Box::new(TopKArgs {
        x: at(xb, &x_base),
        n,
        x_stride: inner.clone(),
        k: k_size,
        largest: *largest,
        values: at(vb, &out_base),
        v_stride: inner.clone(),
        indices: at(ib, &out_base),
        i_stride: inner.clone(),
    })));
    let body = vec![Stmt::Loop { var: r, extent: Extent::ParallelTile, body: lane_body }];
    let parallel = LoopExtent { extent: outer.mul(&inner), tile: LANE_TILE };
    Ok(g.finish(name, parallel, body))
}
