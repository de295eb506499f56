//! The *scatter template*: `scatter_nd` (ONNX ScatterND, reduction none/add/mul/max/min).
//!
//! With `data: [P…, S…]` (the first `m` dims `P` are addressed by the index tuples, the rest
//! `S` form one *slice*), `indices: [T…, m]` and `updates: [T…, S…]`, the output is a copy of
//! `data` with update slice `t` combined into the slice that tuple `t` addresses, for
//! `t = 0, 1, …` in order — so duplicate tuples accumulate (add/mul/max/min) or the last one
//! wins (none), exactly as the interpreter applies them.
//!
//! The parallel loop walks the slice's elements (`S`) in tiles of [`SLICE_TILE`]: every
//! iteration first copies its columns of `data` for all `P` positions, then applies every
//! update to those columns in order. Iterations own disjoint columns, so threads never race
//! and each element still sees the updates in ONNX order. (Element-wise indices, `m` = rank,
//! have a one-element slice: one iteration, sequential.)
//!
//! Index tuples are read with plain loads; each index wraps once when negative (ONNX), and the
//! tuple is *valid* when every wrapped index lies in `[0, dim)` — the
//! interpreter reports anything else as an error. The kernel clamps every index into range
//! before forming the address ([`Stmt::StoreAt`]/[`Expr::LoadAt`] base), so no access leaves
//! the output buffer, and an invalid tuple writes back the value already there: **an
//! out-of-range index tuple leaves the output unchanged** (its update is dropped).

use super::builder::{size_expr, unsupported, BResult, KernelBuilder};
use crate::kernel::*;
use ferrumc_ir::op::ScatterReduction;
use ferrumc_ir::{Function, Op, OpId, ValueId};

/// Slice elements per parallel iteration.
pub const SLICE_TILE: u32 = 64;

/// Lower the single-op group `scatter_nd` (op `op`) to a kernel named `name`.
pub(crate) fn scatter_nd_template(f: &Function, op: OpId, name: &str) -> BResult<(Kernel, Vec<ValueId>)> {
    const OP: &str = "scatter_nd";
    let d = f.op(op).ok_or_else(|| unsupported(OP, "erased op"))?;
    let Op::ScatterNd { reduction } = &d.op else {
        return Err(unsupported(d.op.name(), "not a scatter_nd"));
    };
    let (data, indices, updates, y) = (d.operands[0], d.operands[1], d.operands[2], d.results[0]);
    let mut g = KernelBuilder::new(f);
    let ty = g.scalar(data, OP)?;
    if g.scalar(updates, OP)? != ty || g.scalar(y, OP)? != ty {
        return Err(unsupported(OP, "data, updates and result must share a dtype"));
    }
    if g.scalar(indices, OP)? != ScalarType::I64 {
        return Err(unsupported(OP, "indices must be i64"));
    }
    if ty == ScalarType::Bool && *reduction != ScatterReduction::None {
        return Err(unsupported(OP, "a reduction over bool data"));
    }
    let dshape = f.ty(data).shape.clone();
    let ishape = f.ty(indices).shape.clone();
    let Some((m_dim, tuple_dims)) = ishape.split_last() else {
        return Err(unsupported(OP, "indices of rank 0"));
    };
    let m = m_dim.as_fixed().and_then(|m| usize::try_from(m).ok()).filter(|&m| m <= dshape.len());
    let m = m.ok_or_else(|| unsupported(OP, "the index tuple length must be static and at most the data rank"))?;
    let tuples = g.product(tuple_dims, OP)?;
    let prefix = g.product(&dshape[..m], OP)?;
    let slice = g.product(&dshape[m..], OP)?;
    let xb = g.buffer(data, BufferRole::Input);
    let ib = g.buffer(indices, BufferRole::Input);
    let ub = g.buffer(updates, BufferRole::Input);
    let yb = g.buffer(y, BufferRole::Output);
    let column = |e: Var| IndexExpr::var(Var::PARALLEL, Size::constant(1)).plus_var(e, &Size::constant(1));

    // 1. Copy this tile's columns of `data`.
    let (pre, e) = (g.var(), g.var());
    let at = column(e).plus_var(pre, &slice);
    let copy = Stmt::Loop {
        var: pre,
        extent: Extent::Size(prefix),
        body: vec![Stmt::Loop {
            var: e,
            extent: Extent::ParallelTile,
            body: vec![Stmt::Store { buffer: yb, index: at.clone(), value: Expr::Load { buffer: xb, index: at } }],
        }],
    };

    // 2. Apply the updates in order.
    let t = g.var();
    let mut per_tuple = Vec::new();
    let mut offset: Option<Expr> = None;
    let mut valid: Option<Expr> = None;
    for (j, dim) in dshape[..m].iter().enumerate() {
        let dim = size_expr(&g.size(dim, OP)?);
        let raw = Expr::Load {
            buffer: ib,
            index: IndexExpr::var(t, Size::constant(m as i64)).plus_offset(&Size::constant(j as i64)),
        };
        let raw = g.bind(ScalarType::I64, raw, &mut per_tuple);
        let negative = Expr::compare(CmpOp::Lt, raw.clone(), Expr::i64(0));
        let wrapped = Expr::select(negative, Expr::binary(BinaryOp::Add, raw.clone(), dim.clone()), raw);
        let wrapped = g.bind(ScalarType::I64, wrapped, &mut per_tuple);
        let in_range = Expr::compare(CmpOp::ULt, wrapped.clone(), dim.clone());
        let clamped = Expr::binary(
            BinaryOp::Max,
            Expr::i64(0),
            Expr::binary(BinaryOp::Min, wrapped, Expr::binary(BinaryOp::Sub, dim.clone(), Expr::i64(1))),
        );
        offset = Some(match offset {
            None => clamped,
            Some(o) => Expr::binary(BinaryOp::Add, Expr::binary(BinaryOp::Mul, o, dim), clamped),
        });
        valid = Some(match valid {
            None => in_range,
            Some(v) => Expr::select(v, in_range, Expr::Const(Const::Bool(false))),
        });
    }
    let offset = offset.unwrap_or(Expr::i64(0));
    let base = g.bind(ScalarType::I64, Expr::binary(BinaryOp::Mul, offset, size_expr(&slice)), &mut per_tuple);
    let valid = match valid {
        Some(v) => g.bind(ScalarType::Bool, v, &mut per_tuple),
        None => Expr::Const(Const::Bool(true)),
    };
    let e2 = g.var();
    let old = Expr::load_at(yb, base.clone(), column(e2));
    let update = Expr::Load { buffer: ub, index: column(e2).plus_var(t, &slice) };
    let combined = match reduction {
        ScatterReduction::None => update,
        ScatterReduction::Add => Expr::binary(BinaryOp::Add, old.clone(), update),
        ScatterReduction::Mul => Expr::binary(BinaryOp::Mul, old.clone(), update),
        ScatterReduction::Max => Expr::binary(BinaryOp::Max, old.clone(), update),
        ScatterReduction::Min => Expr::binary(BinaryOp::Min, old.clone(), update),
    };
    let value = Expr::select(valid, combined, old);
    per_tuple.push(Stmt::Loop {
        var: e2,
        extent: Extent::ParallelTile,
        body: vec![Stmt::StoreAt { buffer: yb, base, index: column(e2), value }],
    });
    let apply = Stmt::Loop { var: t, extent: Extent::Size(tuples), body: per_tuple };
    let parallel = LoopExtent { extent: slice, tile: SLICE_TILE };
    Ok(g.finish(name, parallel, vec![copy, apply]))
}
