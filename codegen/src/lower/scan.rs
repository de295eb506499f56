//! The *scan template*: `cumsum` (ONNX CumSum with `exclusive` and `reverse`) as a prefix
//! sum — O(n) per row, not the O(n²) per-element reduction the coordinate template would
//! build.
//!
//! With `x: [outer…, n, inner…]` and the scan along `n`, the *rows* are the
//! `outer·inner` lines through the tensor along the axis. The parallel loop walks rows in
//! tiles of [`ROW_TILE`]; each row runs one sequential loop along the axis carrying a mutable
//! local accumulator ([`Stmt::Assign`]):
//!
//! ```text
//! let base = (row / inner)·n·inner + row % inner      // first element of the row
//! let acc = 0
//! for k in 0..n { pos = base + k·inner   (reverse: base + (n-1-k)·inner)
//!     inclusive: acc := acc + x[pos]; y[pos] = acc
//!     exclusive: let v = x[pos]; y[pos] = acc; acc := acc + v }
//! ```
//!
//! The accumulator has the element type (generic over [`ScalarType`]; `bool` is refused), so
//! f32 sums round per step as f32 (the interpreter sums in f64: results agree within f32
//! rounding of the running sum) and integer sums wrap like the interpreter's i64.

use super::builder::{axis_of, size_expr, unsupported, zero, BResult, KernelBuilder};
use crate::kernel::*;
use ferrumc_ir::{Function, Op, OpId, ValueId};

/// Rows per parallel iteration.
pub const ROW_TILE: u32 = 16;

/// Lower the single-op group `cumsum` (op `op`) to a scan kernel named `name`.
pub(crate) fn cumsum_template(f: &Function, op: OpId, name: &str) -> BResult<(Kernel, Vec<ValueId>)> {
    let d = f.op(op).ok_or_else(|| unsupported("cumsum", "erased op"))?;
    let Op::CumSum { axis, exclusive, reverse } = &d.op else {
        return Err(unsupported(d.op.name(), "not a cumsum"));
    };
    let (x, y) = (d.operands[0], d.results[0]);
    let mut g = KernelBuilder::new(f);
    let ty = g.scalar(x, "cumsum")?;
    if ty == ScalarType::Bool || g.scalar(y, "cumsum")? != ty {
        return Err(unsupported("cumsum", "a numeric operand and a result of its dtype"));
    }
    let shape = f.ty(x).shape.clone();
    let a = axis_of(*axis, shape.len(), "cumsum")?;
    let outer = g.product(&shape[..a], "cumsum")?;
    let n = g.size(&shape[a], "cumsum")?;
    let inner = g.product(&shape[a + 1..], "cumsum")?;
    let xb = g.buffer(x, BufferRole::Input);
    let yb = g.buffer(y, BufferRole::Output);

    let r = g.var();
    let k = g.var();
    let mut row_body = Vec::new();
    let row = Expr::Index(IndexExpr::var(Var::PARALLEL, Size::constant(1)).plus_var(r, &Size::constant(1)));
    let base = if inner.as_constant() == Some(1) {
        Expr::binary(BinaryOp::Mul, row, size_expr(&n))
    } else {
        let row = g.bind(ScalarType::I64, row, &mut row_body);
        let o = g.bind(ScalarType::I64, Expr::binary(BinaryOp::Div, row.clone(), size_expr(&inner)), &mut row_body);
        let i = Expr::binary(BinaryOp::Sub, row, Expr::binary(BinaryOp::Mul, o.clone(), size_expr(&inner)));
        Expr::binary(BinaryOp::Add, Expr::binary(BinaryOp::Mul, o, size_expr(&n.mul(&inner))), i)
    };
    let base = g.bind(ScalarType::I64, base, &mut row_body);
    let acc = g.local(ty);
    row_body.push(Stmt::Let { local: acc, value: zero(ty) });
    // Position along the axis: k·inner, or (n-1-k)·inner walking backwards.
    let pos = if *reverse {
        IndexExpr::var(k, inner.mul(&Size::constant(-1))).plus_offset(&n.add(&Size::constant(-1)).mul(&inner))
    } else {
        IndexExpr::var(k, inner.clone())
    };
    let load = Expr::load_at(xb, base.clone(), pos.clone());
    let sum = |v: Expr| Expr::binary(BinaryOp::Add, Expr::Local(acc), v);
    let mut step = Vec::new();
    if *exclusive {
        let v = g.bind(ty, load, &mut step);
        step.push(Stmt::StoreAt { buffer: yb, base: base.clone(), index: pos.clone(), value: Expr::Local(acc) });
        step.push(Stmt::Assign { local: acc, value: sum(v) });
    } else {
        step.push(Stmt::Assign { local: acc, value: sum(load) });
        step.push(Stmt::StoreAt { buffer: yb, base, index: pos, value: Expr::Local(acc) });
    }
    row_body.push(Stmt::Loop { var: k, extent: Extent::Size(n), body: step });
    let body = vec![Stmt::Loop { var: r, extent: Extent::ParallelTile, body: row_body }];
    let parallel = LoopExtent { extent: outer.mul(&inner), tile: ROW_TILE };
    Ok(g.finish(name, parallel, body))
}
