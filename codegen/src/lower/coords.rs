//! The *coordinate template*: a general, slower fallback for fusion groups the specialised
//! templates refuse (data movement mixed with elementwise ops, shape arithmetic on `i64`,
//! reductions over any axes, batched matmuls with a 3-D/4-D right operand, softmax and
//! norms on any axis, gathers with any axis, …).
//!
//! Every group output is computed element by element from its coordinates: the flat
//! element index is split into coordinates (`i64` div/rem by the dims), and each op maps
//! the coordinates of its result to those of its operands — broadcasting pins size-1 dims
//! to 0, `transpose` permutes, views re-split the flat index, `slice` scales and offsets,
//! `concat` selects among operands, `gather` reads the index and addresses the table
//! through it — down to loads from the group's input buffers ([`Expr::LoadAt`] with an
//! `i64` base). Reductions (`reduce_*`, `softmax`, `rms_norm`, `layer_norm`, `matmul`,
//! `cumsum`, and `attention` without a cache — any float dtype, e.g. f64, which the attention
//! template leaves out) are loops accumulating into mutable locals, recomputing their operand per
//! element; nothing is materialised between ops, so a group needs no temp buffers.
//!
//! Indices read from buffers (`gather`) wrap negative values once and are then clamped into
//! range, so no load leaves its buffer; every other coordinate is in range by construction
//! (concat branches clamp theirs, since a select evaluates both sides). A buffer of symbolic
//! size that is empty at run time is read at element 0 only (the runtime binds empty
//! tensors to readable zeros).
//!
//! Outputs of one shape share the parallel loop over their elements (tiles of
//! [`ELEMENT_TILE`]); outputs of different shapes are written one after the other by a
//! single parallel iteration.

use crate::kernel::*;
use crate::CodegenError;
use ferrumc_ir::dim::Dim;
use ferrumc_ir::op::GeluApproximation;
use ferrumc_ir::{Function, Op, OpId, ValueId};
use std::collections::{HashMap, HashSet};

/// Elements per parallel iteration.
pub const ELEMENT_TILE: u32 = 64;

type CResult<T> = Result<T, CodegenError>;

/// One step of an accumulation loop: `(generator, accumulator, coordinates, body) → next`.
type StepFn<'s, G> = dyn FnMut(&mut G, Expr, &[Expr], &mut Vec<Stmt>) -> CResult<Expr> + 's;

fn unsupported(op: &str, reason: impl Into<String>) -> CodegenError {
    CodegenError::Unsupported { op: op.to_string(), reason: reason.into() }
}

/// Lower the group made of `ops` (topological order) with the coordinate template.
pub(crate) fn coords_template(f: &Function, ops: &[OpId], name: &str) -> CResult<(Kernel, Vec<ValueId>)> {
    let mut g = Gen {
        f,
        members: ops.iter().copied().collect(),
        dims: Vec::new(),
        buffers: Vec::new(),
        buffer_values: Vec::new(),
        buffer_of: HashMap::new(),
        locals: Vec::new(),
        next_var: 1,
        caches: vec![Vec::new()],
    };
    let outputs = g.outputs(ops);
    if outputs.is_empty() {
        return Err(CodegenError::Invalid("group has no outputs".into()));
    }
    let shapes: Vec<Vec<Dim>> = outputs.iter().map(|o| f.ty(*o).shape.clone()).collect();
    let same = shapes.iter().all(|s| *s == shapes[0]);
    let mut body = Vec::new();
    let parallel = if same {
        let numel = g.product(&shapes[0])?;
        let i = g.fresh_var();
        let flat = Expr::Index(IndexExpr::var(Var::PARALLEL, Size::constant(1)).plus_var(i, &Size::constant(1)));
        let mut inner = Vec::new();
        let coords = g.unflatten(flat, &shapes[0], &mut inner)?;
        for &out in &outputs {
            let value = g.value(out, &coords, &mut inner)?;
            let buffer = g.output_buffer(out)?;
            inner.push(Stmt::Store {
                buffer,
                index: IndexExpr::var(Var::PARALLEL, Size::constant(1)).plus_var(i, &Size::constant(1)),
                value,
            });
        }
        g.caches.pop();
        body.push(Stmt::Loop { var: i, extent: Extent::ParallelTile, body: inner });
        LoopExtent { extent: numel, tile: ELEMENT_TILE }
    } else {
        for (&out, shape) in outputs.iter().zip(&shapes) {
            let numel = g.product(shape)?;
            let i = g.fresh_var();
            g.caches.push(Vec::new());
            let mut inner = Vec::new();
            let coords = g.unflatten(Expr::Index(IndexExpr::var(i, Size::constant(1))), shape, &mut inner)?;
            let value = g.value(out, &coords, &mut inner)?;
            let buffer = g.output_buffer(out)?;
            inner.push(Stmt::Store { buffer, index: IndexExpr::var(i, Size::constant(1)), value });
            g.caches.pop();
            body.push(Stmt::Loop { var: i, extent: Extent::Size(numel), body: inner });
        }
        LoopExtent { extent: Size::constant(1), tile: 1 }
    };
    let kernel = Kernel { name: name.to_string(), buffers: g.buffers, dims: g.dims, parallel, locals: g.locals, body };
    Ok((kernel, g.buffer_values))
}

struct Gen<'a> {
    f: &'a Function,
    members: HashSet<OpId>,
    dims: Vec<String>,
    buffers: Vec<BufferParam>,
    buffer_values: Vec<ValueId>,
    buffer_of: HashMap<ValueId, u32>,
    locals: Vec<ScalarType>,
    next_var: u32,
    /// Per loop scope: values already bound to locals at given coordinates.
    caches: Vec<Vec<(ValueId, Vec<Expr>, Expr)>>,
}

fn i(v: i64) -> Expr {
    Expr::i64(v)
}
fn add(a: Expr, b: Expr) -> Expr {
    Expr::binary(BinaryOp::Add, a, b)
}
fn sub(a: Expr, b: Expr) -> Expr {
    Expr::binary(BinaryOp::Sub, a, b)
}
fn mul(a: Expr, b: Expr) -> Expr {
    Expr::binary(BinaryOp::Mul, a, b)
}
fn max(a: Expr, b: Expr) -> Expr {
    Expr::binary(BinaryOp::Max, a, b)
}
fn min(a: Expr, b: Expr) -> Expr {
    Expr::binary(BinaryOp::Min, a, b)
}
fn cmp(op: CmpOp, a: Expr, b: Expr) -> Expr {
    Expr::compare(op, a, b)
}
fn not(a: Expr) -> Expr {
    Expr::select(a, Expr::Const(Const::Bool(false)), Expr::Const(Const::Bool(true)))
}

/// Normalise a possibly negative axis of a rank-`rank` tensor.
fn axis_of(axis: i64, rank: usize, op: &str) -> CResult<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(a)
        .ok()
        .filter(|a| *a < rank.max(1))
        .ok_or_else(|| unsupported(op, format!("axis {axis} out of range")))
}

impl Gen<'_> {
    fn fresh_var(&mut self) -> Var {
        let v = Var(self.next_var);
        self.next_var += 1;
        v
    }

    fn fresh_local(&mut self, ty: ScalarType) -> LocalId {
        self.locals.push(ty);
        LocalId(self.locals.len() as u32 - 1)
    }

    /// Bind `e` to a fresh local (constants and locals stay as they are).
    fn bind(&mut self, e: Expr, ty: ScalarType, out: &mut Vec<Stmt>) -> Expr {
        match e {
            Expr::Const(_) | Expr::Local(_) | Expr::Dim(_) | Expr::Index(_) => e,
            e => {
                let l = self.fresh_local(ty);
                out.push(Stmt::Let { local: l, value: e });
                Expr::Local(l)
            }
        }
    }

    fn size(&mut self, d: &Dim) -> CResult<Size> {
        super::builder::dim_size(&mut self.dims, d).ok_or_else(|| unsupported("-", super::builder::UNKNOWN_DIM))
    }

    fn dim(&mut self, d: &Dim) -> CResult<Expr> {
        let s = self.size(d)?;
        Ok(match s.as_constant() {
            Some(c) => i(c),
            None => Expr::Dim(s),
        })
    }

    fn product(&mut self, dims: &[Dim]) -> CResult<Size> {
        let mut s = Size::constant(1);
        for d in dims {
            s = s.mul(&self.size(d)?);
        }
        Ok(s)
    }

    fn outputs(&self, ops: &[OpId]) -> Vec<ValueId> {
        super::builder::group_outputs(self.f, ops, &self.members)
    }

    fn scalar(&self, v: ValueId, op: &str) -> CResult<ScalarType> {
        let dt = self.f.ty(v).dtype;
        ScalarType::of_dtype(dt).ok_or_else(|| unsupported(op, format!("dtype {dt} is not supported in kernels yet")))
    }

    fn buffer(&mut self, v: ValueId, role: BufferRole) -> u32 {
        if let Some(&b) = self.buffer_of.get(&v) {
            return b;
        }
        let b = self.buffers.len() as u32;
        self.buffers.push(BufferParam { dtype: self.f.ty(v).dtype, role });
        self.buffer_values.push(v);
        self.buffer_of.insert(v, b);
        b
    }

    fn output_buffer(&mut self, v: ValueId) -> CResult<u32> {
        self.scalar(v, "output")?;
        if let Some(&b) = self.buffer_of.get(&v) {
            self.buffers[b as usize].role = BufferRole::Output;
            return Ok(b);
        }
        Ok(self.buffer(v, BufferRole::Output))
    }

    /// Coordinates of flat index `flat` in a row-major tensor of `shape`.
    fn unflatten(&mut self, flat: Expr, shape: &[Dim], out: &mut Vec<Stmt>) -> CResult<Vec<Expr>> {
        let flat = self.bind(flat, ScalarType::I64, out);
        let mut coords = vec![i(0); shape.len()];
        let mut rest = flat;
        for k in (0..shape.len()).rev() {
            if shape[k].as_fixed() == Some(1) {
                continue;
            }
            if k == 0 {
                coords[0] = rest.clone();
                break;
            }
            let d = self.dim(&shape[k])?;
            let c = Expr::binary(BinaryOp::Rem, rest.clone(), d.clone());
            coords[k] = self.bind(c, ScalarType::I64, out);
            let q = Expr::binary(BinaryOp::Div, rest, d);
            rest = self.bind(q, ScalarType::I64, out);
        }
        Ok(coords)
    }

    /// The flat index of `coords` in a row-major tensor of `shape`.
    fn flatten(&mut self, coords: &[Expr], shape: &[Dim]) -> CResult<Expr> {
        let mut acc: Option<Expr> = None;
        for (c, d) in coords.iter().zip(shape) {
            let d = self.dim(d)?;
            acc = Some(match acc {
                None => c.clone(),
                Some(a) => add(mul(a, d), c.clone()),
            });
        }
        Ok(acc.unwrap_or(i(0)))
    }

    /// Coordinates of an operand of shape `from` broadcast (numpy, right-aligned) to the
    /// result whose coordinates are `coords` and shape `to`.
    fn broadcast(&self, coords: &[Expr], from: &[Dim], to: &[Dim], op: &str) -> CResult<Vec<Expr>> {
        if from.len() > to.len() {
            return Err(unsupported(op, "an operand has a higher rank than the result"));
        }
        let off = to.len() - from.len();
        from.iter()
            .enumerate()
            .map(|(k, d)| {
                if d.as_fixed() == Some(1) {
                    Ok(i(0))
                } else if *d == to[off + k] || to[off + k].as_fixed() == Some(1) {
                    Ok(coords[off + k].clone())
                } else {
                    Err(unsupported(op, format!("cannot prove that {d} broadcasts to {}", to[off + k])))
                }
            })
            .collect()
    }

    /// [`Self::broadcast`] for an operand with dims of unknown size (`?`, e.g. a causal
    /// mask sliced to a computed length): each such dim's extent is computed at run time
    /// ([`Self::runtime_extent`]) and, numpy-style, pins the coordinate to 0 when it is 1.
    fn broadcast_dynamic(
        &mut self,
        v: ValueId,
        coords: &[Expr],
        to: &[Dim],
        out: &mut Vec<Stmt>,
    ) -> CResult<Vec<Expr>> {
        let from = self.f.ty(v).shape.clone();
        if from.len() > to.len() {
            return Err(unsupported("broadcast", "an operand has a higher rank than the result"));
        }
        let off = to.len() - from.len();
        let mut inner = Vec::with_capacity(from.len());
        for (k, d) in from.iter().enumerate() {
            if d.is_unknown() {
                let n = self.runtime_extent(v, k, out)?;
                let n = self.bind(n, ScalarType::I64, out);
                inner.push(Expr::select(cmp(CmpOp::Eq, n, i(1)), i(0), coords[off + k].clone()));
            } else {
                let b = self.broadcast(
                    &coords[off + k..off + k + 1],
                    std::slice::from_ref(d),
                    &to[off + k..off + k + 1],
                    "broadcast",
                )?;
                inner.extend(b);
            }
        }
        Ok(inner)
    }

    /// The run-time extent of dim `axis` of `v`: static dims directly, `?` dims through the
    /// group's slices (from their loaded starts and ends) and elementwise ops.
    fn runtime_extent(&mut self, v: ValueId, axis: usize, out: &mut Vec<Stmt>) -> CResult<Expr> {
        let shape = self.f.ty(v).shape.clone();
        let Some(d) = shape.get(axis) else { return Err(unsupported("extent", "axis out of range")) };
        if !d.is_unknown() {
            return self.dim(d);
        }
        let unknown =
            || unsupported("extent", "a dim of unknown size (`?`) whose extent cannot be computed in the kernel");
        let p = self.f.producer(v).filter(|p| self.members.contains(p)).ok_or_else(unknown)?;
        let data = self.f.op(p).ok_or_else(unknown)?;
        match &data.op {
            Op::Slice { axes, steps, .. } if data.operands.len() >= 3 => {
                let x = data.operands[0];
                let r = self.f.ty(x).rank();
                let pos = axes.iter().position(|&a| axis_of(a, r, "slice").ok() == Some(axis));
                let Some(k) = pos else { return self.runtime_extent(x, axis, out) };
                if steps.get(k).copied().unwrap_or(1) != 1 {
                    return Err(unknown());
                }
                let dim = self.runtime_extent(x, axis, out)?;
                let dim = self.bind(dim, ScalarType::I64, out);
                let norm = |e: Expr| {
                    let w = Expr::select(cmp(CmpOp::Lt, e.clone(), i(0)), add(e.clone(), dim.clone()), e);
                    max(i(0), min(w, dim.clone()))
                };
                let s = self.value(data.operands[1], &[i(k as i64)], out)?;
                let e = self.value(data.operands[2], &[i(k as i64)], out)?;
                Ok(max(i(0), sub(norm(e), norm(s))))
            }
            op if op.is_unary_elementwise() => self.runtime_extent(data.operands[0], axis, out),
            _ => Err(unknown()),
        }
    }

    /// The value of every element of `v` when it is a `constant` whose elements are all equal.
    fn splat_literal(&self, v: ValueId) -> Option<f64> {
        let Op::Constant { value } = &self.f.op(self.f.producer(v)?)?.op else { return None };
        let all = value.to_f64_vec();
        let first = *all.first()?;
        all.iter().all(|&x| x == first).then_some(first)
    }

    /// The value of elementwise operand `v` at the result coordinates `coords` (of a result
    /// shaped `rshape`), broadcasting it as the op does.
    fn broadcast_operand(
        &mut self,
        v: ValueId,
        coords: &[Expr],
        rshape: &[Dim],
        name: &str,
        out: &mut Vec<Stmt>,
    ) -> CResult<Expr> {
        let vshape = self.f.ty(v).shape.clone();
        let inner = if vshape.iter().any(Dim::is_unknown) {
            self.broadcast_dynamic(v, coords, rshape, out)?
        } else {
            self.broadcast(coords, &vshape, rshape, name)?
        };
        self.value(v, &inner, out)
    }

    /// The value of `v` at `coords`; statements it needs are appended to `out`.
    fn value(&mut self, v: ValueId, coords: &[Expr], out: &mut Vec<Stmt>) -> CResult<Expr> {
        for cache in self.caches.iter().rev() {
            if let Some((_, _, e)) = cache.iter().find(|(x, c, _)| *x == v && c.as_slice() == coords) {
                return Ok(e.clone());
            }
        }
        let producer = self.f.producer(v).filter(|p| self.members.contains(p));
        let e = match producer {
            None => {
                let ty = self.f.ty(v).clone();
                self.scalar(v, "input")?;
                let buffer = self.buffer(v, BufferRole::Input);
                let flat = self.flatten(coords, &ty.shape)?;
                // A buffer whose size is symbolic may be empty at run time (a KV cache at
                // `past` = 0), and a select still evaluates its untaken branch (concat, pad):
                // then load element 0, which the runtime keeps readable for empty bindings.
                let flat = if ty.shape.iter().all(|d| d.as_fixed().is_some_and(|n| n > 0)) {
                    flat
                } else {
                    let numel = self.product(&ty.shape)?;
                    let numel = match numel.as_constant() {
                        Some(c) => i(c),
                        None => Expr::Dim(numel),
                    };
                    Expr::select(cmp(CmpOp::Lt, i(0), numel), flat, i(0))
                };
                Expr::load_at(buffer, flat, IndexExpr::default())
            }
            Some(p) => {
                let e = self.op_value(p, v, coords, out)?;
                let dtype = self.f.ty(v).dtype;
                let preserving = self.f.op(p).is_some_and(|d| preserves_values(&d.op));
                if ScalarType::is_narrow(dtype) && !preserving {
                    Expr::unary(UnaryOp::Narrow(dtype), e)
                } else {
                    e
                }
            }
        };
        let ty = self.scalar(v, "value")?;
        let e = self.bind(e, ty, out);
        if let Some(cache) = self.caches.last_mut() {
            cache.push((v, coords.to_vec(), e.clone()));
        }
        Ok(e)
    }

    /// One attention score `scale · q[b, h, i, :] · k[b, hk, j, :]` (+ the additive mask, or
    /// −∞ where a bool mask is false or key `j` lies past the causal limit), as the
    /// interpreter computes it.
    fn attention_score(&mut self, a: &AttentionScore, j: &Expr, out: &mut Vec<Stmt>) -> CResult<Expr> {
        let (b, h, qi) = (a.bhi[0].clone(), a.bhi[1].clone(), a.bhi[2].clone());
        let dot = self.accumulate(
            std::slice::from_ref(&a.head),
            scalar_const(a.ty, 0.0),
            a.ty,
            out,
            &mut |g, acc, inner, body| {
                let qv = g.value(a.q, &[b.clone(), h.clone(), qi.clone(), inner[0].clone()], body)?;
                let kv = g.value(a.k, &[b.clone(), a.hk.clone(), j.clone(), inner[0].clone()], body)?;
                Ok(add(acc, mul(qv, kv)))
            },
        )?;
        let mut score = mul(dot, scalar_const(a.ty, a.scale));
        let ninf = scalar_const(a.ty, f64::NEG_INFINITY);
        if let Some(mask) = a.mask {
            let full_coords = [b, h, qi, j.clone()];
            let mc = self.broadcast(&full_coords, &self.f.ty(mask).shape.clone(), &a.full, "attention")?;
            let mv = self.value(mask, &mc, out)?;
            score = match self.scalar(mask, "attention")? {
                ScalarType::Bool => Expr::select(mv, score, ninf.clone()),
                t if t == a.ty => add(score, mv),
                t if t.is_float() => add(score, Expr::cast(a.ty, mv)),
                _ => return Err(unsupported("attention", "an integer mask")),
            };
        }
        if let Some(limit) = &a.causal_limit {
            score = Expr::select(cmp(CmpOp::Lt, limit.clone(), j.clone()), ninf, score);
        }
        Ok(score)
    }

    /// `xʸ` for `i64` operands, wrapping like the interpreter: square-and-multiply over the
    /// exponent's 64 bits; a negative exponent gives 1 for a base of 1, ±1 for -1 (by the
    /// exponent's parity) and 0 otherwise (truncating integer division).
    fn int_pow(&mut self, x: Expr, y: Expr, out: &mut Vec<Stmt>) -> Expr {
        let (acc, base, e) =
            (self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64));
        out.push(Stmt::Let { local: acc, value: i(1) });
        out.push(Stmt::Let { local: base, value: x.clone() });
        out.push(Stmt::Let { local: e, value: y.clone() });
        let (la, lb, le) = (Expr::Local(acc), Expr::Local(base), Expr::Local(e));
        let odd = cmp(CmpOp::Ne, Expr::binary(BinaryOp::Rem, le.clone(), i(2)), i(0));
        let body = vec![
            Stmt::Assign { local: acc, value: Expr::select(odd, mul(la.clone(), lb.clone()), la.clone()) },
            Stmt::Assign { local: base, value: mul(lb.clone(), lb) },
            Stmt::Assign { local: e, value: Expr::binary(BinaryOp::Div, le, i(2)) },
        ];
        let var = self.fresh_var();
        out.push(Stmt::Loop { var, extent: Extent::Size(Size::constant(64)), body });
        let even = cmp(CmpOp::Eq, Expr::binary(BinaryOp::Rem, y.clone(), i(2)), i(0));
        let negative = Expr::select(
            cmp(CmpOp::Eq, x.clone(), i(1)),
            i(1),
            Expr::select(cmp(CmpOp::Eq, x, i(-1)), Expr::select(even, i(1), i(-1)), i(0)),
        );
        Expr::select(cmp(CmpOp::Lt, y, i(0)), negative, la)
    }

    /// A loop over the flattened extent of `dims` accumulating `step(acc, coords)` into a
    /// mutable local initialised with `init`. Returns the local.
    fn accumulate(
        &mut self,
        dims: &[Dim],
        init: Expr,
        ty: ScalarType,
        out: &mut Vec<Stmt>,
        step: &mut StepFn<'_, Self>,
    ) -> CResult<Expr> {
        let acc = self.fresh_local(ty);
        out.push(Stmt::Let { local: acc, value: init });
        let n = self.product(dims)?;
        let var = self.fresh_var();
        self.caches.push(Vec::new());
        let mut body = Vec::new();
        let inner = self.unflatten(Expr::Index(IndexExpr::var(var, Size::constant(1))), dims, &mut body);
        let r = inner.and_then(|inner| step(self, Expr::Local(acc), &inner, &mut body));
        self.caches.pop();
        let next = r?;
        body.push(Stmt::Assign { local: acc, value: next });
        out.push(Stmt::Loop { var, extent: Extent::Size(n), body });
        Ok(Expr::Local(acc))
    }

    /// The index of the maximum (or minimum) of `x` along `axis`, at result `coords`.
    #[allow(clippy::too_many_arguments)]
    fn arg_best(
        &mut self,
        x: ValueId,
        axis: i64,
        keepdims: bool,
        select_last_index: bool,
        is_max: bool,
        coords: &[Expr],
        out: &mut Vec<Stmt>,
    ) -> CResult<Expr> {
        let from = self.f.ty(x).shape.clone();
        let a = axis_of(axis, from.len(), "argmax")?;
        let xty = self.scalar(x, "argmax")?;
        let mut base: Vec<Expr> = Vec::new();
        let mut rc = coords.iter();
        for k in 0..from.len() {
            if k == a {
                if keepdims {
                    rc.next();
                }
                base.push(i(0));
            } else {
                base.push(rc.next().cloned().unwrap_or(i(0)));
            }
        }
        // First element seeds the running best; later ones replace it when strictly
        // better (or equal, with `select_last_index`).
        let best = self.fresh_local(xty);
        let seed = self.value(x, &base, out)?;
        out.push(Stmt::Let { local: best, value: seed });
        let idx = self.fresh_local(ScalarType::I64);
        out.push(Stmt::Let { local: idx, value: i(0) });
        let n = self.size(&from[a])?;
        let var = self.fresh_var();
        self.caches.push(Vec::new());
        let mut body = Vec::new();
        let mut xc = base.clone();
        xc[a] = Expr::Index(IndexExpr::var(var, Size::constant(1)));
        let r = self.value(x, &xc, &mut body);
        self.caches.pop();
        let xv = r?;
        let (lhs, rhs) = if is_max { (Expr::Local(best), xv.clone()) } else { (xv.clone(), Expr::Local(best)) };
        let better = cmp(if select_last_index { CmpOp::Le } else { CmpOp::Lt }, lhs, rhs);
        let better_l = self.fresh_local(ScalarType::Bool);
        body.push(Stmt::Let { local: better_l, value: better });
        body.push(Stmt::Assign { local: best, value: Expr::select(Expr::Local(better_l), xv, Expr::Local(best)) });
        body.push(Stmt::Assign {
            local: idx,
            value: Expr::select(
                Expr::Local(better_l),
                Expr::Index(IndexExpr::var(var, Size::constant(1))),
                Expr::Local(idx),
            ),
        });
        out.push(Stmt::Loop { var, extent: Extent::Size(n), body });
        Ok(Expr::Local(idx))
    }

    fn op_value(&mut self, p: OpId, v: ValueId, coords: &[Expr], out: &mut Vec<Stmt>) -> CResult<Expr> {
        let f = self.f;
        let d = f.op(p).ok_or_else(|| CodegenError::Invalid(format!("erased op {p} in a group")))?;
        let name = d.op.name();
        let rshape = f.ty(v).shape.clone();
        let opnd = |k: usize| d.operands[k];
        let oshape = |k: usize| f.ty(d.operands[k]).shape.clone();
        let rty = self.scalar(v, name)?;
        Ok(match &d.op {
            Op::Reshape { .. } => {
                let flat = self.flatten(coords, &rshape)?;
                let inner = self.unflatten(flat, &oshape(0), out)?;
                self.value(opnd(0), &inner, out)?
            }
            Op::Identity => self.value(opnd(0), coords, out)?,
            Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
                // Only size-1 dims come and go: keep the coordinates of the others in order.
                let from = oshape(0);
                let keep_r: Vec<&Expr> =
                    coords.iter().zip(&rshape).filter(|(_, d)| d.as_fixed() != Some(1)).map(|(c, _)| c).collect();
                let mut it = keep_r.into_iter();
                let inner: Vec<Expr> = from
                    .iter()
                    .map(|dm| if dm.as_fixed() == Some(1) { i(0) } else { it.next().cloned().unwrap_or(i(0)) })
                    .collect();
                self.value(opnd(0), &inner, out)?
            }
            Op::Transpose { perm } => {
                let mut inner = vec![i(0); coords.len()];
                for (k, &pk) in perm.iter().enumerate() {
                    let slot = usize::try_from(pk).ok().filter(|s| *s < inner.len());
                    let slot = slot.ok_or_else(|| unsupported(name, "bad permutation"))?;
                    inner[slot] = coords[k].clone();
                }
                self.value(opnd(0), &inner, out)?
            }
            Op::Expand => {
                let inner = self.broadcast(coords, &oshape(0), &rshape, name)?;
                self.value(opnd(0), &inner, out)?
            }
            Op::Slice { axes, starts, steps, .. } if d.operands.len() == 1 => {
                let from = oshape(0);
                let mut inner = coords.to_vec();
                // No axes: the leading `starts.len()` axes.
                let all: Vec<i64> = (0..starts.len() as i64).collect();
                let axes = if axes.is_empty() { &all } else { axes };
                for (k, &ax) in axes.iter().enumerate() {
                    let a = axis_of(ax, from.len(), name)?;
                    let step = steps.get(k).copied().unwrap_or(1);
                    let start = starts.get(k).copied().unwrap_or(0);
                    let dim = self.dim(&from[a])?;
                    // ONNX: negative starts count from the end, then clamp into the dim
                    // ([0, dim] walking forwards, [0, dim-1] backwards).
                    let s = if start < 0 { add(dim.clone(), i(start)) } else { i(start.min(i64::MAX / 4)) };
                    let hi = if step > 0 { dim } else { sub(dim, i(1)) };
                    let s = max(i(0), min(s, hi));
                    inner[a] = add(s, mul(coords[a].clone(), i(step)));
                }
                self.value(opnd(0), &inner, out)?
            }
            Op::Slice { axes, steps, .. } => {
                // Starts read from the `starts` operand at run time (no axes: the leading
                // ones, as many as `starts` has).
                let from = oshape(0);
                let mut inner = coords.to_vec();
                let n_starts = oshape(1).first().and_then(Dim::as_fixed);
                let all: Vec<i64> = match (axes.is_empty(), n_starts) {
                    (false, _) => axes.clone(),
                    (true, Some(n)) => (0..n).collect(),
                    (true, None) => return Err(unsupported(name, "dynamic slice without axes of unknown length")),
                };
                for (k, &ax) in all.iter().enumerate() {
                    let a = axis_of(ax, from.len(), name)?;
                    let step = steps.get(k).copied().unwrap_or(1);
                    let dim = self.dim(&from[a])?;
                    let start = self.value(opnd(1), &[i(k as i64)], out)?;
                    let s = Expr::select(cmp(CmpOp::Lt, start.clone(), i(0)), add(start.clone(), dim.clone()), start);
                    let hi = if step > 0 { dim } else { sub(dim, i(1)) };
                    let s = self.bind(max(i(0), min(s, hi)), ScalarType::I64, out);
                    inner[a] = add(s, mul(coords[a].clone(), i(step)));
                }
                self.value(opnd(0), &inner, out)?
            }
            Op::Split { axis } => {
                let a = axis_of(*axis, rshape.len(), name)?;
                let mut offset = i(0);
                for &r in &d.results {
                    if r == v {
                        break;
                    }
                    offset = add(offset, self.dim(&f.ty(r).shape[a])?);
                }
                let mut inner = coords.to_vec();
                inner[a] = add(coords[a].clone(), offset);
                self.value(opnd(0), &inner, out)?
            }
            Op::RotaryEmbedding { interleaved, rotary_dim } => {
                let (cs, ps) = (oshape(1), oshape(3));
                let (Some(head), Some(half), Some(max_pos)) =
                    (rshape.get(3).and_then(Dim::as_fixed), cs.get(1).and_then(Dim::as_fixed), cs.first())
                else {
                    return Err(unsupported(name, "head_dim and the table width must be static"));
                };
                if rshape.len() != 4 || ps.len() != 2 {
                    return Err(unsupported(name, "x must be [b, h, s, d] and positions [b, s]"));
                }
                let rd = if *rotary_dim == 0 { head } else { *rotary_dim };
                let e = coords[3].clone();
                let pb = if ps[0].as_fixed() == Some(1) { i(0) } else { coords[0].clone() };
                let p = self.value(opnd(3), &[pb, coords[2].clone()], out)?;
                let mp = self.dim(max_pos)?;
                let p = self.bind(max(i(0), min(p, sub(mp, i(1)))), ScalarType::I64, out);
                let (is_a, idx, partner) = if *interleaved {
                    let odd = Expr::binary(BinaryOp::Rem, e.clone(), i(2));
                    let odd = self.bind(odd, ScalarType::I64, out);
                    (
                        cmp(CmpOp::Eq, odd.clone(), i(0)),
                        Expr::binary(BinaryOp::Div, e.clone(), i(2)),
                        sub(add(e.clone(), i(1)), mul(odd, i(2))),
                    )
                } else {
                    let is_a = cmp(CmpOp::Lt, e.clone(), i(half));
                    let is_a = self.bind(is_a, ScalarType::Bool, out);
                    (
                        is_a.clone(),
                        Expr::select(is_a.clone(), e.clone(), sub(e.clone(), i(half))),
                        Expr::select(is_a, add(e.clone(), i(half)), sub(e.clone(), i(half))),
                    )
                };
                let inr = self.bind(cmp(CmpOp::Lt, e.clone(), i(rd)), ScalarType::Bool, out);
                let idx = self.bind(max(i(0), min(idx, i(half - 1))), ScalarType::I64, out);
                let partner = self.bind(Expr::select(inr.clone(), partner, e.clone()), ScalarType::I64, out);
                let xv = self.value(opnd(0), coords, out)?;
                let mut pc = coords.to_vec();
                pc[3] = partner;
                let xp = self.value(opnd(0), &pc, out)?;
                let c = self.value(opnd(1), &[p.clone(), idx.clone()], out)?;
                let sn = self.value(opnd(2), &[p, idx], out)?;
                let sign = Expr::select(is_a, Expr::f32(-1.0), Expr::f32(1.0));
                let rot = add(mul(xv.clone(), c), mul(mul(sign, xp), sn));
                Expr::select(inr, rot, xv)
            }
            Op::GatherNd { batch_dims } => {
                let (data, ish) = (oshape(0), oshape(1));
                let q = ish.len();
                let b = usize::try_from(*batch_dims).map_err(|_| unsupported(name, "negative batch_dims"))?;
                let Some(kk) = ish.last().and_then(Dim::as_fixed) else {
                    return Err(unsupported(name, "the index tuple length must be static"));
                };
                if q == 0 || b + kk as usize > data.len() || b > q - 1 {
                    return Err(unsupported(name, "index shapes"));
                }
                let mut inner: Vec<Expr> = coords[..b].to_vec();
                for j in 0..kk {
                    let mut ic = coords[..q - 1].to_vec();
                    ic.push(i(j));
                    let idx = self.value(opnd(1), &ic, out)?;
                    let dim = self.dim(&data[b + j as usize])?;
                    let w = Expr::select(cmp(CmpOp::Lt, idx.clone(), i(0)), add(idx.clone(), dim.clone()), idx);
                    inner.push(self.bind(max(i(0), min(w, sub(dim, i(1)))), ScalarType::I64, out));
                }
                inner.extend_from_slice(&coords[q - 1..]);
                self.value(opnd(0), &inner, out)?
            }
            Op::Concat { axis } => {
                let a = axis_of(*axis, rshape.len(), name)?;
                let mut offset = i(0);
                let mut parts = Vec::new();
                for k in 0..d.operands.len() {
                    let s = oshape(k);
                    let len = self.dim(&s[a])?;
                    if s[a].as_fixed() == Some(0) {
                        continue;
                    }
                    let mut inner = coords.to_vec();
                    // Clamped: a select evaluates every branch, so each must load in range.
                    let local = sub(coords[a].clone(), offset.clone());
                    inner[a] = max(i(0), min(local, sub(len.clone(), i(1))));
                    let inner: Vec<Expr> = inner.into_iter().map(|c| self.bind(c, ScalarType::I64, out)).collect();
                    let val = self.value(opnd(k), &inner, out)?;
                    offset = add(offset, len);
                    let end = self.bind(offset.clone(), ScalarType::I64, out);
                    offset = end.clone();
                    parts.push((end, val));
                }
                let mut it = parts.into_iter().rev();
                let (_, mut acc) = it.next().ok_or_else(|| unsupported(name, "no non-empty operand"))?;
                for (end, val) in it {
                    acc = Expr::select(cmp(CmpOp::Lt, coords[a].clone(), end), val, acc);
                }
                acc
            }
            Op::Gather { axis } => {
                let data = oshape(0);
                let ishape = oshape(1);
                let a = axis_of(*axis, data.len(), name)?;
                let ir = ishape.len();
                let icoords: Vec<Expr> = coords[a..a + ir].to_vec();
                let idx = self.value(opnd(1), &icoords, out)?;
                if self.scalar(opnd(1), name)? != ScalarType::I64 {
                    return Err(unsupported(name, "indices must be i64"));
                }
                let dim = self.dim(&data[a])?;
                // Negative indices wrap once; then clamp, so the load stays in the table.
                let wrapped = Expr::select(cmp(CmpOp::Lt, idx.clone(), i(0)), add(idx.clone(), dim.clone()), idx);
                let wrapped = self.bind(wrapped, ScalarType::I64, out);
                let clamped = max(i(0), min(wrapped, sub(dim, i(1))));
                let clamped = self.bind(clamped, ScalarType::I64, out);
                let mut inner: Vec<Expr> = coords[..a].to_vec();
                inner.push(clamped);
                inner.extend_from_slice(&coords[a + ir..]);
                self.value(opnd(0), &inner, out)?
            }
            Op::Shape { start, end } => {
                let from = oshape(0);
                let r = from.len() as i64;
                let norm = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
                let (s, e) = (norm(*start), norm(end.unwrap_or(r)));
                let mut acc = i(0);
                for k in (s..e.max(s)).rev() {
                    let dv = self.dim(&from[k])?;
                    acc = if k + 1 == e {
                        dv
                    } else {
                        Expr::select(cmp(CmpOp::Eq, coords[0].clone(), i((k - s) as i64)), dv, acc)
                    };
                }
                acc
            }
            Op::ConstantOfShape { value } => {
                let x = value.to_f64_vec().first().copied().unwrap_or(0.0);
                scalar_const(rty, x)
            }
            Op::Range => {
                let start = self.value(opnd(0), &[], out)?;
                let delta = self.value(opnd(2), &[], out)?;
                let c = match rty {
                    t if t.is_float() => Expr::cast(t, coords[0].clone()),
                    _ => coords[0].clone(),
                };
                add(start, mul(c, delta))
            }
            Op::ReduceSum { axes, keepdims }
            | Op::ReduceMean { axes, keepdims }
            | Op::ReduceMax { axes, keepdims }
            | Op::ReduceMin { axes, keepdims }
            | Op::ReduceSumSquare { axes, keepdims }
            | Op::ReduceProd { axes, keepdims }
            | Op::ReduceL2 { axes, keepdims }
            | Op::ReduceLogSumExp { axes, keepdims }
            | Op::ReduceL1 { axes, keepdims } => {
                let from = oshape(0);
                let mut red: Vec<usize> = axes.iter().map(|&x| axis_of(x, from.len(), name)).collect::<CResult<_>>()?;
                if axes.is_empty() {
                    red = (0..from.len()).collect();
                }
                red.sort_unstable();
                red.dedup();
                let rdims: Vec<Dim> = red.iter().map(|&k| from[k].clone()).collect();
                // Coordinates of the operand with the reduced axes to be filled in.
                let mut base: Vec<Option<Expr>> = Vec::new();
                let mut rc = coords.iter();
                for k in 0..from.len() {
                    if red.contains(&k) {
                        if *keepdims {
                            rc.next();
                        }
                        base.push(None);
                    } else {
                        base.push(Some(rc.next().cloned().unwrap_or(i(0))));
                    }
                }
                let x = opnd(0);
                let op = d.op.clone();
                // Max/min identities: ∓inf for floats, the dtype's range for integers (ONNX).
                let (lowest, highest) = int_range(self.f.ty(x).dtype);
                let init = match op {
                    Op::ReduceMax { .. } if rty == ScalarType::I64 => i(lowest),
                    Op::ReduceMin { .. } if rty == ScalarType::I64 => i(highest),
                    Op::ReduceMax { .. } => scalar_const(rty, f64::NEG_INFINITY),
                    Op::ReduceMin { .. } => scalar_const(rty, f64::INFINITY),
                    Op::ReduceProd { .. } => scalar_const(rty, 1.0),
                    _ => scalar_const(rty, 0.0),
                };
                if matches!(op, Op::ReduceL2 { .. } | Op::ReduceLogSumExp { .. }) && !rty.is_float() {
                    return Err(unsupported(name, "integer l2 / log-sum-exp"));
                }
                // log-sum-exp is computed stably: the maximum first.
                let lse_max = if matches!(op, Op::ReduceLogSumExp { .. }) {
                    let (base2, red3) = (base.clone(), red.clone());
                    let m = self.accumulate(
                        &rdims,
                        scalar_const(rty, f64::NEG_INFINITY),
                        rty,
                        out,
                        &mut |g, acc, inner, body| {
                            let full = reduced_coords(&base2, &red3, inner);
                            Ok(max(acc, g.value(x, &full, body)?))
                        },
                    )?;
                    // An all -inf row keeps the shift finite.
                    let (ninf, zero) = (scalar_const(rty, f64::NEG_INFINITY), scalar_const(rty, 0.0));
                    Some(Expr::select(cmp(CmpOp::Eq, m.clone(), ninf), zero, m))
                } else {
                    None
                };
                let lse_max = lse_max.map(|e| self.bind(e, rty, out));
                let red2 = red.clone();
                let acc = self.accumulate(&rdims, init, rty, out, &mut |g, acc, inner, body| {
                    let full = reduced_coords(&base, &red2, inner);
                    let xv = g.value(x, &full, body)?;
                    Ok(match op {
                        Op::ReduceMax { .. } => max(acc, xv),
                        Op::ReduceMin { .. } => min(acc, xv),
                        Op::ReduceSumSquare { .. } | Op::ReduceL2 { .. } => add(acc, mul(xv.clone(), xv)),
                        Op::ReduceProd { .. } => mul(acc, xv),
                        Op::ReduceLogSumExp { .. } => {
                            let m = lse_max.clone().unwrap_or(scalar_const(rty, 0.0));
                            add(acc, Expr::unary(UnaryOp::Exp, sub(xv, m)))
                        }
                        Op::ReduceL1 { .. } => add(acc, Expr::unary(UnaryOp::Abs, xv)),
                        _ => add(acc, xv),
                    })
                })?;
                if matches!(d.op, Op::ReduceMean { .. }) {
                    if !rty.is_float() {
                        return Err(unsupported(name, "integer mean"));
                    }
                    let n = self.product(&rdims)?;
                    let n = Expr::cast(rty, size_expr(&n));
                    Expr::binary(BinaryOp::Div, acc, n)
                } else if matches!(d.op, Op::ReduceL2 { .. }) {
                    Expr::unary(UnaryOp::Sqrt, acc)
                } else if let Some(m) = lse_max {
                    add(Expr::unary(UnaryOp::Log, acc), m)
                } else {
                    acc
                }
            }
            Op::ArgMax { axis, keepdims, select_last_index } | Op::ArgMin { axis, keepdims, select_last_index } => {
                let is_max = matches!(d.op, Op::ArgMax { .. });
                self.arg_best(opnd(0), *axis, *keepdims, *select_last_index, is_max, coords, out)?
            }
            // Greedy sampling (temperature 0, no history) is the first maximum of the last axis.
            Op::Sample { temperature, .. } if *temperature == 0.0 && d.operands.len() == 1 => {
                self.arg_best(opnd(0), -1, false, false, true, coords, out)?
            }
            Op::Softmax { axis } | Op::LogSoftmax { axis } => {
                let a = axis_of(*axis, rshape.len(), name)?;
                let x = opnd(0);
                let along = vec![rshape[a].clone()];
                let at = |inner: &[Expr]| {
                    let mut c = coords.to_vec();
                    c[a] = inner[0].clone();
                    c
                };
                let m = self.accumulate(
                    &along,
                    scalar_const(rty, f64::NEG_INFINITY),
                    rty,
                    out,
                    &mut |g, acc, inner, body| Ok(max(acc, g.value(x, &at(inner), body)?)),
                )?;
                let s = self.accumulate(&along, scalar_const(rty, 0.0), rty, out, &mut |g, acc, inner, body| {
                    let xv = g.value(x, &at(inner), body)?;
                    Ok(add(acc, Expr::unary(UnaryOp::Exp, sub(xv, m.clone()))))
                })?;
                let xv = self.value(x, coords, out)?;
                if matches!(d.op, Op::LogSoftmax { .. }) {
                    return Ok(sub(sub(xv, m), Expr::unary(UnaryOp::Log, s)));
                }
                Expr::binary(BinaryOp::Div, Expr::unary(UnaryOp::Exp, sub(xv, m)), s)
            }
            Op::RmsNorm { epsilon } => {
                let r = rshape.len();
                let x = opnd(0);
                let along = vec![rshape[r - 1].clone()];
                let at = |inner: &[Expr]| {
                    let mut c = coords.to_vec();
                    c[r - 1] = inner[0].clone();
                    c
                };
                let ss = self.accumulate(&along, scalar_const(rty, 0.0), rty, out, &mut |g, acc, inner, body| {
                    let xv = g.value(x, &at(inner), body)?;
                    Ok(add(acc, mul(xv.clone(), xv)))
                })?;
                let n = self.size(&rshape[r - 1])?;
                let mean = Expr::binary(BinaryOp::Div, ss, Expr::cast(rty, size_expr(&n)));
                let scale = Expr::unary(UnaryOp::Rsqrt, add(mean, scalar_const(rty, *epsilon)));
                let xv = self.value(x, coords, out)?;
                let w = self.value(opnd(1), &coords[r - 1..], out)?;
                mul(mul(xv, scale), w)
            }
            Op::LayerNorm { axis, epsilon } => {
                let r = rshape.len();
                let a = axis_of(*axis, r, name)?;
                let x = opnd(0);
                let along: Vec<Dim> = rshape[a..].to_vec();
                let at = |inner: &[Expr]| {
                    let mut c = coords[..a].to_vec();
                    c.extend_from_slice(inner);
                    c
                };
                let n = self.product(&along)?;
                let nf = Expr::cast(rty, size_expr(&n));
                let s = self.accumulate(&along, scalar_const(rty, 0.0), rty, out, &mut |g, acc, inner, body| {
                    Ok(add(acc, g.value(x, &at(inner), body)?))
                })?;
                let mean = self.bind(Expr::binary(BinaryOp::Div, s, nf.clone()), rty, out);
                let var = self.accumulate(&along, scalar_const(rty, 0.0), rty, out, &mut |g, acc, inner, body| {
                    let dv = sub(g.value(x, &at(inner), body)?, mean.clone());
                    let dv = g.bind(dv, rty, body);
                    Ok(add(acc, mul(dv.clone(), dv)))
                })?;
                let inv =
                    Expr::unary(UnaryOp::Rsqrt, add(Expr::binary(BinaryOp::Div, var, nf), scalar_const(rty, *epsilon)));
                let xv = self.value(x, coords, out)?;
                let norm_shape = rshape[a..].to_vec();
                let sc = self.broadcast(&coords[a..], &oshape(1), &norm_shape, name)?;
                let mut y = mul(mul(sub(xv, mean), inv), self.value(opnd(1), &sc, out)?);
                if d.operands.len() == 3 {
                    let bc = self.broadcast(&coords[a..], &oshape(2), &norm_shape, name)?;
                    y = add(y, self.value(opnd(2), &bc, out)?);
                }
                y
            }
            Op::MatMul => {
                // 1-D operands: computed as [1, k] / [k, 1], loaded without the unit dim.
                let (a_vector, b_vector) = (oshape(0).len() == 1, oshape(1).len() == 1);
                let (ash, bsh, rshape, coords) =
                    super::matmul_promote::promote_vector_operands(oshape(0), oshape(1), &rshape, coords);
                let coords = coords.as_slice();
                if ash.len() < 2 || bsh.len() < 2 || rty != ScalarType::F32 {
                    return Err(unsupported(name, "1-D or non-f32 matmul operands"));
                }
                let r = rshape.len();
                let batch = &rshape[..r - 2];
                let (ab, bb) = (
                    self.broadcast(&coords[..r - 2], &ash[..ash.len() - 2], batch, name)?,
                    self.broadcast(&coords[..r - 2], &bsh[..bsh.len() - 2], batch, name)?,
                );
                let (row, col) = (coords[r - 2].clone(), coords[r - 1].clone());
                let k = vec![ash[ash.len() - 1].clone()];
                let (a_, b_) = (opnd(0), opnd(1));
                self.accumulate(&k, Expr::f32(0.0), rty, out, &mut |g, acc, inner, body| {
                    let mut ac = ab.clone();
                    ac.extend([row.clone(), inner[0].clone()]);
                    let mut bc = bb.clone();
                    bc.extend([inner[0].clone(), col.clone()]);
                    let av = g.value(a_, if a_vector { &ac[ac.len() - 1..] } else { &ac }, body)?;
                    let bv = g.value(b_, if b_vector { &bc[bc.len() - 2..bc.len() - 1] } else { &bc }, body)?;
                    Ok(add(acc, mul(av, bv)))
                })?
            }
            Op::Linear => {
                let wsh = oshape(1);
                if wsh.len() != 2 || rty != ScalarType::F32 {
                    return Err(unsupported(name, "non-2-D or non-f32 linear weight"));
                }
                let r = rshape.len();
                let k = vec![wsh[1].clone()];
                let (x, w) = (opnd(0), opnd(1));
                let lead = coords[..r - 1].to_vec();
                let col = coords[r - 1].clone();
                let acc = self.accumulate(&k, Expr::f32(0.0), rty, out, &mut |g, acc, inner, body| {
                    let mut xc = lead.clone();
                    xc.push(inner[0].clone());
                    let xv = g.value(x, &xc, body)?;
                    let wv = g.value(w, &[col.clone(), inner[0].clone()], body)?;
                    Ok(add(acc, mul(xv, wv)))
                })?;
                if d.operands.len() == 3 {
                    add(acc, self.value(opnd(2), &coords[r - 1..], out)?)
                } else {
                    acc
                }
            }
            Op::PackedLinear { out_features } => {
                // `wp[p, k, j] = w[16p + j, k]`: element (n, k) of the weight is
                // `wp[n / 16, k, n % 16]`.
                let wsh = oshape(1);
                let (Some(k_in), Some(nr)) = (wsh.get(1).and_then(Dim::as_fixed), wsh.get(2).and_then(Dim::as_fixed))
                else {
                    return Err(unsupported(name, "packed weight dims must be static"));
                };
                if wsh.len() != 3 || rty != ScalarType::F32 || *out_features <= 0 {
                    return Err(unsupported(name, "packed weight layout"));
                }
                let r = rshape.len();
                let (x, w) = (opnd(0), opnd(1));
                let lead = coords[..r - 1].to_vec();
                let col = coords[r - 1].clone();
                let panel = self.bind(Expr::binary(BinaryOp::Div, col.clone(), i(nr)), ScalarType::I64, out);
                let lane = self.bind(Expr::binary(BinaryOp::Rem, col.clone(), i(nr)), ScalarType::I64, out);
                let acc =
                    self.accumulate(&[Dim::fixed(k_in)], Expr::f32(0.0), rty, out, &mut |g, acc, inner, body| {
                        let mut xc = lead.clone();
                        xc.push(inner[0].clone());
                        let xv = g.value(x, &xc, body)?;
                        let wv = g.value(w, &[panel.clone(), inner[0].clone(), lane.clone()], body)?;
                        Ok(add(acc, mul(xv, wv)))
                    })?;
                if d.operands.len() == 3 {
                    add(acc, self.value(opnd(2), &coords[r - 1..], out)?)
                } else {
                    acc
                }
            }
            Op::Gemm { alpha, beta, trans_a, trans_b } => {
                let (ash, bsh) = (oshape(0), oshape(1));
                if ash.len() != 2 || bsh.len() != 2 || rty != ScalarType::F32 {
                    return Err(unsupported(name, "gemm operands must be 2-D f32"));
                }
                let k = vec![if *trans_a { ash[0].clone() } else { ash[1].clone() }];
                let (row, col) = (coords[0].clone(), coords[1].clone());
                let (ta, tb, a_, b_) = (*trans_a, *trans_b, opnd(0), opnd(1));
                let acc = self.accumulate(&k, Expr::f32(0.0), rty, out, &mut |g, acc, inner, body| {
                    let kk = inner[0].clone();
                    let ac = if ta { [kk.clone(), row.clone()] } else { [row.clone(), kk.clone()] };
                    let bc = if tb { [col.clone(), kk] } else { [kk, col.clone()] };
                    let av = g.value(a_, &ac, body)?;
                    let bv = g.value(b_, &bc, body)?;
                    Ok(add(acc, mul(av, bv)))
                })?;
                let mut y = mul(acc, Expr::f32(*alpha as f32));
                if d.operands.len() == 3 {
                    let cc = self.broadcast(coords, &oshape(2), &rshape, name)?;
                    let cv = self.value(opnd(2), &cc, out)?;
                    y = add(y, mul(cv, Expr::f32(*beta as f32)));
                }
                y
            }
            Op::Pad { pads, mode, value } => {
                let from = oshape(0);
                let r = from.len();
                if pads.len() != 2 * r {
                    return Err(unsupported(name, "pads must have 2 × rank entries"));
                }
                let mut inner = Vec::with_capacity(r);
                let mut inside: Option<Expr> = None;
                for k in 0..r {
                    let n = self.dim(&from[k])?;
                    let ix = sub(coords[k].clone(), i(pads[k]));
                    let ix = self.bind(ix, ScalarType::I64, out);
                    let c = match mode {
                        ferrumc_ir::op::PadMode::Constant => {
                            let ok = Expr::select(
                                cmp(CmpOp::Lt, ix.clone(), i(0)),
                                Expr::Const(Const::Bool(false)),
                                cmp(CmpOp::Lt, ix.clone(), n.clone()),
                            );
                            inside = Some(match inside {
                                None => ok,
                                Some(prev) => Expr::select(prev, ok, Expr::Const(Const::Bool(false))),
                            });
                            max(i(0), min(ix, sub(n, i(1))))
                        }
                        ferrumc_ir::op::PadMode::Edge => max(i(0), min(ix, sub(n, i(1)))),
                        ferrumc_ir::op::PadMode::Reflect => {
                            // Period 2(n-1): fold into [0, 2(n-1)), then mirror the upper half.
                            let period = max(i(1), mul(i(2), sub(n.clone(), i(1))));
                            let period = self.bind(period, ScalarType::I64, out);
                            let m0 = Expr::binary(BinaryOp::Rem, ix, period.clone());
                            let m0 = self.bind(m0, ScalarType::I64, out);
                            let m1 =
                                Expr::select(cmp(CmpOp::Lt, m0.clone(), i(0)), add(m0.clone(), period.clone()), m0);
                            let m1 = self.bind(m1, ScalarType::I64, out);
                            let m2 = Expr::select(cmp(CmpOp::Lt, m1.clone(), n.clone()), m1.clone(), sub(period, m1));
                            max(i(0), min(m2, sub(n, i(1))))
                        }
                    };
                    inner.push(self.bind(c, ScalarType::I64, out));
                }
                let xv = self.value(opnd(0), &inner, out)?;
                match inside {
                    Some(ok) => Expr::select(ok, xv, scalar_const(rty, *value)),
                    None => xv,
                }
            }
            Op::Tile { .. } => {
                let from = oshape(0);
                let mut inner = Vec::with_capacity(from.len());
                for (k, dm) in from.iter().enumerate() {
                    let n = self.dim(dm)?;
                    inner.push(self.bind(Expr::binary(BinaryOp::Rem, coords[k].clone(), n), ScalarType::I64, out));
                }
                self.value(opnd(0), &inner, out)?
            }
            Op::GatherElements { axis } => {
                let data = oshape(0);
                let a = axis_of(*axis, data.len(), name)?;
                if self.scalar(opnd(1), name)? != ScalarType::I64 {
                    return Err(unsupported(name, "indices must be i64"));
                }
                let idx = self.value(opnd(1), coords, out)?;
                let dim = self.dim(&data[a])?;
                let w = Expr::select(cmp(CmpOp::Lt, idx.clone(), i(0)), add(idx.clone(), dim.clone()), idx);
                let w = self.bind(max(i(0), min(w, sub(dim, i(1)))), ScalarType::I64, out);
                let mut inner = coords.to_vec();
                inner[a] = w;
                self.value(opnd(0), &inner, out)?
            }
            Op::CumSum { axis, exclusive, reverse } => {
                let a = axis_of(*axis, rshape.len(), name)?;
                let x = opnd(0);
                let along = vec![rshape[a].clone()];
                let (c, ex, rev) = (coords[a].clone(), *exclusive, *reverse);
                let zero = scalar_const(rty, 0.0);
                self.accumulate(&along, zero.clone(), rty, out, &mut |g, acc, inner, body| {
                    let k = inner[0].clone();
                    let mut xc = coords.to_vec();
                    xc[a] = k.clone();
                    let xv = g.value(x, &xc, body)?;
                    let take = match (rev, ex) {
                        (false, false) => cmp(CmpOp::Le, k, c.clone()),
                        (false, true) => cmp(CmpOp::Lt, k, c.clone()),
                        (true, false) => cmp(CmpOp::Le, c.clone(), k),
                        (true, true) => cmp(CmpOp::Lt, c.clone(), k),
                    };
                    Ok(add(acc, Expr::select(take, xv, zero.clone())))
                })?
            }
            Op::Trilu { upper, k } => {
                let r = rshape.len();
                if r < 2 {
                    return Err(unsupported(name, "rank below 2"));
                }
                let (row, col) = (coords[r - 2].clone(), coords[r - 1].clone());
                let lim = add(row, i(*k));
                let keep = if *upper { cmp(CmpOp::Le, lim, col) } else { cmp(CmpOp::Le, col, lim) };
                let xv = self.value(opnd(0), coords, out)?;
                Expr::select(keep, xv, scalar_const(rty, 0.0))
            }
            Op::Attention { scale, causal } if d.operands.len() <= 4 && v == d.results[0] => {
                let (qs, ks, vs) = (oshape(0), oshape(1), oshape(2));
                if qs.len() != 4 || ks.len() != 4 || vs.len() != 4 || !rty.is_float() || coords.len() != 4 {
                    return Err(unsupported(name, "q, k, v of rank 4 and a float result"));
                }
                let (Some(hq), Some(hkv), Some(dk)) = (qs[1].as_fixed(), ks[1].as_fixed(), qs[3].as_fixed()) else {
                    return Err(unsupported(name, "static heads and head size"));
                };
                if hkv <= 0 || hq % hkv != 0 || self.scalar(opnd(1), name)? != rty || self.scalar(opnd(2), name)? != rty
                {
                    return Err(unsupported(name, "query heads a multiple of kv heads, q/k/v of one type"));
                }
                let h = coords[1].clone();
                let hk = if hq == hkv {
                    h.clone()
                } else {
                    self.bind(Expr::binary(BinaryOp::Div, h, i(hq / hkv)), ScalarType::I64, out)
                };
                let (t, sq) = (self.size(&ks[2])?, self.size(&qs[2])?);
                let a = AttentionScore {
                    q: opnd(0),
                    k: opnd(1),
                    mask: d.operands.get(3).copied(),
                    full: vec![qs[0].clone(), qs[1].clone(), qs[2].clone(), ks[2].clone()],
                    bhi: coords[..3].to_vec(),
                    hk: hk.clone(),
                    head: qs[3].clone(),
                    scale: scale.unwrap_or(1.0 / (dk as f64).sqrt()),
                    // Bottom-right aligned causality: query i sees keys j ≤ i + (T - S).
                    causal_limit: causal.then(|| add(coords[2].clone(), sub(size_expr(&t), size_expr(&sq)))),
                    ty: rty,
                };
                let keys = vec![ks[2].clone()];
                let ninf = scalar_const(rty, f64::NEG_INFINITY);
                let m = self.accumulate(&keys, ninf.clone(), rty, out, &mut |g, acc, inner, body| {
                    Ok(max(acc, g.attention_score(&a, &inner[0], body)?))
                })?;
                let sum = self.accumulate(&keys, scalar_const(rty, 0.0), rty, out, &mut |g, acc, inner, body| {
                    let sc = g.attention_score(&a, &inner[0], body)?;
                    Ok(add(acc, Expr::unary(UnaryOp::Exp, sub(sc, m.clone()))))
                })?;
                let (vv, e) = (opnd(2), coords[3].clone());
                let o = self.accumulate(&keys, scalar_const(rty, 0.0), rty, out, &mut |g, acc, inner, body| {
                    let sc = g.attention_score(&a, &inner[0], body)?;
                    let w = Expr::binary(BinaryOp::Div, Expr::unary(UnaryOp::Exp, sub(sc, m.clone())), sum.clone());
                    let x = g.value(vv, &[a.bhi[0].clone(), hk.clone(), inner[0].clone(), e.clone()], body)?;
                    Ok(add(acc, mul(w, x)))
                })?;
                // A fully masked row yields zeros.
                Expr::select(cmp(CmpOp::Eq, m, ninf), scalar_const(rty, 0.0), o)
            }
            Op::Pow
                if self.scalar(opnd(0), name)? == ScalarType::I64 && self.scalar(opnd(1), name)? == ScalarType::I64 =>
            {
                let mut args = Vec::with_capacity(2);
                for k in 0..2 {
                    let v = self.broadcast_operand(opnd(k), coords, &rshape, name, out)?;
                    args.push(self.bind(v, ScalarType::I64, out));
                }
                self.int_pow(args[0].clone(), args[1].clone(), out)
            }
            Op::Pow
                if self.splat_literal(opnd(1)) == Some(2.0) && self.scalar(opnd(0), name)? == rty && rty.is_float() =>
            {
                // The square of a hand-written norm: `x·x`, exact where e^(2·ln|x|) rounds,
                // and no exp/log per element.
                let x = self.broadcast_operand(opnd(0), coords, &rshape, name, out)?;
                mul(x.clone(), x)
            }
            op if op.is_unary_elementwise()
                || op.is_binary_elementwise()
                || matches!(op, Op::Where | Op::Cast { .. } | Op::Identity | Op::Gelu { .. } | Op::SiluMul) =>
            {
                // Elementwise, broadcasting.
                let mut args = Vec::with_capacity(d.operands.len());
                let mut tys = Vec::with_capacity(d.operands.len());
                for k in 0..d.operands.len() {
                    args.push(self.broadcast_operand(opnd(k), coords, &rshape, name, out)?);
                    tys.push(self.scalar(opnd(k), name)?);
                }
                scalar_op(op, args, &tys, rty)?
            }
            op => return Err(unsupported(op.name(), "not lowered by the coordinate template yet")),
        })
    }
}

/// A kernel copying a dense tensor of `dtype` and `shape` from buffer 0 to buffer 1 (an
/// entry-point output that is an input, a constant, or another output's storage).
pub(crate) fn copy_kernel(name: &str, dtype: ferrumc_ir::DType, shape: &[Dim]) -> CResult<Kernel> {
    if ScalarType::of_dtype(dtype).is_none() {
        return Err(unsupported("copy", format!("dtype {dtype} is not supported in kernels yet")));
    }
    let mut g = Gen {
        f: &Function::new("copy"),
        members: HashSet::new(),
        dims: Vec::new(),
        buffers: Vec::new(),
        buffer_values: Vec::new(),
        buffer_of: HashMap::new(),
        locals: Vec::new(),
        next_var: 1,
        caches: Vec::new(),
    };
    let numel = g.product(shape)?;
    let iv = g.fresh_var();
    let index = IndexExpr::var(Var::PARALLEL, Size::constant(1)).plus_var(iv, &Size::constant(1));
    let body = vec![Stmt::Loop {
        var: iv,
        extent: Extent::ParallelTile,
        body: vec![Stmt::Store { buffer: 1, index: index.clone(), value: Expr::Load { buffer: 0, index } }],
    }];
    Ok(Kernel {
        name: name.to_string(),
        buffers: vec![BufferParam { dtype, role: BufferRole::Input }, BufferParam { dtype, role: BufferRole::Output }],
        dims: g.dims,
        parallel: LoopExtent { extent: numel, tile: ELEMENT_TILE * 16 },
        locals: Vec::new(),
        body,
    })
}

fn size_expr(s: &Size) -> Expr {
    match s.as_constant() {
        Some(c) => Expr::i64(c),
        None => Expr::Dim(s.clone()),
    }
}

/// What one attention score reads (see `Gen::attention_score`).
struct AttentionScore {
    q: ValueId,
    k: ValueId,
    mask: Option<ValueId>,
    /// The score tensor's shape `[B, Hq, S, T]` (masks broadcast to it).
    full: Vec<Dim>,
    /// The output's `b`, `h`, `i` coordinates.
    bhi: Vec<Expr>,
    /// The kv head of `h`.
    hk: Expr,
    /// The head size (dot product length).
    head: Dim,
    scale: f64,
    /// Keys past this index are masked (causal attention).
    causal_limit: Option<Expr>,
    ty: ScalarType,
}

/// The smallest and largest value of an integer dtype (the identities of `reduce_max` and
/// `reduce_min`, as in the interpreter); `i64`'s range for other dtypes.
fn int_range(dtype: ferrumc_ir::DType) -> (i64, i64) {
    use ferrumc_ir::DType;
    match dtype {
        DType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::U8 => (0, u8::MAX.into()),
        DType::Bool => (0, 1),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Whether `op`'s results are always values its operands (or attributes of its result's
/// dtype) already hold, so a narrow result needs no [`UnaryOp::Narrow`].
pub(crate) fn preserves_values(op: &Op) -> bool {
    matches!(
        op,
        Op::Where
            | Op::Max
            | Op::Min
            | Op::Relu
            | Op::Identity
            | Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Transpose { .. }
            | Op::Expand
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Gather { .. }
            | Op::ReduceMax { .. }
            | Op::ReduceMin { .. }
    )
}

fn scalar_const(ty: ScalarType, x: f64) -> Expr {
    match ty {
        ScalarType::F32 => Expr::f32(x as f32),
        ScalarType::F64 => Expr::f64(x),
        ScalarType::I64 => {
            let v = if x.is_infinite() {
                if x > 0.0 {
                    i64::MAX
                } else {
                    i64::MIN
                }
            } else {
                x as i64
            };
            Expr::i64(v)
        }
        ScalarType::Bool => Expr::Const(Const::Bool(x != 0.0)),
    }
}

/// One elementwise op on scalar operands of types `tys`, giving `out`.
fn scalar_op(op: &Op, args: Vec<Expr>, tys: &[ScalarType], out: ScalarType) -> CResult<Expr> {
    let name = op.name();
    let t0 = tys.first().copied().unwrap_or(ScalarType::F32);
    let float = |t: ScalarType| {
        if t.is_float() {
            Ok(())
        } else {
            Err(unsupported(name, format!("{} operands", t.name())))
        }
    };
    // A float constant of the operands' type.
    let fc = |x: f64| scalar_const(t0, x);
    let numeric = |t: ScalarType| if t != ScalarType::Bool { Ok(()) } else { Err(unsupported(name, "bool operands")) };
    let boolean =
        |t: ScalarType| if t == ScalarType::Bool { Ok(()) } else { Err(unsupported(name, "non-bool operands")) };
    let mut args = args.into_iter();
    let mut a = || args.next().unwrap_or(Expr::i64(0));
    let bin = Expr::binary;
    let un = Expr::unary;
    Ok(match op {
        Op::Add | Op::Sub | Op::Mul | Op::Max | Op::Min => {
            numeric(t0)?;
            let b = match op {
                Op::Add => BinaryOp::Add,
                Op::Sub => BinaryOp::Sub,
                Op::Mul => BinaryOp::Mul,
                Op::Max => BinaryOp::Max,
                _ => BinaryOp::Min,
            };
            let (x, y) = (a(), a());
            bin(b, x, y)
        }
        Op::Div if t0 == ScalarType::I64 => {
            // A zero divisor would trap the CPU; the interpreter reports it as an error, the
            // kernel yields 0 instead of crashing the process.
            let (x, y) = (a(), a());
            let zero = cmp(CmpOp::Eq, y.clone(), Expr::i64(0));
            let safe = Expr::select(zero.clone(), Expr::i64(1), y);
            Expr::select(zero, Expr::i64(0), bin(BinaryOp::Div, x, safe))
        }
        Op::Div => {
            float(t0)?;
            let (x, y) = (a(), a());
            bin(BinaryOp::Div, x, y)
        }
        Op::Fmod if t0 == ScalarType::I64 => {
            // C `%`: the sign of the dividend (a zero divisor yields 0, as for `div`).
            let (x, y0) = (a(), a());
            let zero = cmp(CmpOp::Eq, y0.clone(), Expr::i64(0));
            let y = Expr::select(zero.clone(), Expr::i64(1), y0);
            Expr::select(zero, Expr::i64(0), bin(BinaryOp::Rem, x, y))
        }
        Op::Fmod => {
            float(t0)?;
            let (x, y) = (a(), a());
            bin(BinaryOp::Fmod, x, y)
        }
        Op::Mod if t0.is_float() => {
            // numpy's `mod` (Python `%`): C `fmod`, moved to the divisor's sign when the
            // signs differ; a zero remainder takes the divisor's sign.
            let (x, y) = (a(), a());
            let r = bin(BinaryOp::Fmod, x, y.clone());
            let (r_neg, y_neg) = (cmp(CmpOp::Lt, r.clone(), fc(0.0)), cmp(CmpOp::Lt, y.clone(), fc(0.0)));
            let differ = Expr::select(r_neg, not(y_neg.clone()), y_neg.clone());
            let fixed = Expr::select(differ, add(r.clone(), y), r.clone());
            let signed_zero = Expr::select(y_neg, fc(-0.0), fc(0.0));
            Expr::select(cmp(CmpOp::Eq, r, fc(0.0)), signed_zero, fixed)
        }
        Op::Mod if t0 == ScalarType::I64 => {
            // Python `%`: the sign of the divisor (a zero divisor yields 0, as for `div`).
            let (x, y0) = (a(), a());
            let y = Expr::select(cmp(CmpOp::Eq, y0.clone(), Expr::i64(0)), Expr::i64(1), y0);
            let r = bin(BinaryOp::Rem, x, y.clone());
            let fix = Expr::select(
                cmp(CmpOp::Ne, cmp_i64_sign(r.clone()), cmp_i64_sign(y.clone())),
                add(r.clone(), y),
                r.clone(),
            );
            Expr::select(cmp(CmpOp::Eq, r, Expr::i64(0)), Expr::i64(0), fix)
        }
        Op::Neg | Op::Abs => {
            numeric(t0)?;
            un(if matches!(op, Op::Neg) { UnaryOp::Neg } else { UnaryOp::Abs }, a())
        }
        Op::Relu => {
            numeric(t0)?;
            let z = scalar_const(t0, 0.0);
            bin(BinaryOp::Max, a(), z)
        }
        Op::Exp
        | Op::Tanh
        | Op::Sigmoid
        | Op::Sqrt
        | Op::Rsqrt
        | Op::Reciprocal
        | Op::Erf
        | Op::Sin
        | Op::Cos
        | Op::Log => {
            float(t0)?;
            let u = match op {
                Op::Log => UnaryOp::Log,
                Op::Sin => UnaryOp::Sin,
                Op::Cos => UnaryOp::Cos,
                Op::Exp => UnaryOp::Exp,
                Op::Tanh => UnaryOp::Tanh,
                Op::Sigmoid => UnaryOp::Sigmoid,
                Op::Sqrt => UnaryOp::Sqrt,
                Op::Rsqrt => UnaryOp::Rsqrt,
                Op::Reciprocal => UnaryOp::Recip,
                _ => UnaryOp::Erf,
            };
            un(u, a())
        }
        Op::Silu => {
            float(t0)?;
            let x = a();
            mul(x.clone(), un(UnaryOp::Sigmoid, x))
        }
        Op::SiluMul => {
            float(t0)?;
            let (g, u) = (a(), a());
            mul(mul(g.clone(), un(UnaryOp::Sigmoid, g)), u)
        }
        Op::Gelu { approximate } => {
            float(t0)?;
            let x = a();
            let inner = match approximate {
                GeluApproximation::None => un(UnaryOp::Erf, mul(x.clone(), fc(std::f64::consts::FRAC_1_SQRT_2))),
                GeluApproximation::Tanh => {
                    let x3 = mul(mul(x.clone(), x.clone()), x.clone());
                    let poly = add(x.clone(), mul(fc(0.044715), x3));
                    un(UnaryOp::Tanh, mul(fc(0.797_884_560_802_865_4), poly))
                }
            };
            mul(mul(fc(0.5), x), add(fc(1.0), inner))
        }
        Op::LeakyRelu { alpha } => {
            float(t0)?;
            let x = a();
            Expr::select(cmp(CmpOp::Lt, x.clone(), fc(0.0)), mul(x.clone(), fc(*alpha)), x)
        }
        Op::Clip { min: lo, max: hi } => {
            numeric(t0)?;
            let mut x = a();
            if let Some(lo) = lo {
                x = max(x, scalar_const(t0, *lo));
            }
            if let Some(hi) = hi {
                x = min(x, scalar_const(t0, *hi));
            }
            x
        }
        Op::Sign => {
            numeric(t0)?;
            let x = a();
            let (z, one) = (scalar_const(t0, 0.0), scalar_const(t0, 1.0));
            Expr::select(
                cmp(CmpOp::Lt, z.clone(), x.clone()),
                one,
                Expr::select(cmp(CmpOp::Lt, x.clone(), z.clone()), scalar_const(t0, -1.0), x),
            )
        }
        Op::Where => {
            if tys.len() != 3 || tys[0] != ScalarType::Bool || tys[1] != tys[2] {
                return Err(unsupported(name, "operand types"));
            }
            let (c, x, y) = (a(), a(), a());
            Expr::select(c, x, y)
        }
        Op::Equal | Op::Less | Op::LessEqual | Op::Greater | Op::GreaterEqual => {
            let (x, y) = (a(), a());
            let (x, y) = if t0 == ScalarType::Bool {
                (Expr::cast(ScalarType::I64, x), Expr::cast(ScalarType::I64, y))
            } else {
                (x, y)
            };
            match op {
                Op::Equal => cmp(CmpOp::Eq, x, y),
                Op::Less => cmp(CmpOp::Lt, x, y),
                Op::LessEqual => cmp(CmpOp::Le, x, y),
                Op::Greater => cmp(CmpOp::Lt, y, x),
                _ => cmp(CmpOp::Le, y, x),
            }
        }
        Op::And | Op::Or | Op::Xor => {
            boolean(t0)?;
            let (x, y) = (a(), a());
            let (t, f) = (Expr::Const(Const::Bool(true)), Expr::Const(Const::Bool(false)));
            match op {
                Op::And => Expr::select(x, y, f),
                Op::Or => Expr::select(x, t, y),
                _ => Expr::select(x, not(y.clone()), y),
            }
        }
        Op::Not => {
            boolean(t0)?;
            not(a())
        }
        Op::IsNan => {
            float(t0)?;
            let x = a();
            // Ordered equality is false only for NaN.
            not(cmp(CmpOp::Eq, x.clone(), x))
        }
        Op::Softplus => {
            float(t0)?;
            let x = a();
            // ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|), finite for large |x|.
            let ax = Expr::unary(UnaryOp::Abs, x.clone());
            add(max(x, fc(0.0)), un(UnaryOp::Log, add(fc(1.0), un(UnaryOp::Exp, Expr::unary(UnaryOp::Neg, ax)))))
        }
        Op::Pow if t0 == ScalarType::F64 || (t0 == ScalarType::I64 && tys.get(1).is_some_and(|t| t.is_float())) => {
            // C `pow` in f64 (the runtime's); an integer base with a float exponent is
            // computed in f64 and truncated like `cast` (as the interpreter does).
            let (x, y) = (a(), a());
            let wide = |e: Expr, t: Option<&ScalarType>| {
                if t == Some(&ScalarType::F64) {
                    e
                } else {
                    Expr::cast(ScalarType::F64, e)
                }
            };
            let p = bin(BinaryOp::Pow, wide(x, tys.first()), wide(y, tys.get(1)));
            if t0 == ScalarType::I64 {
                Expr::cast(ScalarType::I64, p)
            } else {
                p
            }
        }
        Op::Pow => {
            // |a|^b = e^(b·ln|a|); a negative base needs an integer exponent (sign from its
            // parity, NaN otherwise); b = 0 gives 1 (also for a = 0).
            if t0 != ScalarType::F32 {
                return Err(unsupported(name, format!("{} base", t0.name())));
            }
            let (x, y) = (a(), a());
            let y = match tys.get(1) {
                Some(ScalarType::I64) => Expr::cast(ScalarType::F32, y),
                Some(ScalarType::F32) => y,
                _ => return Err(unsupported(name, "exponent type")),
            };
            let mag = un(UnaryOp::Exp, mul(y.clone(), un(UnaryOp::Log, Expr::unary(UnaryOp::Abs, x.clone()))));
            let yi = Expr::cast(ScalarType::I64, y.clone());
            let is_int = cmp(CmpOp::Eq, Expr::cast(ScalarType::F32, yi.clone()), y.clone());
            let odd = cmp(CmpOp::Ne, Expr::binary(BinaryOp::Rem, yi, Expr::i64(2)), Expr::i64(0));
            let neg = Expr::select(
                is_int,
                Expr::select(odd, Expr::unary(UnaryOp::Neg, mag.clone()), mag.clone()),
                Expr::f32(f32::NAN),
            );
            let r = Expr::select(cmp(CmpOp::Lt, x, Expr::f32(0.0)), neg, mag);
            Expr::select(cmp(CmpOp::Eq, y, Expr::f32(0.0)), Expr::f32(1.0), r)
        }
        Op::Cast { .. } => {
            let x = a();
            match (t0, out) {
                (s, t) if s == t => x,
                (s, ScalarType::Bool) => cmp(CmpOp::Ne, x, scalar_const(s, 0.0)),
                (_, ScalarType::F32 | ScalarType::F64 | ScalarType::I64) => Expr::cast(out, x),
            }
        }
        Op::Identity => a(),
        other => return Err(unsupported(other.name(), "not lowered by the coordinate template yet")),
    })
}

/// `x < 0` as an i64 0/1, for sign comparisons.
fn cmp_i64_sign(x: Expr) -> Expr {
    Expr::cast(ScalarType::I64, cmp(CmpOp::Lt, x, Expr::i64(0)))
}

/// The input coordinates of a reduction: the kept axes' coordinates from `base`, the
/// reduced axes (`None` in `base`, listed in `reduced`) from the reduction loop's `inner`
/// variables in order.
fn reduced_coords(base: &[Option<Expr>], reduced: &[usize], inner: &[Expr]) -> Vec<Expr> {
    let mut it = inner.iter();
    base.iter()
        .enumerate()
        .map(|(k, b)| match b {
            Some(e) => e.clone(),
            None => {
                debug_assert!(reduced.contains(&k));
                it.next().cloned().unwrap_or(Expr::i64(0))
            }
        })
        .collect()
}
