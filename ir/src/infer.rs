//! Shape and dtype inference: the result types every op produces from its operand types.
//!
//! [`infer_types`] implements the semantics documented on each [`Op`] variant, with
//! symbolic dims kept exact through [`Dim`] arithmetic wherever the result is a polynomial
//! in the input symbols. The verifier compares declared result types against these with
//! [`types_agree`]; frontends and passes build new ops with [`add_inferred`].
//!
//! Rules shared by all ops:
//!
//! * **Operand counts** are checked against [`Op::operand_range`] first, then op-specific
//!   counts (`slice` takes 1 or 3 operands; `quantized_linear` with a block-quantized
//!   weight takes 2–3, with an `i8` weight 3–4; `attention` returns 1 result without a KV
//!   cache and 3 with one).
//! * **Quantized dtypes** (`q8_0`, `q4_0`, `int4<G>`) are legal only as the `w` operand of
//!   `quantized_linear`; any other op consuming one is an error. Only `cast` produces one
//!   (from a float operand with a static last dim that is a multiple of the block
//!   length); `constant`/`constant_of_shape` literals refuse them.
//! * **Dtypes**: elementwise binary ops need equal dtypes (`pow`'s exponent may be any
//!   numeric dtype); float-only ops (those the op table documents as "Float") reject
//!   integers and bool; logical ops need bool; index operands (`gather*`, `scatter_nd`)
//!   are `i64` or `i32`; shape operands (`reshape`, `expand`, `slice`,
//!   `constant_of_shape`) and `position_ids` are `i64`.
//! * **Dims that must be equal** (matmul contraction, concat's other dims, norm weights,
//!   attention heads …): two static dims, or two expressions differing by a non-zero
//!   constant (`?s` vs `?s+1`), that differ are an error. Otherwise the result keeps the
//!   most informative side: static over symbolic over `?`. Two different symbolic
//!   expressions (`?a` vs `?b`) are accepted (they may be equal at run time) and the first
//!   is kept.
//! * **Broadcasting** (numpy, right-aligned): a static 1 stretches to the other side; two
//!   static dims that differ (neither 1) are an error; equal dims stay; a known dim against
//!   `?` keeps the known one; a static non-1 dim against a symbolic one keeps the static
//!   one (the symbol must be 1 or equal at run time); two different symbolic expressions
//!   give `?`.
//! * **Axes** may be negative (counted from the end) and must lie in range; axis lists
//!   must be distinct.
//!
//! Where inference cannot be exact it returns `?` (which agrees with any declared dim):
//! `range` without constant operands (length `?`); `reshape`/`expand`/`slice`/
//! `constant_of_shape` whose shape operands are not produced by `constant` ops (the
//! affected dims are `?`); `slice` on a symbolic or `?` dim except in the exact cases
//! listed on [`slice_dim`]; broadcasting two different symbolic dims.
//!
//! Ops that take their shape from the declared result type (static `reshape`, static
//! `expand`, `split`, static `constant_of_shape`) need `declared` and error without it;
//! their dtype still comes from the operands (or the literal), so a declared dtype that
//! differs is caught by [`types_agree`].

use crate::dim::Dim;
use crate::dtype::DType;
use crate::graph::{Function, ValueDef, ValueId};
use crate::op::{Op, PACK_NR, VARIADIC};
use crate::tensor::{checked_numel, Tensor, TensorData};
use crate::types::{TensorType, MAX_RANK};

/// Slice ends at or beyond this are "to the end of the axis" on symbolic dims (exporters
/// write `INT_MAX` or `INT64_MAX`).
const SLICE_TO_END: i64 = i32::MAX as i64;

/// Infer result types of `op` applied to operands of the given types.
///
/// `consts[i]` is `Some` when operand `i` is produced by a `constant` op (lets dynamic
/// reshape/expand/slice/range/constant_of_shape with constant shape operands infer exact
/// shapes); it may be shorter than `operands`. `declared` are the result types written in
/// the IR (`None` when building new ops); ops that take their shape from the declared type
/// need it and error without it.
pub fn infer_types(
    op: &Op,
    operands: &[&TensorType],
    consts: &[Option<&Tensor>],
    declared: Option<&[TensorType]>,
) -> Result<Vec<TensorType>, String> {
    let (lo, hi) = op.operand_range();
    let n = operands.len();
    if n < lo || n > hi {
        return Err(format!("{} expects {}, found {n}", op.name(), count_phrase(lo, hi, "operand")));
    }
    let cx = Cx { op, tys: operands, consts, declared, names: operand_names(op, operands) };
    for (i, t) in operands.iter().enumerate() {
        if t.rank() > MAX_RANK {
            return Err(format!("{}: rank {} exceeds the maximum rank {MAX_RANK}", cx.label(i), t.rank()));
        }
        if t.dtype.is_quantized() && !(matches!(op, Op::QuantizedLinear) && i == 1) {
            return Err(format!(
                "{}: quantized dtype {} is only allowed as the weight operand of quantized_linear",
                cx.label(i),
                t.dtype
            ));
        }
    }
    let out = cx.infer()?;
    for (k, t) in out.iter().enumerate() {
        if t.rank() > MAX_RANK {
            return Err(format!("result {k} would have rank {}, above the maximum rank {MAX_RANK}", t.rank()));
        }
    }
    Ok(out)
}

/// Append `op` to `f` with inferred result types (a builder helper for frontends and
/// passes). Operands produced by `constant` ops in `f` supply `consts`. Errors (and leaves
/// `f` untouched) when an operand does not exist or is dead, or inference fails.
pub fn add_inferred(f: &mut Function, op: Op, operands: Vec<ValueId>) -> Result<Vec<ValueId>, String> {
    let types = {
        let fr: &Function = f;
        let mut tys = Vec::with_capacity(operands.len());
        let mut consts = Vec::with_capacity(operands.len());
        for (i, &v) in operands.iter().enumerate() {
            let data = fr
                .try_value(v)
                .ok_or_else(|| format!("operand {i}: value {v} does not exist in function `{}`", fr.name))?;
            if let ValueDef::Result { op: def, .. } = data.def {
                if fr.op(def).is_none() {
                    return Err(format!("operand {i}: value {v} is defined by erased op {def}"));
                }
            }
            tys.push(&data.ty);
            consts.push(constant_value(fr, v));
        }
        infer_types(&op, &tys, &consts, None)?
    };
    let id = f.add_op(op, operands, types);
    Ok(f.op(id).map(|d| d.results.clone()).unwrap_or_default())
}

/// The literal of `v` when a live `constant` op produces it.
pub fn constant_value(f: &Function, v: ValueId) -> Option<&Tensor> {
    let producer = f.producer(v)?;
    match &f.op(producer)?.op {
        Op::Constant { value } => Some(value),
        _ => None,
    }
}

/// Whether a declared type agrees with an inferred one: same dtype, same rank, and per
/// dim: equal, or either side `?` ([`Dim::Unknown`]). Two known dims that differ (static
/// 3 vs 4, or `?a` vs `?b`) disagree.
pub fn types_agree(declared: &TensorType, inferred: &TensorType) -> bool {
    declared.dtype == inferred.dtype
        && declared.rank() == inferred.rank()
        && declared.shape.iter().zip(&inferred.shape).all(|(a, b)| a.is_unknown() || b.is_unknown() || a == b)
}

// ---------------------------------------------------------------------- dim rules

fn is_one(d: &Dim) -> bool {
    d.as_fixed() == Some(1)
}

/// True when `a` and `b` are provably different: both known and differing by a non-zero
/// constant (covers two different static dims, and `?s` vs `?s+1`).
fn provably_differ(a: &Dim, b: &Dim) -> bool {
    a.is_known() && b.is_known() && matches!(a.sub(b).as_fixed(), Some(x) if x != 0)
}

/// Merge two dims that must be equal: `None` when provably different, otherwise the most
/// informative side (static, then symbolic, then `?`; the first of two symbolic ones).
fn unify_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    if provably_differ(a, b) {
        return None;
    }
    if a.is_unknown() {
        return Some(b.clone());
    }
    if b.is_unknown() || a.as_fixed().is_some() || b.as_fixed().is_none() {
        return Some(a.clone());
    }
    Some(b.clone())
}

/// Broadcast two dims (numpy rules, see the module docs). `None` when incompatible.
fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    if is_one(a) {
        return Some(b.clone());
    }
    if is_one(b) {
        return Some(a.clone());
    }
    if let (Some(x), Some(y)) = (a.as_fixed(), b.as_fixed()) {
        return (x == y).then(|| a.clone());
    }
    if a == b || b.is_unknown() {
        return Some(a.clone());
    }
    if a.is_unknown() {
        return Some(b.clone());
    }
    if a.as_fixed().is_some() {
        return Some(a.clone());
    }
    if b.as_fixed().is_some() {
        return Some(b.clone());
    }
    Some(Dim::Unknown)
}

/// Normalise a possibly negative axis against `rank`.
fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let a = if axis < 0 { axis.checked_add(r)? } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// Result length of ONNX Slice on a static dim `d`.
fn slice_len_static(d: i64, start: i64, end: i64, step: i64) -> i64 {
    let (d, start, end, step) = (i128::from(d), i128::from(start), i128::from(end), i128::from(step));
    let rel = |x: i128| if x < 0 { x + d } else { x };
    let len = if step > 0 {
        let s = rel(start).clamp(0, d);
        let e = rel(end).clamp(0, d);
        if e > s {
            (e - s + step - 1) / step
        } else {
            0
        }
    } else {
        let s = rel(start).clamp(0, (d - 1).max(0));
        let e = rel(end).clamp(-1, d - 1);
        if d == 0 || s <= e {
            0
        } else {
            (s - e + (-step) - 1) / (-step)
        }
    };
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// Result length of ONNX Slice along a dim that may be symbolic.
///
/// Static dims are computed exactly (negative indices counted from the end, clamping,
/// negative steps). On a symbolic or `?` dim `d` the result is exact in these cases, and
/// `?` otherwise (notably every negative start):
/// * `start == 0`, `end ≥ i32::MAX`, `step == 1` → `d`;
/// * `start = s > 0`, `end ≥ i32::MAX`, `step == 1` → `d - s`;
/// * `start = s ≥ 0`, `end = -k < 0`, `step == 1` → `d - k - s`;
/// * `x[0:1]` and `x[-1:]` (`step == 1`) → `1`: the first or last element, assuming symbolic
///   dims are non-empty;
/// * start and end on the same side (both ≥ 0 or both < 0) with an empty range for the
///   step's direction → `0`.
///
/// The `d - s` forms assume the symbolic dim is at least as long as the part the slice
/// cuts off, and the one-element forms that it is not empty (otherwise the run time sees a
/// size that disagrees with the declared type and reports it). Longer fixed-length reads
/// (`x[0:4]`) stay `?`: exporters use them on dims that may legitimately be shorter, where
/// ONNX clamps.
pub fn slice_dim(d: &Dim, start: i64, end: i64, step: i64) -> Dim {
    if let Some(n) = d.as_fixed() {
        return Dim::fixed(slice_len_static(n, start, end, step));
    }
    let same_side = (start >= 0) == (end >= 0);
    if same_side && ((step > 0 && end <= start) || (step < 0 && end >= start)) {
        return Dim::fixed(0);
    }
    if step == 1 && ((start == 0 && end == 1) || (start == -1 && end >= SLICE_TO_END)) {
        return Dim::fixed(1);
    }
    if step == 1 && start >= 0 {
        if end >= SLICE_TO_END {
            return if start == 0 { d.clone() } else { d.sub(&Dim::fixed(start)) };
        }
        if end < 0 {
            if let Some(cut) = start.checked_sub(end) {
                return d.sub(&Dim::fixed(cut));
            }
        }
    }
    Dim::Unknown
}

fn shape_str(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

fn count_phrase(lo: usize, hi: usize, what: &str) -> String {
    if lo == hi {
        format!("{lo} {what}{}", if lo == 1 { "" } else { "s" })
    } else if hi == VARIADIC {
        format!("at least {lo} {what}{}", if lo == 1 { "" } else { "s" })
    } else {
        format!("{lo} to {hi} {what}s")
    }
}

/// Operand names used in messages ("operand 1 (b)"), following each op's documentation.
fn operand_names(op: &Op, operands: &[&TensorType]) -> Vec<String> {
    let names: &[&str] = match op {
        Op::Constant { .. } => &[],
        Op::Where => &["cond", "a", "b"],
        Op::MatMul => &["a", "b"],
        Op::Gemm { .. } => &["a", "b", "c"],
        Op::Linear => &["x", "w", "bias"],
        Op::PackedLinear { .. } => &["x", "wp", "bias"],
        Op::QuantizedLinear => {
            if operands.get(1).map(|t| t.dtype) == Some(DType::I8) {
                &["x", "w", "scale", "bias"]
            } else {
                &["x", "w", "bias"]
            }
        }
        Op::Reshape { .. } | Op::Expand => &["x", "shape"],
        Op::Slice { .. } => &["x", "starts", "ends"],
        Op::Gather { .. } | Op::GatherElements { .. } | Op::GatherNd { .. } => &["data", "indices"],
        Op::ScatterNd { .. } => &["data", "indices", "updates"],
        Op::ConstantOfShape { .. } => &["shape"],
        Op::Range => &["start", "limit", "delta"],
        Op::LayerNorm { .. } => &["x", "scale", "bias"],
        Op::RmsNorm { .. } => &["x", "weight"],
        Op::RmsNormResidual { .. } => &["x", "residual", "weight"],
        Op::RotaryEmbedding { .. } => &["x", "cos", "sin", "position_ids"],
        Op::Attention { .. } => match operands.len() {
            4 => &["q", "k", "v", "mask"],
            5 => &["q", "k", "v", "past_k", "past_v"],
            _ => &["q", "k", "v", "mask", "past_k", "past_v"],
        },
        Op::SiluMul => &["gate", "up"],
        Op::Sample { .. } => &["logits", "history"],
        Op::Concat { .. } => return (0..operands.len()).map(|i| format!("x{i}")).collect(),
        _ if op.is_binary_elementwise() => &["a", "b"],
        _ => &["x"],
    };
    names.iter().map(|s| s.to_string()).collect()
}

/// What a 1-D i64 shape-like operand tells us.
enum ShapeArg {
    /// Produced by a constant: the values.
    Const(Vec<i64>),
    /// Not constant, static length.
    Len(usize),
    /// Not constant, length not static.
    UnknownLen,
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Float,
    Numeric,
    Bool,
    Index,
    Any,
}

impl Class {
    fn admits(self, d: DType) -> bool {
        match self {
            Class::Float => d.is_float(),
            Class::Numeric => d.is_float() || d.is_int(),
            Class::Bool => d.is_bool(),
            Class::Index => matches!(d, DType::I64 | DType::I32),
            Class::Any => !d.is_quantized(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Class::Float => "a float dtype (f32, f16, bf16, f64)",
            Class::Numeric => "a numeric dtype",
            Class::Bool => "bool",
            Class::Index => "an index dtype (i64 or i32)",
            Class::Any => "a non-quantized dtype",
        }
    }
}

fn one(t: TensorType) -> Vec<TensorType> {
    vec![t]
}

/// Inference context for one op application.
struct Cx<'a> {
    op: &'a Op,
    tys: &'a [&'a TensorType],
    consts: &'a [Option<&'a Tensor>],
    declared: Option<&'a [TensorType]>,
    names: Vec<String>,
}

impl<'a> Cx<'a> {
    // ------------------------------------------------------------------ access and checks

    fn label(&self, i: usize) -> String {
        match self.names.get(i) {
            Some(n) => format!("operand {i} ({n})"),
            None => format!("operand {i}"),
        }
    }

    fn ty(&self, i: usize) -> Result<&'a TensorType, String> {
        self.tys.get(i).copied().ok_or_else(|| format!("{} is missing", self.label(i)))
    }

    fn shape(&self, i: usize) -> Result<&'a [Dim], String> {
        Ok(&self.ty(i)?.shape)
    }

    fn konst(&self, i: usize) -> Option<&'a Tensor> {
        self.consts.get(i).copied().flatten()
    }

    fn declared_result(&self, k: usize) -> Result<&'a TensorType, String> {
        self.declared.and_then(|d| d.get(k)).ok_or_else(|| {
            format!("{} takes its result shape from the declared result type, which is missing", self.op.name())
        })
    }

    fn class(&self, i: usize, class: Class) -> Result<DType, String> {
        let t = self.ty(i)?;
        if class.admits(t.dtype) {
            Ok(t.dtype)
        } else {
            Err(format!("{}: expected {}, found {}", self.label(i), class.describe(), t.dtype))
        }
    }

    fn dtype_is(&self, i: usize, d: DType) -> Result<(), String> {
        let t = self.ty(i)?;
        if t.dtype == d {
            Ok(())
        } else {
            Err(format!("{}: expected dtype {d}, found {}", self.label(i), t.dtype))
        }
    }

    /// Operand `i` must have operand `j`'s dtype.
    fn same_dtype(&self, i: usize, j: usize) -> Result<(), String> {
        let (a, b) = (self.ty(i)?, self.ty(j)?);
        if a.dtype == b.dtype {
            Ok(())
        } else {
            Err(format!("{}: dtype {} does not match {}'s dtype {}", self.label(i), a.dtype, self.label(j), b.dtype))
        }
    }

    fn rank_is(&self, i: usize, r: usize) -> Result<&'a [Dim], String> {
        let t = self.ty(i)?;
        if t.rank() == r {
            Ok(&t.shape)
        } else {
            Err(format!("{}: expected rank {r}, found rank {} ({t})", self.label(i), t.rank()))
        }
    }

    fn rank_at_least(&self, i: usize, r: usize) -> Result<&'a [Dim], String> {
        let t = self.ty(i)?;
        if t.rank() >= r {
            Ok(&t.shape)
        } else {
            Err(format!("{}: expected rank at least {r}, found rank {} ({t})", self.label(i), t.rank()))
        }
    }

    fn axis(&self, axis: i64, i: usize) -> Result<usize, String> {
        let t = self.ty(i)?;
        norm_axis(axis, t.rank())
            .ok_or_else(|| format!("axis {axis} is out of range for {} {t} (rank {})", self.label(i), t.rank()))
    }

    /// Normalise an axes list against `rank`; entries must be in range and distinct.
    fn axes(&self, axes: &[i64], rank: usize, what: &str) -> Result<Vec<usize>, String> {
        let mut out = Vec::with_capacity(axes.len());
        for &a in axes {
            let n = norm_axis(a, rank).ok_or_else(|| format!("{what} entry {a} is out of range for rank {rank}"))?;
            if out.contains(&n) {
                return Err(format!("{what} {axes:?} names axis {n} twice"));
            }
            out.push(n);
        }
        Ok(out)
    }

    /// Unify two dims that must be equal, with a message built on failure.
    fn unify(&self, a: &Dim, b: &Dim, msg: impl FnOnce() -> String) -> Result<Dim, String> {
        unify_dim(a, b).ok_or_else(msg)
    }

    /// Operand `i`'s dim `k` must equal `want` (described as `what`).
    fn dim_eq(&self, i: usize, k: usize, want: &Dim, what: &str) -> Result<Dim, String> {
        let got = self.shape(i)?.get(k).cloned().unwrap_or(Dim::Unknown);
        self.unify(&got, want, || format!("{}: dim {k} is {got} but {what} is {want}", self.label(i)))
    }

    /// Multidirectional broadcast of the listed operands.
    fn broadcast(&self, idx: &[usize]) -> Result<Vec<Dim>, String> {
        let mut rank = 0;
        for &i in idx {
            rank = rank.max(self.ty(i)?.rank());
        }
        let mut out = vec![Dim::fixed(1); rank];
        let mut src: Vec<Option<usize>> = vec![None; rank];
        for &i in idx {
            let t = self.ty(i)?;
            let off = rank - t.rank();
            for (k, d) in t.shape.iter().enumerate() {
                let pos = off + k;
                let (Some(cur), Some(slot)) = (out.get_mut(pos), src.get_mut(pos)) else {
                    continue;
                };
                match broadcast_dim(cur, d) {
                    Some(x) => {
                        if !is_one(d) {
                            *slot = Some(i);
                        }
                        *cur = x;
                    }
                    None => {
                        let other = slot.map(|j| {
                            format!("{} {}", self.label(j), self.ty(j).map(|t| t.to_string()).unwrap_or_default())
                        });
                        return Err(format!(
                            "cannot broadcast {} {t} against {}: size {d} vs {cur} at result dim {pos}",
                            self.label(i),
                            other.unwrap_or_else(|| "the other operands".to_string())
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Operand `i` must broadcast (unidirectionally) to `target`.
    fn broadcasts_to(&self, i: usize, target: &[Dim], what: &str) -> Result<(), String> {
        let t = self.ty(i)?;
        if t.rank() > target.len() {
            return Err(format!(
                "{}: {t} has more dims than {what} {} it must broadcast to",
                self.label(i),
                shape_str(target)
            ));
        }
        let off = target.len() - t.rank();
        for (k, d) in t.shape.iter().enumerate() {
            let Some(want) = target.get(off + k) else {
                continue;
            };
            if !is_one(d) && unify_dim(d, want).is_none() {
                return Err(format!(
                    "{}: {t} does not broadcast to {what} {}: dim {k} is {d}, expected 1 or {want}",
                    self.label(i),
                    shape_str(target)
                ));
            }
        }
        Ok(())
    }

    /// An i64 1-D shape-like operand (`shape`, `starts`, `ends`).
    fn shape_arg(&self, i: usize) -> Result<ShapeArg, String> {
        self.dtype_is(i, DType::I64)?;
        let shape = self.rank_is(i, 1)?;
        let len = shape.first().and_then(Dim::as_fixed);
        if let Some(t) = self.konst(i) {
            let consistent = t.dtype == DType::I64
                && t.rank() == 1
                && checked_numel(&t.shape) == Some(t.numel())
                && len.is_none_or(|n| usize::try_from(n).ok() == Some(t.numel()));
            if let (true, TensorData::Int(values)) = (consistent, &t.data) {
                return Ok(ShapeArg::Const(values.clone()));
            }
        }
        match len {
            Some(n) => {
                usize::try_from(n).map(ShapeArg::Len).map_err(|_| format!("{}: negative length {n}", self.label(i)))
            }
            None => Ok(ShapeArg::UnknownLen),
        }
    }

    /// The rank a non-constant shape operand implies, falling back on the declared result.
    fn dynamic_rank(&self, arg: &ShapeArg, i: usize) -> Result<usize, String> {
        match arg {
            ShapeArg::Const(v) => Ok(v.len()),
            ShapeArg::Len(n) => Ok(*n),
            ShapeArg::UnknownLen => self
                .declared_result(0)
                .map(TensorType::rank)
                .map_err(|_| format!("{}: its length is not static, so the result rank is unknown", self.label(i))),
        }
    }

    fn same(&self, class: Class) -> Result<Vec<TensorType>, String> {
        self.class(0, class)?;
        Ok(one(self.ty(0)?.clone()))
    }

    fn binary(&self, class: Class) -> Result<Vec<TensorType>, String> {
        let d = self.class(0, class)?;
        self.class(1, class)?;
        self.same_dtype(1, 0)?;
        Ok(one(TensorType::new(d, self.broadcast(&[0, 1])?)))
    }

    fn compare(&self, class: Class) -> Result<Vec<TensorType>, String> {
        self.class(0, class)?;
        self.class(1, class)?;
        self.same_dtype(1, 0)?;
        Ok(one(TensorType::new(DType::Bool, self.broadcast(&[0, 1])?)))
    }
}

impl Cx<'_> {
    fn infer(&self) -> Result<Vec<TensorType>, String> {
        match self.op {
            Op::Constant { value } => self.constant(value),
            Op::Neg | Op::Abs | Op::Relu | Op::Sign => self.same(Class::Numeric),
            Op::Sqrt
            | Op::Rsqrt
            | Op::Reciprocal
            | Op::Exp
            | Op::Log
            | Op::Tanh
            | Op::Erf
            | Op::Sigmoid
            | Op::Silu
            | Op::Softplus
            | Op::Sin
            | Op::Cos
            | Op::Floor
            | Op::Ceil
            | Op::Round
            | Op::Gelu { .. }
            | Op::LeakyRelu { .. } => self.same(Class::Float),
            Op::Clip { min, max } => {
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(format!("min {lo} is greater than max {hi}"));
                    }
                }
                self.same(Class::Numeric)
            }
            Op::Not => self.same(Class::Bool),
            Op::IsNan => {
                self.class(0, Class::Float)?;
                Ok(one(TensorType::new(DType::Bool, self.shape(0)?.to_vec())))
            }
            Op::Identity => self.same(Class::Any),
            Op::Cast { to } => {
                if to.is_quantized() {
                    self.class(0, Class::Float)?;
                    let block = i64::try_from(to.block_len()).unwrap_or(i64::MAX);
                    match self.shape(0)?.last().map(Dim::as_fixed) {
                        None => return Err(format!("cast to {to} needs an operand of rank at least 1")),
                        Some(Some(last)) if last % block == 0 => {}
                        Some(Some(last)) => {
                            return Err(format!(
                                "cast to {to}: last dim {last} is not a multiple of the block length {block}"
                            ))
                        }
                        Some(None) => return Err(format!("cast to {to} needs a static last dim")),
                    }
                }
                Ok(one(TensorType::new(*to, self.shape(0)?.to_vec())))
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Max | Op::Min | Op::Mod | Op::Fmod => {
                self.binary(Class::Numeric)
            }
            Op::Pow => {
                let d = self.class(0, Class::Numeric)?;
                self.class(1, Class::Numeric)?;
                Ok(one(TensorType::new(d, self.broadcast(&[0, 1])?)))
            }
            Op::And | Op::Or | Op::Xor => self.binary(Class::Bool),
            Op::Equal => self.compare(Class::Any),
            Op::Less | Op::LessEqual | Op::Greater | Op::GreaterEqual => self.compare(Class::Numeric),
            Op::Where => {
                self.class(0, Class::Bool)?;
                let d = self.class(1, Class::Any)?;
                self.same_dtype(2, 1)?;
                Ok(one(TensorType::new(d, self.broadcast(&[0, 1, 2])?)))
            }
            Op::ReduceSum { axes, keepdims }
            | Op::ReduceMean { axes, keepdims }
            | Op::ReduceMax { axes, keepdims }
            | Op::ReduceMin { axes, keepdims }
            | Op::ReduceProd { axes, keepdims }
            | Op::ReduceSumSquare { axes, keepdims }
            | Op::ReduceL1 { axes, keepdims }
            | Op::ReduceL2 { axes, keepdims }
            | Op::ReduceLogSumExp { axes, keepdims } => self.reduce(axes, *keepdims),
            Op::ArgMax { axis, keepdims, .. } | Op::ArgMin { axis, keepdims, .. } => {
                self.class(0, Class::Numeric)?;
                let a = self.axis(*axis, 0)?;
                let mut shape = Vec::new();
                for (k, d) in self.shape(0)?.iter().enumerate() {
                    if k != a {
                        shape.push(d.clone());
                    } else if *keepdims {
                        shape.push(Dim::fixed(1));
                    }
                }
                Ok(one(TensorType::new(DType::I64, shape)))
            }
            Op::Softmax { axis } | Op::LogSoftmax { axis } => {
                self.class(0, Class::Float)?;
                self.axis(*axis, 0)?;
                self.same(Class::Float)
            }
            Op::CumSum { axis, .. } => {
                self.class(0, Class::Numeric)?;
                self.axis(*axis, 0)?;
                self.same(Class::Numeric)
            }
            Op::TopK { axis, k, .. } => self.topk(*axis, *k),
            Op::MatMul => self.matmul(),
            Op::Gemm { trans_a, trans_b, .. } => self.gemm(*trans_a, *trans_b),
            Op::Linear => self.linear(),
            Op::QuantizedLinear => self.quantized_linear(),
            Op::PackedLinear { out_features } => self.packed_linear(*out_features),
            Op::Reshape { allowzero } => self.reshape(*allowzero),
            Op::Transpose { perm } => self.transpose(perm),
            Op::Concat { axis } => self.concat(*axis),
            Op::Split { axis } => self.split(*axis),
            Op::Slice { axes, starts, ends, steps } => self.slice(axes, starts, ends, steps),
            Op::Gather { axis } => self.gather(*axis),
            Op::GatherElements { axis } => {
                self.class(1, Class::Index)?;
                let data = self.ty(0)?;
                let indices = self.rank_is(1, data.rank())?;
                self.axis(*axis, 0)?;
                Ok(one(TensorType::new(data.dtype, indices.to_vec())))
            }
            Op::GatherNd { batch_dims } => self.gather_nd(*batch_dims),
            Op::ScatterNd { .. } => self.scatter_nd(),
            Op::Expand => self.expand(),
            Op::Squeeze { axes } => self.squeeze(axes),
            Op::Unsqueeze { axes } => {
                let t = self.ty(0)?;
                let rank = t.rank() + axes.len();
                let at = self.axes(axes, rank, "axes")?;
                let mut src = t.shape.iter();
                let shape = (0..rank)
                    .map(|k| if at.contains(&k) { Dim::fixed(1) } else { src.next().cloned().unwrap_or(Dim::Unknown) })
                    .collect();
                Ok(one(TensorType::new(t.dtype, shape)))
            }
            Op::Shape { start, end } => {
                let r = i64::try_from(self.ty(0)?.rank()).unwrap_or(i64::MAX);
                let clamp = |x: i64| {
                    if x < 0 {
                        x.saturating_add(r).max(0)
                    } else {
                        x.min(r)
                    }
                };
                let (s, e) = (clamp(*start), clamp(end.unwrap_or(r)));
                Ok(one(TensorType::fixed(DType::I64, &[(e - s).max(0)])))
            }
            Op::ConstantOfShape { value } => self.constant_of_shape(value),
            Op::Range => self.range(),
            Op::Trilu { .. } => {
                self.rank_at_least(0, 2)?;
                self.same(Class::Any)
            }
            Op::Pad { pads, value, .. } => self.pad(pads, *value),
            Op::Tile { repeats } => {
                let t = self.ty(0)?;
                if repeats.len() != t.rank() {
                    return Err(format!(
                        "repeats has {} entries but {} has rank {}",
                        repeats.len(),
                        self.label(0),
                        t.rank()
                    ));
                }
                let mut shape = Vec::with_capacity(t.rank());
                for (d, &r) in t.shape.iter().zip(repeats) {
                    if r < 0 {
                        return Err(format!("repeats entry {r} is negative"));
                    }
                    shape.push(d.mul(&Dim::fixed(r)));
                }
                Ok(one(TensorType::new(t.dtype, shape)))
            }
            Op::LayerNorm { axis, epsilon } => self.layer_norm(*axis, *epsilon),
            Op::RmsNorm { epsilon } => {
                check_epsilon(*epsilon)?;
                let t = self.rms_norm_weight(0, 1)?;
                Ok(one(t))
            }
            Op::RmsNormResidual { epsilon } => {
                check_epsilon(*epsilon)?;
                self.class(0, Class::Float)?;
                self.same_dtype(1, 0)?;
                let x = self.ty(0)?;
                self.rank_is(1, x.rank())?;
                let residual = self.shape(1)?;
                let mut shape = Vec::with_capacity(x.rank());
                for (k, (a, b)) in x.shape.iter().zip(residual).enumerate() {
                    shape.push(self.unify(a, b, || {
                        format!("{}: dim {k} is {b} but {}'s dim {k} is {a}", self.label(1), self.label(0))
                    })?);
                }
                let t = self.rms_norm_weight(0, 2)?;
                let t = TensorType::new(t.dtype, shape);
                Ok(vec![t.clone(), t])
            }
            Op::RotaryEmbedding { rotary_dim, .. } => self.rotary(*rotary_dim),
            Op::Attention { .. } => self.attention(),
            Op::SiluMul => {
                self.class(0, Class::Float)?;
                self.same_dtype(1, 0)?;
                let (g, u) = (self.ty(0)?, self.ty(1)?);
                self.rank_is(1, g.rank())?;
                let mut shape = Vec::with_capacity(g.rank());
                for (k, (a, b)) in g.shape.iter().zip(&u.shape).enumerate() {
                    shape.push(
                        self.unify(a, b, || format!("{}: dim {k} is {b} but gate's dim {k} is {a}", self.label(1)))?,
                    );
                }
                Ok(one(TensorType::new(g.dtype, shape)))
            }
            Op::Sample { temperature, top_k, top_p, repetition_penalty, .. } => {
                self.sample(*temperature, *top_k, *top_p, *repetition_penalty)
            }
        }
    }
}

fn check_epsilon(eps: f64) -> Result<(), String> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(format!("epsilon must be a finite non-negative number, found {eps}"))
    }
}

/// Checks a literal's internal consistency; returns its type.
fn literal_type(t: &Tensor, what: &str) -> Result<TensorType, String> {
    if t.dtype.is_quantized() {
        return Err(format!("{what} has quantized dtype {}; literals must be plain dtypes", t.dtype));
    }
    let expected = checked_numel(&t.shape).ok_or_else(|| format!("{what} shape {:?} overflows", t.shape))?;
    if expected != t.numel() {
        return Err(format!("{what} has {} elements but its shape {:?} needs {expected}", t.numel(), t.shape));
    }
    let float_data = matches!(t.data, TensorData::Float(_));
    if float_data != t.dtype.is_float() {
        return Err(format!("{what} of dtype {} holds {} data", t.dtype, if float_data { "float" } else { "integer" }));
    }
    let mut dims = Vec::with_capacity(t.shape.len());
    for &d in &t.shape {
        dims.push(i64::try_from(d).map_err(|_| format!("{what} dim {d} is too large"))?);
    }
    Ok(TensorType::fixed(t.dtype, &dims))
}

impl Cx<'_> {
    fn constant(&self, value: &Tensor) -> Result<Vec<TensorType>, String> {
        Ok(one(literal_type(value, "the literal")?))
    }

    fn reduce(&self, axes: &[i64], keepdims: bool) -> Result<Vec<TensorType>, String> {
        self.class(0, Class::Numeric)?;
        let t = self.ty(0)?;
        let red = self.axes(axes, t.rank(), "axes")?;
        let mut shape = Vec::with_capacity(t.rank());
        for (k, d) in t.shape.iter().enumerate() {
            if !red.contains(&k) {
                shape.push(d.clone());
            } else if keepdims {
                shape.push(Dim::fixed(1));
            }
        }
        Ok(one(TensorType::new(t.dtype, shape)))
    }

    fn topk(&self, axis: i64, k: i64) -> Result<Vec<TensorType>, String> {
        self.class(0, Class::Numeric)?;
        let t = self.ty(0)?;
        let a = self.axis(axis, 0)?;
        if k < 0 {
            return Err(format!("k = {k} is negative"));
        }
        let mut shape = t.shape.clone();
        if let Some(d) = shape.get_mut(a) {
            if let Some(n) = d.as_fixed() {
                if k > n {
                    return Err(format!("k = {k} exceeds {}'s dim {a} of size {n}", self.label(0)));
                }
            }
            *d = Dim::fixed(k);
        }
        Ok(vec![TensorType::new(t.dtype, shape.clone()), TensorType::new(DType::I64, shape)])
    }

    fn matmul(&self) -> Result<Vec<TensorType>, String> {
        let d = self.class(0, Class::Numeric)?;
        self.class(1, Class::Numeric)?;
        self.same_dtype(1, 0)?;
        let a = self.rank_at_least(0, 1)?;
        let b = self.rank_at_least(1, 1)?;
        // Promote 1-D operands: a [K] → [1, K], b [K] → [K, 1].
        let (a_batch, m, ka) = match a {
            [k] => (&a[..0], None, k),
            [batch @ .., m, k] => (batch, Some(m), k),
            [] => return Err(format!("{}: matmul needs rank at least 1", self.label(0))),
        };
        let (b_batch, kb, n) = match b {
            [k] => (&b[..0], k, None),
            [batch @ .., k, n] => (batch, k, Some(n)),
            [] => return Err(format!("{}: matmul needs rank at least 1", self.label(1))),
        };
        self.unify(ka, kb, || format!("{}: inner dim {kb} does not match operand 0's last dim {ka}", self.label(1)))?;
        let rank = a_batch.len().max(b_batch.len());
        let mut shape = Vec::with_capacity(rank + 2);
        for pos in 0..rank {
            let pick = |batch: &[Dim]| {
                (pos + batch.len()).checked_sub(rank).and_then(|k| batch.get(k)).cloned().unwrap_or(Dim::fixed(1))
            };
            let (x, y) = (pick(a_batch), pick(b_batch));
            shape.push(broadcast_dim(&x, &y).ok_or_else(|| {
                format!(
                    "batch dims of {} {} and {} {} do not broadcast: {x} vs {y}",
                    self.label(0),
                    shape_str(a),
                    self.label(1),
                    shape_str(b)
                )
            })?);
        }
        shape.extend(m.cloned());
        shape.extend(n.cloned());
        Ok(one(TensorType::new(d, shape)))
    }

    fn gemm(&self, trans_a: bool, trans_b: bool) -> Result<Vec<TensorType>, String> {
        let d = self.class(0, Class::Numeric)?;
        self.same_dtype(1, 0)?;
        let a = self.rank_is(0, 2)?;
        let b = self.rank_is(1, 2)?;
        let pair = |s: &[Dim], t: bool| {
            let (x, y) = (s.first().cloned().unwrap_or(Dim::Unknown), s.get(1).cloned().unwrap_or(Dim::Unknown));
            if t {
                (y, x)
            } else {
                (x, y)
            }
        };
        let (m, ka) = pair(a, trans_a);
        let (kb, n) = pair(b, trans_b);
        self.unify(&ka, &kb, || {
            format!("{}: inner dim {kb} does not match operand 0's contraction dim {ka}", self.label(1))
        })?;
        let out = vec![m, n];
        if self.tys.len() > 2 {
            self.same_dtype(2, 0)?;
            self.broadcasts_to(2, &out, "the result")?;
        }
        Ok(one(TensorType::new(d, out)))
    }

    fn linear(&self) -> Result<Vec<TensorType>, String> {
        let d = self.class(0, Class::Numeric)?;
        self.same_dtype(1, 0)?;
        self.linear_shape(d)
    }

    /// Shapes of `linear`-like ops: `x [..., in]`, `w [out, in]`, optional `bias [out]` at
    /// operand `bias_at` (dtype = x's).
    fn linear_shape_with(&self, d: DType, bias_at: Option<usize>) -> Result<Vec<TensorType>, String> {
        let x = self.rank_at_least(0, 1)?;
        let w = self.rank_is(1, 2)?;
        let (out, inp) = (w.first().cloned().unwrap_or(Dim::Unknown), w.get(1).cloned().unwrap_or(Dim::Unknown));
        let last = x.last().cloned().unwrap_or(Dim::Unknown);
        self.unify(&inp, &last, || {
            format!("{}: input dim {inp} (w is [out, in]) does not match operand 0's last dim {last}", self.label(1))
        })?;
        let out = match bias_at {
            Some(i) if i < self.tys.len() => {
                self.same_dtype(i, 0)?;
                self.rank_is(i, 1)?;
                self.dim_eq(i, 0, &out, "w's output dim")?
            }
            _ => out,
        };
        let mut shape = x.get(..x.len().saturating_sub(1)).unwrap_or_default().to_vec();
        shape.push(out);
        Ok(one(TensorType::new(d, shape)))
    }

    fn linear_shape(&self, d: DType) -> Result<Vec<TensorType>, String> {
        self.linear_shape_with(d, Some(2))
    }

    fn packed_linear(&self, out_features: i64) -> Result<Vec<TensorType>, String> {
        let d = self.class(0, Class::Float)?;
        self.same_dtype(1, 0)?;
        if out_features < 1 {
            return Err(format!("out_features must be at least 1, found {out_features}"));
        }
        let x = self.rank_at_least(0, 1)?;
        let wp = self.rank_is(1, 3)?;
        let nr = PACK_NR as i64;
        let panels = (out_features + nr - 1) / nr;
        let (p, inp, lane) = (&wp[0], &wp[1], &wp[2]);
        if lane.as_fixed().is_some_and(|l| l != nr) {
            return Err(format!("{}: panel width {lane} must be {nr}", self.label(1)));
        }
        if p.as_fixed().is_some_and(|p| p != panels) {
            return Err(format!(
                "{}: {p} panels do not hold out_features = {out_features} ({panels} panels of {nr})",
                self.label(1)
            ));
        }
        let last = x.last().cloned().unwrap_or(Dim::Unknown);
        self.unify(inp, &last, || {
            format!(
                "{}: input dim {inp} (wp is [panels, in, {nr}]) does not match operand 0's last dim {last}",
                self.label(1)
            )
        })?;
        let out = Dim::fixed(out_features);
        if self.tys.len() > 2 {
            self.same_dtype(2, 0)?;
            self.rank_is(2, 1)?;
            self.dim_eq(2, 0, &out, "out_features")?;
        }
        let mut shape = x.get(..x.len().saturating_sub(1)).unwrap_or_default().to_vec();
        shape.push(out);
        Ok(one(TensorType::new(d, shape)))
    }

    fn quantized_linear(&self) -> Result<Vec<TensorType>, String> {
        let d = self.class(0, Class::Float)?;
        let w = self.ty(1)?;
        let n = self.tys.len();
        if w.dtype.is_quantized() {
            if n > 3 {
                return Err(format!(
                    "quantized_linear with a block-quantized {} weight takes 2 or 3 operands (x, w[, bias]), found {n}",
                    w.dtype
                ));
            }
            let block = i64::try_from(w.dtype.block_len()).unwrap_or(i64::MAX);
            if let Some(inp) = w.shape.get(1).and_then(Dim::as_fixed) {
                if block > 0 && inp % block != 0 {
                    return Err(format!(
                        "{}: input dim {inp} is not a multiple of the {} block length {block}",
                        self.label(1),
                        w.dtype
                    ));
                }
            }
            self.linear_shape_with(d, Some(2))
        } else if w.dtype == DType::I8 {
            if n < 3 {
                return Err("quantized_linear with an i8 weight needs a scale operand: x, w, scale[, bias]".to_string());
            }
            let out = self.rank_is(1, 2)?.first().cloned().unwrap_or(Dim::Unknown);
            self.dtype_is(2, DType::F32)?;
            self.rank_is(2, 1)?;
            self.dim_eq(2, 0, &out, "w's output dim")?;
            self.linear_shape_with(d, Some(3))
        } else {
            Err(format!(
                "{}: quantized_linear needs a q8_0, q4_0, int4<G> or i8 weight, found {} (use linear)",
                self.label(1),
                w.dtype
            ))
        }
    }

    fn reshape(&self, allowzero: bool) -> Result<Vec<TensorType>, String> {
        let x = self.ty(0)?;
        self.class(0, Class::Any)?;
        let numel = x.numel();
        if self.tys.len() == 1 {
            let target = self.declared_result(0)?;
            let tn = target.numel();
            if provably_differ(&numel, &tn) {
                return Err(format!(
                    "reshape from {x} to {} changes the element count ({numel} vs {tn})",
                    shape_str(&target.shape)
                ));
            }
            return Ok(one(TensorType::new(x.dtype, target.shape.clone())));
        }
        let arg = self.shape_arg(1)?;
        let ShapeArg::Const(values) = arg else {
            let rank = self.dynamic_rank(&arg, 1)?;
            return Ok(one(TensorType::new(x.dtype, vec![Dim::Unknown; rank])));
        };
        let mut shape = Vec::with_capacity(values.len());
        let mut infer_at = None;
        for (k, &v) in values.iter().enumerate() {
            match v {
                -1 => {
                    if infer_at.replace(k).is_some() {
                        return Err(format!("{}: more than one -1 in shape {values:?}", self.label(1)));
                    }
                    shape.push(Dim::Unknown);
                }
                0 if !allowzero => shape.push(
                    x.shape
                        .get(k)
                        .cloned()
                        .ok_or_else(|| format!("{}: entry {k} is 0 (copy) but {x} has no dim {k}", self.label(1)))?,
                ),
                v if v < 0 => return Err(format!("{}: invalid entry {v} in shape {values:?}", self.label(1))),
                v => shape.push(Dim::fixed(v)),
            }
        }
        if allowzero && infer_at.is_some() && values.contains(&0) {
            return Err(format!("{}: shape {values:?} has both 0 and -1 with allowzero", self.label(1)));
        }
        let known = shape
            .iter()
            .enumerate()
            .filter(|(k, _)| Some(*k) != infer_at)
            .fold(Dim::fixed(1), |acc, (_, d)| acc.mul(d));
        if let Some(k) = infer_at {
            let resolved = match (known.as_fixed(), numel.as_fixed()) {
                (Some(0), _) => Dim::Unknown,
                (Some(p), Some(total)) if total % p != 0 => {
                    return Err(format!(
                        "reshape of {x} ({total} elements) to {values:?}: {total} is not divisible by {p}"
                    ));
                }
                _ => numel.div_exact(&known).unwrap_or(Dim::Unknown),
            };
            if let Some(slot) = shape.get_mut(k) {
                *slot = resolved;
            }
        } else if provably_differ(&numel, &known) {
            return Err(format!(
                "reshape from {x} to {} changes the element count ({numel} vs {known})",
                shape_str(&shape)
            ));
        }
        Ok(one(TensorType::new(x.dtype, shape)))
    }

    fn transpose(&self, perm: &[i64]) -> Result<Vec<TensorType>, String> {
        let t = self.ty(0)?;
        if perm.len() != t.rank() {
            return Err(format!(
                "perm {perm:?} has {} entries but {} has rank {}",
                perm.len(),
                self.label(0),
                t.rank()
            ));
        }
        let p = self.axes(perm, t.rank(), "perm")?;
        let shape = p.iter().map(|&k| t.shape.get(k).cloned().unwrap_or(Dim::Unknown)).collect();
        Ok(one(TensorType::new(t.dtype, shape)))
    }

    fn concat(&self, axis: i64) -> Result<Vec<TensorType>, String> {
        let first = self.ty(0)?;
        let a = self.axis(axis, 0)?;
        let mut shape = first.shape.clone();
        for i in 1..self.tys.len() {
            self.same_dtype(i, 0)?;
            let t = self.rank_is(i, first.rank())?;
            for (k, (cur, d)) in shape.iter_mut().zip(t).enumerate() {
                if k == a {
                    *cur = cur.add(d);
                } else {
                    *cur = self.unify(cur, d, || {
                        format!(
                            "{}: dim {k} is {d} but the other operands have {cur} (only axis {a} may differ)",
                            self.label(i)
                        )
                    })?;
                }
            }
        }
        Ok(one(TensorType::new(first.dtype, shape)))
    }

    fn split(&self, axis: i64) -> Result<Vec<TensorType>, String> {
        let x = self.ty(0)?;
        let a = self.axis(axis, 0)?;
        let declared = match self.declared {
            Some(d) if !d.is_empty() => d,
            _ => {
                return Err("split takes its piece sizes from the declared result types, which are missing".to_string())
            }
        };
        let mut total = Dim::fixed(0);
        let mut out = Vec::with_capacity(declared.len());
        for (j, r) in declared.iter().enumerate() {
            if r.rank() != x.rank() {
                return Err(format!(
                    "result {j} is declared with rank {} but {} has rank {}",
                    r.rank(),
                    self.label(0),
                    x.rank()
                ));
            }
            let piece = r.shape.get(a).cloned().unwrap_or(Dim::Unknown);
            if matches!(piece.as_fixed(), Some(n) if n < 0) {
                return Err(format!("result {j} has negative size {piece} along axis {a}"));
            }
            total = total.add(&piece);
            let mut shape = x.shape.clone();
            if let Some(slot) = shape.get_mut(a) {
                *slot = piece;
            }
            out.push(TensorType::new(x.dtype, shape));
        }
        let whole = x.shape.get(a).cloned().unwrap_or(Dim::Unknown);
        if provably_differ(&total, &whole) {
            return Err(format!("split sizes along axis {a} add up to {total} but {} has {whole}", self.label(0)));
        }
        Ok(out)
    }
}

impl Cx<'_> {
    fn slice(&self, axes: &[i64], starts: &[i64], ends: &[i64], steps: &[i64]) -> Result<Vec<TensorType>, String> {
        let x = self.ty(0)?;
        self.class(0, Class::Any)?;
        let dynamic = match self.tys.len() {
            1 => None,
            3 => {
                if !starts.is_empty() || !ends.is_empty() {
                    return Err(
                        "slice with starts/ends operands must leave the starts/ends attributes empty".to_string()
                    );
                }
                Some((self.shape_arg(1)?, self.shape_arg(2)?))
            }
            n => return Err(format!("slice takes 1 operand (x) or 3 (x, starts, ends), found {n}")),
        };
        let (starts, ends): (Vec<i64>, Vec<i64>) = match dynamic {
            None => (starts.to_vec(), ends.to_vec()),
            Some((ShapeArg::Const(s), ShapeArg::Const(e))) => (s, e),
            Some((s, e)) => {
                // Unknown bounds: the sliced axes become `?`.
                let len = match (&s, &e) {
                    (ShapeArg::Const(v), _) | (_, ShapeArg::Const(v)) => Some(v.len()),
                    (ShapeArg::Len(n), _) | (_, ShapeArg::Len(n)) => Some(*n),
                    _ => None,
                };
                if let (ShapeArg::Len(a), ShapeArg::Len(b)) = (&s, &e) {
                    if a != b {
                        return Err(format!("starts has {a} entries but ends has {b}"));
                    }
                }
                let sliced: Vec<usize> = if !axes.is_empty() {
                    if len.is_some_and(|n| n != axes.len()) {
                        return Err(format!(
                            "axes has {} entries but starts/ends have {}",
                            axes.len(),
                            len.unwrap_or(0)
                        ));
                    }
                    self.axes(axes, x.rank(), "axes")?
                } else {
                    match len {
                        Some(n) if n <= x.rank() => (0..n).collect(),
                        Some(n) => {
                            return Err(format!(
                                "starts/ends have {n} entries but {} has rank {}",
                                self.label(0),
                                x.rank()
                            ))
                        }
                        None => (0..x.rank()).collect(),
                    }
                };
                let shape = x
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(k, d)| if sliced.contains(&k) { Dim::Unknown } else { d.clone() })
                    .collect();
                return Ok(one(TensorType::new(x.dtype, shape)));
            }
        };
        let n = starts.len();
        if ends.len() != n {
            return Err(format!("starts has {n} entries but ends has {}", ends.len()));
        }
        let axes: Vec<usize> = if axes.is_empty() {
            if n > x.rank() {
                return Err(format!("starts/ends have {n} entries but {} has rank {}", self.label(0), x.rank()));
            }
            (0..n).collect()
        } else {
            if axes.len() != n {
                return Err(format!("axes has {} entries but starts/ends have {n}", axes.len()));
            }
            self.axes(axes, x.rank(), "axes")?
        };
        if !steps.is_empty() && steps.len() != n {
            return Err(format!("steps has {} entries but starts/ends have {n}", steps.len()));
        }
        if steps.contains(&0) {
            return Err(format!("steps {steps:?} contains 0"));
        }
        let mut shape = x.shape.clone();
        for (j, &a) in axes.iter().enumerate() {
            let (Some(&s), Some(&e)) = (starts.get(j), ends.get(j)) else {
                continue;
            };
            let step = steps.get(j).copied().unwrap_or(1);
            if let Some(d) = shape.get_mut(a) {
                *d = slice_dim(d, s, e, step);
            }
        }
        Ok(one(TensorType::new(x.dtype, shape)))
    }

    fn gather(&self, axis: i64) -> Result<Vec<TensorType>, String> {
        self.class(1, Class::Index)?;
        let data = self.ty(0)?;
        self.rank_at_least(0, 1)?;
        let a = self.axis(axis, 0)?;
        let indices = self.shape(1)?;
        let mut shape: Vec<Dim> = data.shape.iter().take(a).cloned().collect();
        shape.extend(indices.iter().cloned());
        shape.extend(data.shape.iter().skip(a + 1).cloned());
        Ok(one(TensorType::new(data.dtype, shape)))
    }

    /// The static last dim of an index-tuple operand (`gather_nd`, `scatter_nd`).
    fn tuple_len(&self, i: usize, data_rank: usize, batch: usize) -> Result<usize, String> {
        let idx = self.rank_at_least(i, 1)?;
        let m = idx.last().and_then(Dim::as_fixed).ok_or_else(|| {
            format!("{}: the last dim (index tuple length) must be static, found {}", self.label(i), shape_str(idx))
        })?;
        let max = data_rank.saturating_sub(batch);
        match usize::try_from(m) {
            Ok(m) if (1..=max).contains(&m) => Ok(m),
            _ => Err(format!(
                "{}: index tuples of length {m} must be between 1 and {max} (data rank minus batch_dims)",
                self.label(i)
            )),
        }
    }

    fn gather_nd(&self, batch_dims: i64) -> Result<Vec<TensorType>, String> {
        self.class(1, Class::Index)?;
        let data = self.ty(0)?;
        self.rank_at_least(0, 1)?;
        let indices = self.rank_at_least(1, 1)?;
        let b = usize::try_from(batch_dims).map_err(|_| format!("batch_dims {batch_dims} is negative"))?;
        if b >= data.rank().min(indices.len()) {
            return Err(format!(
                "batch_dims {b} must be less than both ranks ({} has {}, {} has {})",
                self.label(0),
                data.rank(),
                self.label(1),
                indices.len()
            ));
        }
        let m = self.tuple_len(1, data.rank(), b)?;
        let mut shape = Vec::new();
        for (k, d) in indices.iter().take(indices.len() - 1).enumerate() {
            if k < b {
                shape.push(self.dim_eq(0, k, d, &format!("{}'s batch dim {k}", self.label(1)))?);
            } else {
                shape.push(d.clone());
            }
        }
        shape.extend(data.shape.iter().skip(b + m).cloned());
        Ok(one(TensorType::new(data.dtype, shape)))
    }

    fn scatter_nd(&self) -> Result<Vec<TensorType>, String> {
        self.class(1, Class::Index)?;
        self.class(0, Class::Any)?;
        self.same_dtype(2, 0)?;
        let data = self.ty(0)?;
        let indices = self.rank_at_least(1, 1)?;
        let m = self.tuple_len(1, data.rank(), 0)?;
        let mut want: Vec<Dim> = indices.iter().take(indices.len() - 1).cloned().collect();
        want.extend(data.shape.iter().skip(m).cloned());
        let updates = self.ty(2)?;
        if updates.rank() != want.len() {
            return Err(format!(
                "{}: expected shape {} (indices[:-1] + data[{m}:]), found {updates}",
                self.label(2),
                shape_str(&want)
            ));
        }
        for (k, w) in want.iter().enumerate() {
            self.dim_eq(2, k, w, "indices[:-1] + data[m:]")?;
        }
        Ok(one(data.clone()))
    }

    fn expand(&self) -> Result<Vec<TensorType>, String> {
        let x = self.ty(0)?;
        self.class(0, Class::Any)?;
        let target: Vec<Dim> = if self.tys.len() == 1 {
            self.declared_result(0)?.shape.clone()
        } else {
            let arg = self.shape_arg(1)?;
            match arg {
                ShapeArg::Const(v) => {
                    if let Some(bad) = v.iter().find(|&&d| d < 0) {
                        return Err(format!("{}: negative target dim {bad} in {v:?}", self.label(1)));
                    }
                    v.iter().map(|&d| Dim::fixed(d)).collect()
                }
                other => {
                    // Unknown target: a static non-1 input dim must survive, the rest is `?`.
                    let n = self.dynamic_rank(&other, 1)?;
                    let rank = n.max(x.rank());
                    let off = rank - x.rank();
                    let shape = (0..rank)
                        .map(|pos| match pos.checked_sub(off).and_then(|k| x.shape.get(k)) {
                            Some(d) if d.as_fixed().is_some_and(|v| v != 1) => d.clone(),
                            _ => Dim::Unknown,
                        })
                        .collect();
                    return Ok(one(TensorType::new(x.dtype, shape)));
                }
            }
        };
        let rank = target.len().max(x.rank());
        let mut shape = Vec::with_capacity(rank);
        for pos in 0..rank {
            let get =
                |s: &[Dim]| (pos + s.len()).checked_sub(rank).and_then(|k| s.get(k)).cloned().unwrap_or(Dim::fixed(1));
            let (a, b) = (get(&x.shape), get(&target));
            shape.push(broadcast_dim(&a, &b).ok_or_else(|| {
                format!("{} {x} does not broadcast to target shape {}: {a} vs {b}", self.label(0), shape_str(&target))
            })?);
        }
        Ok(one(TensorType::new(x.dtype, shape)))
    }

    fn squeeze(&self, axes: &[i64]) -> Result<Vec<TensorType>, String> {
        let t = self.ty(0)?;
        let drop: Vec<usize> = if axes.is_empty() {
            t.shape.iter().enumerate().filter(|(_, d)| is_one(d)).map(|(k, _)| k).collect()
        } else {
            let a = self.axes(axes, t.rank(), "axes")?;
            for &k in &a {
                if let Some(n) = t.shape.get(k).and_then(Dim::as_fixed) {
                    if n != 1 {
                        return Err(format!("cannot squeeze dim {k} of {} {t}: its size is {n}, not 1", self.label(0)));
                    }
                }
            }
            a
        };
        let shape = t.shape.iter().enumerate().filter(|(k, _)| !drop.contains(k)).map(|(_, d)| d.clone()).collect();
        Ok(one(TensorType::new(t.dtype, shape)))
    }

    fn constant_of_shape(&self, value: &Tensor) -> Result<Vec<TensorType>, String> {
        let lit = literal_type(value, "value")?;
        if value.numel() != 1 {
            return Err(format!("value must hold exactly one element, found {}", value.numel()));
        }
        let shape = if self.tys.is_empty() {
            self.declared_result(0)?.shape.clone()
        } else {
            match self.shape_arg(0)? {
                ShapeArg::Const(v) => {
                    if let Some(bad) = v.iter().find(|&&d| d < 0) {
                        return Err(format!("{}: negative dim {bad} in {v:?}", self.label(0)));
                    }
                    v.iter().map(|&d| Dim::fixed(d)).collect()
                }
                other => vec![Dim::Unknown; self.dynamic_rank(&other, 0)?],
            }
        };
        Ok(one(TensorType::new(lit.dtype, shape)))
    }

    fn range(&self) -> Result<Vec<TensorType>, String> {
        let d = self.class(0, Class::Numeric)?;
        for i in 0..3 {
            self.rank_is(i, 0)?;
            if i > 0 {
                self.same_dtype(i, 0)?;
            }
        }
        let scalar = |i: usize| self.konst(i).filter(|t| t.numel() == 1).map(|t| (t.to_f64_vec(), t.to_i64_vec()));
        let len = match (scalar(0), scalar(1), scalar(2)) {
            (Some((sf, si)), Some((lf, li)), Some((df, di))) => {
                let len = if d.is_float() {
                    let (s, l, dl) = (sf.first().copied(), lf.first().copied(), df.first().copied());
                    let (Some(s), Some(l), Some(dl)) = (s, l, dl) else {
                        return Err("range: empty literal".to_string());
                    };
                    if dl == 0.0 || !dl.is_finite() || !s.is_finite() || !l.is_finite() {
                        return Err(format!("range needs finite bounds and a non-zero delta, found {s}, {l}, {dl}"));
                    }
                    let n = ((l - s) / dl).ceil().max(0.0);
                    if n >= 9.0e18 {
                        return Err(format!("range length {n} is too large"));
                    }
                    n as i64
                } else {
                    let (Some(&s), Some(&l), Some(&dl)) = (si.first(), li.first(), di.first()) else {
                        return Err("range: empty literal".to_string());
                    };
                    if dl == 0 {
                        return Err("range delta is 0".to_string());
                    }
                    let (s, l, dl) = (i128::from(s), i128::from(l), i128::from(dl));
                    let diff = l - s;
                    let n = if (diff > 0) == (dl > 0) && diff != 0 { (diff + dl - dl.signum()) / dl } else { 0 };
                    i64::try_from(n.max(0)).map_err(|_| format!("range length {n} is too large"))?
                };
                Dim::fixed(len)
            }
            _ => Dim::Unknown,
        };
        Ok(one(TensorType::new(d, vec![len])))
    }

    fn pad(&self, pads: &[i64], value: f64) -> Result<Vec<TensorType>, String> {
        let t = self.ty(0)?;
        self.class(0, Class::Any)?;
        let r = t.rank();
        if pads.len() != 2 * r {
            return Err(format!(
                "pads has {} entries but {} has rank {r} (needs {})",
                pads.len(),
                self.label(0),
                2 * r
            ));
        }
        if value.is_nan() && !t.dtype.is_float() {
            return Err(format!("pad value NaN cannot fill a {} tensor", t.dtype));
        }
        let mut shape = Vec::with_capacity(r);
        for (k, d) in t.shape.iter().enumerate() {
            let (Some(&b), Some(&e)) = (pads.get(k), pads.get(k + r)) else {
                continue;
            };
            let nd = d.add(&Dim::fixed(b)).add(&Dim::fixed(e));
            if matches!(nd.as_fixed(), Some(n) if n < 0) {
                return Err(format!("pads crop dim {k} of {t} below zero ({d} + {b} + {e})"));
            }
            shape.push(nd);
        }
        Ok(one(TensorType::new(t.dtype, shape)))
    }

    fn layer_norm(&self, axis: i64, epsilon: f64) -> Result<Vec<TensorType>, String> {
        check_epsilon(epsilon)?;
        self.class(0, Class::Float)?;
        let x = self.ty(0)?;
        let a = self.axis(axis, 0)?;
        let normalized = x.shape.get(a..).unwrap_or_default();
        for i in 1..self.tys.len() {
            self.same_dtype(i, 0)?;
            self.broadcasts_to(i, normalized, "the normalised dims")?;
        }
        Ok(one(x.clone()))
    }

    /// `x` (operand `xi`, float, rank ≥ 1) with `weight: [hidden]` at operand `wi`.
    fn rms_norm_weight(&self, xi: usize, wi: usize) -> Result<TensorType, String> {
        self.class(xi, Class::Float)?;
        self.same_dtype(wi, xi)?;
        let x = self.ty(xi)?;
        let hidden = self.rank_at_least(xi, 1)?.last().cloned().unwrap_or(Dim::Unknown);
        self.rank_is(wi, 1)?;
        self.dim_eq(wi, 0, &hidden, &format!("{}'s last dim", self.label(xi)))?;
        Ok(x.clone())
    }

    fn rotary(&self, rotary_dim: i64) -> Result<Vec<TensorType>, String> {
        self.class(0, Class::Float)?;
        let x = self.rank_is(0, 4)?;
        let get = |s: &[Dim], k: usize| s.get(k).cloned().unwrap_or(Dim::Unknown);
        let (b, s, d) = (get(x, 0), get(x, 2), get(x, 3));
        if rotary_dim < 0 || rotary_dim % 2 != 0 {
            return Err(format!("rotary_dim {rotary_dim} must be even and non-negative (0 = head_dim)"));
        }
        let rd = if rotary_dim == 0 { d.clone() } else { Dim::fixed(rotary_dim) };
        match (rd.as_fixed(), d.as_fixed()) {
            (Some(r), _) if r % 2 != 0 => return Err(format!("rotated width {r} (head_dim) must be even")),
            (Some(r), Some(h)) if r > h => return Err(format!("rotary_dim {r} exceeds head_dim {h}")),
            _ => {}
        }
        let half = rd.div_exact(&Dim::fixed(2)).unwrap_or(Dim::Unknown);
        for i in [1, 2] {
            self.same_dtype(i, 0)?;
            self.rank_is(i, 2)?;
            self.dim_eq(i, 1, &half, "rotary_dim/2")?;
        }
        let cos_rows = get(self.shape(1)?, 0);
        self.dim_eq(2, 0, &cos_rows, "cos's dim 0 (max_pos)")?;
        self.dtype_is(3, DType::I64)?;
        self.rank_is(3, 2)?;
        self.dim_eq(3, 0, &b, "x's batch dim")?;
        self.dim_eq(3, 1, &s, "x's seq dim")?;
        Ok(one(self.ty(0)?.clone()))
    }

    fn attention(&self) -> Result<Vec<TensorType>, String> {
        let n = self.tys.len();
        let (mask, past) = match n {
            3 => (None, None),
            4 => (Some(3), None),
            5 => (None, Some((3, 4))),
            6 => (Some(3), Some((4, 5))),
            _ => return Err(format!("attention takes 3 to 6 operands, found {n}")),
        };
        let dt = self.class(0, Class::Float)?;
        for i in [1, 2] {
            self.same_dtype(i, 0)?;
        }
        let get = |s: &[Dim], k: usize| s.get(k).cloned().unwrap_or(Dim::Unknown);
        let q = self.rank_is(0, 4)?;
        let k = self.rank_is(1, 4)?;
        let v = self.rank_is(2, 4)?;
        let (b, h, s, d) = (get(q, 0), get(q, 1), get(q, 2), get(q, 3));
        let b = self.dim_eq(1, 0, &b, "q's batch dim")?;
        let b = self.dim_eq(2, 0, &b, "q's batch dim")?;
        let hkv = self.dim_eq(2, 1, &get(k, 1), "k's head dim")?;
        let d = self.dim_eq(1, 3, &d, "q's head size")?;
        let s_new = self.dim_eq(2, 2, &get(k, 2), "k's seq dim")?;
        let dv = get(v, 3);
        match (h.as_fixed(), hkv.as_fixed()) {
            (Some(hq), Some(hk)) if hk <= 0 || hq % hk != 0 => {
                return Err(format!("q's {hq} heads are not a multiple of k/v's {hk} kv heads"));
            }
            _ => {}
        }
        let mut t = s_new.clone();
        let mut results = Vec::with_capacity(3);
        let mut present = None;
        if let Some((pk, pv)) = past {
            for i in [pk, pv] {
                self.same_dtype(i, 0)?;
                self.rank_is(i, 4)?;
                self.dim_eq(i, 0, &b, "the batch dim")?;
                self.dim_eq(i, 1, &hkv, "the kv head count")?;
            }
            self.dim_eq(pk, 3, &d, "the head size")?;
            self.dim_eq(pv, 3, &dv, "v's head size")?;
            let p = get(self.shape(pk)?, 2);
            let p = self.dim_eq(pv, 2, &p, "past_k's seq dim")?;
            t = p.add(&s_new);
            present = Some((
                TensorType::new(dt, vec![b.clone(), hkv.clone(), t.clone(), d.clone()]),
                TensorType::new(dt, vec![b.clone(), hkv.clone(), t.clone(), dv.clone()]),
            ));
        }
        if let Some(mi) = mask {
            let m = self.ty(mi)?;
            if m.dtype != DType::Bool && m.dtype != dt {
                return Err(format!("{}: mask must be bool or q's dtype {dt}, found {}", self.label(mi), m.dtype));
            }
            self.broadcasts_to(mi, &[b.clone(), h.clone(), s.clone(), t.clone()], "the scores [B, H, S, T]")?;
        }
        results.push(TensorType::new(dt, vec![b, h, s, dv]));
        if let Some((pk, pv)) = present {
            results.push(pk);
            results.push(pv);
        }
        Ok(results)
    }

    fn sample(&self, temperature: f64, top_k: i64, top_p: f64, penalty: f64) -> Result<Vec<TensorType>, String> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(format!("temperature must be finite and non-negative, found {temperature}"));
        }
        if top_k < 0 {
            return Err(format!("top_k must be non-negative, found {top_k}"));
        }
        if !(0.0..=1.0).contains(&top_p) {
            return Err(format!("top_p must lie in [0, 1], found {top_p}"));
        }
        if !(penalty.is_finite() && penalty > 0.0) {
            return Err(format!("repetition_penalty must be finite and positive, found {penalty}"));
        }
        self.class(0, Class::Float)?;
        let logits = self.rank_at_least(0, 1)?;
        let lead = logits.get(..logits.len() - 1).unwrap_or_default().to_vec();
        let mut shape = lead.clone();
        if self.tys.len() > 1 {
            self.dtype_is(1, DType::I64)?;
            self.rank_is(1, logits.len())?;
            for (k, (slot, d)) in shape.iter_mut().zip(&lead).enumerate() {
                *slot = self.dim_eq(1, k, d, "logits' leading dim")?;
            }
        }
        Ok(one(TensorType::new(DType::I64, shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Dim {
        Dim::sym(s)
    }

    #[test]
    fn broadcast_dim_rules() {
        let n = Dim::fixed;
        assert_eq!(broadcast_dim(&n(1), &sym("a")), Some(sym("a")));
        assert_eq!(broadcast_dim(&sym("a"), &n(1)), Some(sym("a")));
        assert_eq!(broadcast_dim(&n(3), &n(3)), Some(n(3)));
        assert_eq!(broadcast_dim(&n(3), &n(4)), None);
        assert_eq!(broadcast_dim(&sym("a"), &n(4)), Some(n(4)), "static non-1 wins over a symbol");
        assert_eq!(broadcast_dim(&n(4), &sym("a")), Some(n(4)));
        assert_eq!(broadcast_dim(&Dim::Unknown, &sym("a")), Some(sym("a")), "known wins over ?");
        assert_eq!(broadcast_dim(&sym("a"), &sym("a")), Some(sym("a")));
        assert_eq!(broadcast_dim(&sym("a"), &sym("b")), Some(Dim::Unknown));
        assert_eq!(broadcast_dim(&n(0), &n(1)), Some(n(0)));
    }

    #[test]
    fn unify_dim_rules() {
        let n = Dim::fixed;
        assert_eq!(unify_dim(&n(8), &n(8)), Some(n(8)));
        assert_eq!(unify_dim(&n(8), &n(16)), None);
        assert_eq!(unify_dim(&sym("s"), &sym("s").add(&n(1))), None, "differ by a constant");
        assert_eq!(unify_dim(&sym("s"), &n(8)), Some(n(8)));
        assert_eq!(unify_dim(&Dim::Unknown, &sym("s")), Some(sym("s")));
        assert_eq!(unify_dim(&sym("a"), &sym("b")), Some(sym("a")));
        assert_eq!(unify_dim(&Dim::Unknown, &Dim::Unknown), Some(Dim::Unknown));
    }

    #[test]
    fn slice_dim_static_follows_onnx() {
        let n = Dim::fixed;
        assert_eq!(slice_dim(&n(10), 2, -1, 1), n(7));
        assert_eq!(slice_dim(&n(10), 0, i64::MAX, 2), n(5));
        assert_eq!(slice_dim(&n(10), -1, i64::MIN, -1), n(10));
        assert_eq!(slice_dim(&n(10), 8, 2, -2), n(3));
        assert_eq!(slice_dim(&n(10), 20, 30, 1), n(0));
        assert_eq!(slice_dim(&n(10), -100, 3, 1), n(3));
        assert_eq!(slice_dim(&n(0), -1, i64::MIN, -1), n(0));
    }

    #[test]
    fn slice_dim_symbolic() {
        let s = sym("s");
        let n = Dim::fixed;
        assert_eq!(slice_dim(&s, 0, i64::MAX, 1), s);
        assert_eq!(slice_dim(&s, 1, i64::MAX, 1), s.sub(&n(1)));
        assert_eq!(slice_dim(&s, 0, -1, 1), s.sub(&n(1)));
        assert_eq!(slice_dim(&s, 2, -1, 1), s.sub(&n(3)));
        // One-element reads assume the dim is not empty (the run time checks the result).
        assert_eq!(slice_dim(&s, -1, i64::MAX, 1), n(1), "the last element");
        assert_eq!(slice_dim(&s, 0, 1, 1), n(1), "the first element");
        assert_eq!(slice_dim(&s, 0, 4, 1), Dim::Unknown, "min(4, s) is not a polynomial");
        assert_eq!(slice_dim(&s, -2, i64::MAX, 1), Dim::Unknown, "min(2, s)");
        assert_eq!(slice_dim(&s, -3, -1, 1), Dim::Unknown, "negative start and end");
        assert_eq!(slice_dim(&s, 4, 2, 1), n(0));
        assert_eq!(slice_dim(&s, -2, -3, 1), n(0));
        assert_eq!(slice_dim(&s, 0, i64::MAX, 2), Dim::Unknown);
        assert_eq!(slice_dim(&Dim::Unknown, 0, i64::MAX, 1), Dim::Unknown);
    }

    #[test]
    fn types_agree_rules() {
        let t = |shape: Vec<Dim>| TensorType::new(DType::F32, shape);
        let n = Dim::fixed;
        assert!(types_agree(&t(vec![sym("b"), n(4)]), &t(vec![sym("b"), n(4)])));
        assert!(types_agree(&t(vec![Dim::Unknown, n(4)]), &t(vec![sym("b"), n(4)])));
        assert!(types_agree(&t(vec![sym("b"), n(4)]), &t(vec![sym("b"), Dim::Unknown])));
        assert!(!types_agree(&t(vec![n(3)]), &t(vec![n(4)])));
        assert!(!types_agree(&t(vec![sym("a")]), &t(vec![sym("b")])));
        assert!(!types_agree(&t(vec![n(3)]), &t(vec![n(3), n(1)])));
        assert!(!types_agree(&TensorType::fixed(DType::F16, &[3]), &t(vec![n(3)])));
    }

    #[test]
    fn operand_counts_are_checked_first() {
        let x = TensorType::fixed(DType::F32, &[2]);
        let err = infer_types(&Op::Add, &[&x], &[], None).unwrap_err();
        assert_eq!(err, "add expects 2 operands, found 1");
        let err = infer_types(&Op::Concat { axis: 0 }, &[], &[], None).unwrap_err();
        assert_eq!(err, "concat expects at least 1 operand, found 0");
        let err = infer_types(&Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false }, &[&x], &[], None)
            .unwrap_err();
        assert_eq!(err, "gemm expects 2 to 3 operands, found 1");
    }
}
