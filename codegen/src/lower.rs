//! Lowering of ModelIR fusion groups (the `fusion-groups` pass's output) to [`Kernel`]s.
//!
//! One kernel per group, through one of three templates picked by the group's
//! [`GroupKind`]:
//!
//! * **elementwise** and **reduction** groups share the *row template*. The iteration space
//!   `S` is the anchor reduction's input shape (reduction groups) or the common shape of the
//!   group's outputs (elementwise groups). Its last axis is the *row* axis `j`; the others
//!   are walked by the parallel loop (axis 0) and nested loops. When every buffer either
//!   has all of `S`'s leading dims or none of them (size 1), the leading dims are collapsed
//!   into one, so the parallel loop runs over all rows. Per row: values that do not vary
//!   along `j` (reduction results and what is computed from them) become locals; each
//!   reduction over the last axis becomes a [`Stmt::Reduce`] whose value is the expression
//!   tree of its prologue; all values that vary along `j` and leave the group are stored in
//!   one loop over `j`. Numpy broadcasting becomes stride-0 index terms.
//! * **matmul** groups: `matmul` with a 2-D right operand, `linear` and `packed_linear`
//!   become a [`Stmt::CallMicroKernel`] (`sgemm` / `sgemm_nt` on the `[out, in]` weight as
//!   stored / `sgemm_packed`; `quantized_linear` with `q8_0` or `q4_0` weights:
//!   `gemm_q8_0` / `gemm_q4_0`), followed by an epilogue loop (bias and the group's
//!   elementwise ops) over the same elements. With a constant `N ≥ 64` the parallel loop
//!   walks tiles of 32 or 64 *columns* and each call multiplies all rows (decode's one-row
//!   products then use every thread, and each weight column is read once); otherwise it
//!   walks tiles of 16 rows.
//!
//! * **matmul with a head split**: a matmul whose epilogue is `reshape → transpose
//!   {perm = [0, 2, 1, 3]} [→ rotary_embedding]` (Llama's q/k/v projections): the product
//!   goes to a temp buffer, then each row is scattered (and rotated) to its heads.
//! * **attention** groups (`attention` with an optional head-merging epilogue): online
//!   softmax per query row, see `attention_template`.
//! * **data movement** (single-op groups): `gather` along axis 0 (embedding lookup); views
//!   (`reshape`, `squeeze`, `unsqueeze`, `identity`) as flat copies; `transpose`, `expand`,
//!   static `slice` as strided copies; `concat` as block copies (see `copy_template`).
//!
//! * **single-op opaque groups** with templates of their own (`lower/*.rs`): `cumsum` as a
//!   prefix scan (`scan`), `scatter_nd` (`scatter`), `topk` through the runtime's `topk`
//!   helper (`topk`); shared assembly helpers in `builder`.
//!
//! Temp buffers ([`BufferRole::Temp`]) are bound to an IR value internal to the group, whose
//! type gives their size; the runtime allocates them for the launch.
//!
//! Anything else is refused with [`CodegenError::Unsupported`] naming the op, so callers can
//! report coverage.

mod builder;
mod coords;
mod matmul_promote;
mod scan;
mod scatter;
mod topk;

use crate::kernel::*;
use crate::CodegenError;
use ferrumc_ir::dim::Dim;
use ferrumc_ir::op::GeluApproximation;
use ferrumc_ir::{DType, Function, GroupKind, Op, OpId, ValueId};
use std::collections::{HashMap, HashSet};

/// A kernel plus what the runtime needs to launch it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoweredGroup {
    /// The fusion group this kernel computes.
    pub group: u32,
    pub kernel: Kernel,
    /// The IR value each buffer of the kernel binds, in buffer order.
    pub buffer_values: Vec<ValueId>,
    /// The group's ops, in topological order.
    pub ops: Vec<OpId>,
}

/// A group id with its kernel or the reason it has none.
pub type GroupResult = (u32, Result<LoweredGroup, CodegenError>);

/// Rows per parallel iteration of a micro-kernel call.
pub const GEMM_ROW_TILE: u32 = 16;

/// Lower every fusion group of `f`, in order of group id. Each entry is the group id and
/// its kernel or the reason it has none.
pub fn lower_function(f: &Function) -> Result<Vec<GroupResult>, CodegenError> {
    let order = f.op_order().map_err(|e| CodegenError::Invalid(e.to_string()))?;
    let mut groups: Vec<u32> = order.iter().filter_map(|o| f.group(*o)).collect();
    groups.sort_unstable();
    groups.dedup();
    Ok(groups.into_iter().map(|g| (g, lower_group(f, g))).collect())
}

/// Lower fusion group `group` of `f` to one kernel.
pub fn lower_group(f: &Function, group: u32) -> Result<LoweredGroup, CodegenError> {
    let order = f.op_order().map_err(|e| CodegenError::Invalid(e.to_string()))?;
    let ops: Vec<OpId> = order.iter().copied().filter(|o| f.group(*o) == Some(group)).collect();
    let Some(&first) = ops.first() else {
        return Err(CodegenError::Invalid(format!("fusion group {group} has no ops")));
    };
    let kind = f.group_kind(group).ok_or_else(|| CodegenError::Invalid(format!("fusion group {group} has no kind")))?;
    let name = format!("{}_g{group}", f.name);
    if Lowerer::new(f, &ops, &name).outputs().is_empty() {
        // Dead code (nothing outside reads the group): an empty kernel.
        let kernel = Kernel {
            name,
            buffers: Vec::new(),
            dims: Vec::new(),
            parallel: LoopExtent { extent: Size::constant(0), tile: 1 },
            locals: Vec::new(),
            body: Vec::new(),
        };
        return Ok(LoweredGroup { group, kernel, buffer_values: Vec::new(), ops });
    }
    let kernel_result = match kind {
        GroupKind::Elementwise | GroupKind::Reduction => {
            // Collapsing the leading dims is an optimisation: fall back to the full nest.
            match Lowerer::new(f, &ops, &name).row_template(true) {
                Err(LowerFail::NotCollapsible) => Lowerer::new(f, &ops, &name).row_template(false),
                other => other,
            }
        }
        GroupKind::Matmul if ops.iter().any(|o| f.op(*o).is_some_and(is_head_split_op)) => {
            Lowerer::new(f, &ops, &name).matmul_heads_template()
        }
        GroupKind::Matmul => Lowerer::new(f, &ops, &name).matmul_template(),
        GroupKind::Attention => Lowerer::new(f, &ops, &name).attention_template(),
        GroupKind::DataMovement if ops.len() == 1 && f.op(first).is_some_and(|d| matches!(d.op, Op::Gather { .. })) => {
            Lowerer::new(f, &ops, &name).gather_template()
        }
        GroupKind::DataMovement if ops.len() == 1 => Lowerer::new(f, &ops, &name).copy_template(),
        // `fusion-groups` classifies `packed_linear` as opaque (one op, no epilogue); it is
        // still a matmul.
        GroupKind::Opaque if ops.len() == 1 && f.op(first).is_some_and(|d| matches!(d.op, Op::PackedLinear { .. })) => {
            Lowerer::new(f, &ops, &name).matmul_template()
        }
        GroupKind::Opaque if ops.len() == 1 && f.op(first).is_some_and(|d| matches!(d.op, Op::CumSum { .. })) => {
            scan::cumsum_template(f, first, &name).map_err(LowerFail::Error)
        }
        GroupKind::Opaque if ops.len() == 1 && f.op(first).is_some_and(|d| matches!(d.op, Op::ScatterNd { .. })) => {
            scatter::scatter_nd_template(f, first, &name).map_err(LowerFail::Error)
        }
        GroupKind::Opaque if ops.len() == 1 && f.op(first).is_some_and(|d| matches!(d.op, Op::TopK { .. })) => {
            topk::topk_template(f, first, &name).map_err(LowerFail::Error)
        }
        other => {
            Err(unsupported(&op_name(f, first), format!("fusion groups of kind `{other}` have no kernel template yet")))
        }
    };
    // A template that built an ill-typed kernel (a dtype mix it does not handle) refuses.
    let kernel_result = match kernel_result {
        Ok((k, _)) if k.check_types().is_err() => {
            let why = k.check_types().err().unwrap_or_default();
            Err(unsupported(&op_name(f, first), format!("the template does not handle these dtypes ({why})")))
        }
        other => other,
    };
    // What the specialised templates refuse, the coordinate template may still compute.
    let kernel_result = match kernel_result {
        Err(LowerFail::Error(e @ CodegenError::Unsupported { .. })) => {
            coords::coords_template(f, &ops, &name).and_then(checked).map_err(|fallback| match fallback {
                CodegenError::Unsupported { op, reason } => {
                    CodegenError::Unsupported { op, reason: format!("{reason} (and: {e})") }
                }
                other => other,
            })
        }
        Err(LowerFail::Error(e)) => Err(e),
        Err(LowerFail::NotCollapsible) => Err(CodegenError::Invalid("internal: collapse retry failed".into())),
        Ok(k) => Ok(k),
    };
    let (kernel, buffer_values) = kernel_result?;
    Ok(LoweredGroup { group, kernel, buffer_values, ops })
}

/// Lower `ops` (in topological order; not a fusion group of `f`, e.g. one op the grouping
/// pass left out) to one kernel with the general coordinate template, as group `group`.
pub fn lower_ops(f: &Function, ops: &[OpId], group: u32, name: &str) -> Result<LoweredGroup, CodegenError> {
    let (kernel, buffer_values) = coords::coords_template(f, ops, name).and_then(checked)?;
    Ok(LoweredGroup { group, kernel, buffer_values, ops: ops.to_vec() })
}

/// A kernel copying a dense `dtype` tensor of `shape` from buffer 0 to buffer 1.
pub fn copy_kernel(name: &str, dtype: DType, shape: &[Dim]) -> Result<Kernel, CodegenError> {
    coords::copy_kernel(name, dtype, shape)
}

/// `lowered` if its kernel is well typed, else unsupported.
fn checked(lowered: (Kernel, Vec<ValueId>)) -> Result<(Kernel, Vec<ValueId>), CodegenError> {
    match lowered.0.check_types() {
        Ok(()) => Ok(lowered),
        Err(why) => Err(CodegenError::Unsupported {
            op: lowered.0.name.clone(),
            reason: format!("the coordinate template does not handle these dtypes ({why})"),
        }),
    }
}

fn op_name(f: &Function, o: OpId) -> String {
    f.op(o).map(|d| d.op.name().to_string()).unwrap_or_else(|| "?".into())
}

enum LowerFail {
    /// The collapsed row space cannot index some buffer; retry with the full nest.
    NotCollapsible,
    Error(CodegenError),
}

impl From<CodegenError> for LowerFail {
    fn from(e: CodegenError) -> LowerFail {
        LowerFail::Error(e)
    }
}

type LResult<T> = Result<T, LowerFail>;

fn unsupported(op: &str, reason: impl Into<String>) -> LowerFail {
    LowerFail::Error(CodegenError::Unsupported { op: op.to_string(), reason: reason.into() })
}

fn is_one(d: &Dim) -> bool {
    d.as_fixed() == Some(1)
}

/// The iteration space of the row and matmul templates: leading coordinates (affine in the
/// loop variables) and the row axis.
#[derive(Clone)]
struct Space {
    /// The shape `S` the values broadcast to (possibly with leading dims collapsed into one).
    shape: Vec<Dim>,
    /// When collapsed: the original shape (leading dims of buffers are compared with it).
    original: Option<Vec<Dim>>,
    /// Coordinate of each leading axis (`shape.len() - 1` of them).
    coords: Vec<IndexExpr>,
}

/// Where an in-group value lives while its scope's code is built.
#[derive(Clone)]
enum Bound {
    Expr(Expr),
}

struct Lowerer<'a> {
    f: &'a Function,
    ops: &'a [OpId],
    members: HashSet<OpId>,
    name: String,
    dims: Vec<String>,
    buffers: Vec<BufferParam>,
    buffer_values: Vec<ValueId>,
    buffer_of: HashMap<ValueId, u32>,
    locals: Vec<ScalarType>,
    next_var: u32,
    /// Values computed per row (locals), visible in every scope of the row.
    row_values: HashMap<ValueId, Bound>,
    /// Fused definitions of values that vary along the row (softmax, rms_norm results).
    row_defs: HashMap<ValueId, RowDef>,
    /// Reduction results without keepdims: stored per row, never consumed in the group.
    rank_reduced: HashSet<ValueId>,
    /// Column-split matmul epilogues: the row axis' index is `col_base + j` (the parallel
    /// tile's first column plus the loop variable), not `j`.
    col_base: Option<IndexExpr>,
}

/// A value that varies along the row, defined from its input and per-row locals.
#[derive(Clone)]
enum RowDef {
    /// `exp(x - max) · inv_sum`.
    Softmax { x: ValueId, max: LocalId, inv_sum: LocalId },
    /// `(Σ xs) · scale · weight`.
    RmsNorm { xs: Vec<ValueId>, weight: ValueId, scale: LocalId },
    /// `(x − mean) · scale · weight (+ bias)`.
    LayerNorm { x: ValueId, mean: LocalId, scale: LocalId, weight: ValueId, bias: Option<ValueId> },
    /// `Σ xs` (the residual result of `rms_norm_residual`).
    Sum(Vec<ValueId>),
    /// The matmul anchor: a local holding its value at the current element, plus bias.
    Anchor { acc: LocalId, bias: Option<ValueId> },
}

/// One scope of expression building: `j` is the row variable (None at row level), `lets`
/// collects `Let`s when the scope is a loop body (None inside a reduction's value tree).
struct Scope {
    j: Option<Var>,
    cache: HashMap<ValueId, Expr>,
    lets: Option<Vec<Stmt>>,
}

impl<'a> Lowerer<'a> {
    fn new(f: &'a Function, ops: &'a [OpId], name: &str) -> Lowerer<'a> {
        Lowerer {
            f,
            ops,
            members: ops.iter().copied().collect(),
            name: name.to_string(),
            dims: Vec::new(),
            buffers: Vec::new(),
            buffer_values: Vec::new(),
            buffer_of: HashMap::new(),
            locals: Vec::new(),
            next_var: 1,
            row_values: HashMap::new(),
            row_defs: HashMap::new(),
            rank_reduced: HashSet::new(),
            col_base: None,
        }
    }

    // ------------------------------------------------------------------ helpers

    fn op(&self, o: OpId) -> LResult<&'a ferrumc_ir::OpData> {
        self.f.op(o).ok_or_else(|| LowerFail::Error(CodegenError::Invalid(format!("erased op {o} in a group"))))
    }

    fn fresh_var(&mut self) -> Var {
        let v = Var(self.next_var);
        self.next_var += 1;
        v
    }

    fn fresh_local(&mut self, ty: ScalarType) -> LocalId {
        self.locals.push(ty);
        LocalId(self.locals.len() as u32 - 1)
    }

    fn size(&mut self, d: &Dim) -> LResult<Size> {
        builder::dim_size(&mut self.dims, d).ok_or_else(|| unsupported(&self.name, builder::UNKNOWN_DIM))
    }

    fn product(&mut self, dims: &[Dim]) -> LResult<Size> {
        let mut s = Size::constant(1);
        for d in dims {
            s = s.mul(&self.size(d)?);
        }
        Ok(s)
    }

    fn buffer(&mut self, v: ValueId, role: BufferRole) -> u32 {
        if let Some(&b) = self.buffer_of.get(&v) {
            if role == BufferRole::Output {
                self.buffers[b as usize].role = BufferRole::Output;
            }
            return b;
        }
        let b = self.buffers.len() as u32;
        self.buffers.push(BufferParam { dtype: self.f.ty(v).dtype, role });
        self.buffer_values.push(v);
        self.buffer_of.insert(v, b);
        b
    }

    fn is_member_result(&self, v: ValueId) -> bool {
        self.f.producer(v).is_some_and(|p| self.members.contains(&p))
    }

    /// Group outputs: member results used outside the group or returned.
    fn outputs(&self) -> Vec<ValueId> {
        builder::group_outputs(self.f, self.ops, &self.members)
    }

    /// Uses of `v` inside the group (+1 if it is also a group output).
    fn use_count(&self, v: ValueId) -> usize {
        let inside = self.f.value(v).uses.iter().filter(|u| self.members.contains(&u.op)).count();
        let outside = self.f.value(v).uses.iter().any(|u| !self.members.contains(&u.op))
            || self.f.outputs().iter().any(|(_, o)| *o == v);
        inside + usize::from(outside)
    }

    fn scalar_type(&self, v: ValueId, op: &str) -> LResult<ScalarType> {
        let dt = self.f.ty(v).dtype;
        ScalarType::of_dtype(dt).ok_or_else(|| unsupported(op, format!("dtype {dt} is not supported in kernels yet")))
    }

    /// The index of element (coords, j) of a buffer of `shape`, broadcast to the space.
    fn index(&mut self, space: &Space, shape: &[Dim], j: Option<Var>) -> LResult<IndexExpr> {
        let r = space.shape.len();
        let mut ix = IndexExpr::default();
        if shape.is_empty() {
            return Ok(ix);
        }
        let last = &shape[shape.len() - 1];
        if !is_one(last) {
            match j {
                Some(j) => {
                    ix = ix.plus_var(j, &Size::constant(1));
                    if let Some(cb) = &self.col_base {
                        ix = add_scaled(ix, cb, &Size::constant(1));
                    }
                }
                None => return Err(LowerFail::Error(CodegenError::Invalid("row value read outside its loop".into()))),
            }
        }
        let row_len = self.size(last)?;
        let lead = &shape[..shape.len() - 1];
        match &space.original {
            Some(orig) => {
                let orig_lead = &orig[..orig.len().saturating_sub(1)];
                if lead.iter().all(is_one) {
                    // Broadcast over all rows.
                } else if !product(lead).is_unknown() && product(lead) == product(orig_lead) {
                    // Row-major: any split of the same rows indexes alike (broadcast-equal
                    // shapes and row-keeping reshapes).
                    let coord = space.coords[0].clone();
                    ix = add_scaled(ix, &coord, &row_len);
                } else {
                    return Err(LowerFail::NotCollapsible);
                }
            }
            None => {
                if lead.len() > r - 1 {
                    return Err(unsupported(&self.name, "a value has a higher rank than the iteration space"));
                }
                let mut stride = row_len;
                for (k, d) in lead.iter().enumerate().rev() {
                    let axis = r - 1 - lead.len() + k;
                    if !is_one(d) {
                        if *d != space.shape[axis] {
                            return Err(unsupported(&self.name, "shapes do not broadcast provably"));
                        }
                        let coord = space.coords[axis].clone();
                        ix = add_scaled(ix, &coord, &stride);
                    }
                    let ds = self.size(d)?;
                    stride = stride.mul(&ds);
                }
            }
        }
        Ok(ix)
    }

    /// The index of a per-row value without the reduced axis (`keepdims = false`).
    fn row_index(&mut self, space: &Space, shape: &[Dim]) -> LResult<IndexExpr> {
        let mut padded = shape.to_vec();
        padded.push(Dim::fixed(1));
        self.index(space, &padded, None)
    }

    // ------------------------------------------------------------------ expressions

    /// The expression of value `v` in `scope` (row scope chain: scope cache, then row values).
    fn expr(&mut self, space: &Space, scope: &mut Scope, v: ValueId) -> LResult<Expr> {
        if let Some(e) = scope.cache.get(&v) {
            return Ok(e.clone());
        }
        if let Some(Bound::Expr(e)) = self.row_values.get(&v) {
            return Ok(e.clone());
        }
        if self.rank_reduced.contains(&v) {
            let op = self.f.producer(v).map(|o| op_name(self.f, o)).unwrap_or_default();
            return Err(unsupported(&op, "a reduction without keepdims feeding ops of its own group"));
        }
        let e = if !self.is_member_result(v) {
            let ty = self.f.ty(v).clone();
            self.scalar_type(v, &self.name.clone())?;
            let buffer = self.buffer(v, BufferRole::Input);
            let index = self.index(space, &ty.shape, scope.j)?;
            Expr::Load { buffer, index }
        } else if let Some(def) = self.row_defs.get(&v).cloned() {
            match def {
                RowDef::Softmax { x, max, inv_sum } => {
                    let xe = self.expr(space, scope, x)?;
                    let ex = Expr::unary(UnaryOp::Exp, Expr::binary(BinaryOp::Sub, xe, Expr::Local(max)));
                    Expr::binary(BinaryOp::Mul, ex, Expr::Local(inv_sum))
                }
                RowDef::RmsNorm { xs, weight, scale } => {
                    let xe = self.sum_expr(space, scope, &xs)?;
                    let we = self.expr(space, scope, weight)?;
                    Expr::binary(BinaryOp::Mul, Expr::binary(BinaryOp::Mul, xe, Expr::Local(scale)), we)
                }
                RowDef::LayerNorm { x, mean, scale, weight, bias } => {
                    let xe = self.expr(space, scope, x)?;
                    let we = self.expr(space, scope, weight)?;
                    let centred = Expr::binary(BinaryOp::Sub, xe, Expr::Local(mean));
                    let y = Expr::binary(BinaryOp::Mul, Expr::binary(BinaryOp::Mul, centred, Expr::Local(scale)), we);
                    match bias {
                        Some(b) => Expr::binary(BinaryOp::Add, y, self.expr(space, scope, b)?),
                        None => y,
                    }
                }
                RowDef::Sum(xs) => self.sum_expr(space, scope, &xs)?,
                RowDef::Anchor { acc, bias } => match bias {
                    Some(b) => {
                        let be = self.expr(space, scope, b)?;
                        Expr::binary(BinaryOp::Add, Expr::Local(acc), be)
                    }
                    None => Expr::Local(acc),
                },
            }
        } else {
            let Some(p) = self.f.producer(v) else {
                return Err(LowerFail::Error(CodegenError::Invalid("member value without producer".into())));
            };
            let data = self.op(p)?;
            if is_view(&data.op) {
                // A reshape that keeps rows: the same elements in the collapsed row space.
                if space.original.is_none() {
                    return Err(unsupported(data.op.name(), "views are lowered in the collapsed row space only"));
                }
                return self.expr(space, scope, data.operands[0]);
            }
            let mut args = Vec::with_capacity(data.operands.len());
            for &a in &data.operands {
                args.push(self.expr(space, scope, a)?);
            }
            let arg_tys: Vec<ScalarType> =
                data.operands.iter().map(|&a| self.scalar_type(a, data.op.name())).collect::<LResult<_>>()?;
            let out_ty = self.scalar_type(v, data.op.name())?;
            let e = elementwise_expr(&data.op, args, &arg_tys, out_ty)?;
            let dtype = self.f.ty(v).dtype;
            if ScalarType::is_narrow(dtype) && !coords::preserves_values(&data.op) {
                Expr::unary(UnaryOp::Narrow(dtype), e)
            } else {
                e
            }
        };
        let e = match (&mut scope.lets, &e) {
            (_, Expr::Load { .. } | Expr::Local(_) | Expr::Const(_)) => e,
            (Some(lets), _) if self.use_count(v) >= 2 || duplicates_operand(self.f, v) => {
                let ty = self.scalar_type(v, &self.name.clone())?;
                let local = self.fresh_local(ty);
                lets.push(Stmt::Let { local, value: e });
                Expr::Local(local)
            }
            _ => e,
        };
        scope.cache.insert(v, e.clone());
        Ok(e)
    }

    fn sum_expr(&mut self, space: &Space, scope: &mut Scope, xs: &[ValueId]) -> LResult<Expr> {
        let mut acc: Option<Expr> = None;
        for &x in xs {
            let e = self.expr(space, scope, x)?;
            acc = Some(match acc {
                None => e,
                Some(a) => Expr::binary(BinaryOp::Add, a, e),
            });
        }
        acc.ok_or_else(|| LowerFail::Error(CodegenError::Invalid("empty sum".into())))
    }

    /// Whether member op `d` is lowered by the row and matmul templates.
    fn supported_member(&self, d: &ferrumc_ir::OpData) -> bool {
        is_supported_elementwise(&d.op)
            || (is_view(&d.op)
                && d.results.len() == 1
                && same_rows(&self.f.ty(d.operands[0]).shape, &self.f.ty(d.results[0]).shape))
    }

    // ------------------------------------------------------------------ the row template

    fn row_template(mut self, collapse: bool) -> LResult<(Kernel, Vec<ValueId>)> {
        let f = self.f;
        // Supported members and the anchor.
        let mut anchor: Option<OpId> = None;
        for &o in self.ops {
            let d = self.op(o)?;
            let name = d.op.name();
            if is_reduction_anchor(&d.op) {
                if anchor.is_some() {
                    return Err(unsupported(name, "a second reduction in one group"));
                }
                anchor = Some(o);
            } else if !self.supported_member(d) {
                return Err(unsupported(name, "not lowered by the elementwise/reduction template yet"));
            }
        }
        if let Some(a) = anchor {
            let d = self.op(a)?;
            let rank_reducing = matches!(
                d.op,
                Op::ReduceSum { keepdims: false, .. }
                    | Op::ReduceMean { keepdims: false, .. }
                    | Op::ReduceMax { keepdims: false, .. }
            );
            if rank_reducing && self.f.value(d.results[0]).uses.iter().any(|u| self.members.contains(&u.op)) {
                // Its consumers live in a space of lower rank than the row space.
                return Err(unsupported(d.op.name(), "a reduction without keepdims feeding ops of its own group"));
            }
        }
        let outputs = self.outputs();
        if outputs.is_empty() {
            return Err(LowerFail::Error(CodegenError::Invalid("group has no outputs".into())));
        }
        // The iteration space.
        let full: Vec<Dim> = match anchor {
            Some(a) => {
                let d = self.op(a)?;
                let x = d.operands[0];
                let shape = f.ty(x).shape.clone();
                if shape.is_empty() {
                    return Err(unsupported(d.op.name(), "reduction of a scalar"));
                }
                let last = shape.len() as i64 - 1;
                let ok = match &d.op {
                    Op::ReduceSum { axes, .. } | Op::ReduceMean { axes, .. } | Op::ReduceMax { axes, .. } => {
                        axes.len() == 1 && (axes[0] == -1 || axes[0] == last)
                    }
                    Op::Softmax { axis } => *axis == -1 || *axis == last,
                    Op::RmsNorm { .. } | Op::RmsNormResidual { .. } => true,
                    Op::LayerNorm { axis, .. } => *axis == -1 || *axis == last,
                    _ => false,
                };
                if !ok {
                    return Err(unsupported(d.op.name(), "only reductions over the last axis are lowered yet"));
                }
                shape
            }
            None => {
                let s = f.ty(outputs[0]).shape.clone();
                let differs = |o: &ValueId| {
                    let t = &f.ty(*o).shape;
                    if collapse {
                        !same_rows(t, &s)
                    } else {
                        *t != s
                    }
                };
                if outputs.iter().any(differs) {
                    return Err(unsupported(&op_name(f, self.ops[0]), "elementwise group outputs of different shapes"));
                }
                s
            }
        };
        let full = if full.is_empty() { vec![Dim::fixed(1)] } else { full };
        let r = full.len();
        // Leading axes: collapsed into one (parallel over all rows) or a loop nest.
        let (space, parallel, mut nest_vars) = if collapse || r <= 2 {
            let rows = self.product(&full[..r - 1])?;
            let space = Space {
                shape: vec![full[..r - 1].iter().fold(Dim::fixed(1), |a, d| a.mul(d)), full[r - 1].clone()],
                original: Some(full.clone()),
                coords: vec![IndexExpr::var(Var::PARALLEL, Size::constant(1))],
            };
            (space, LoopExtent { extent: rows, tile: 1 }, Vec::new())
        } else {
            let mut coords = vec![IndexExpr::var(Var::PARALLEL, Size::constant(1))];
            let mut nest = Vec::new();
            for d in &full[1..r - 1] {
                let v = self.fresh_var();
                coords.push(IndexExpr::var(v, Size::constant(1)));
                let e = self.size(d)?;
                nest.push((v, e));
            }
            let extent = self.size(&full[0])?;
            (Space { shape: full.clone(), original: None, coords }, LoopExtent { extent, tile: 1 }, nest)
        };
        let n_dim = full[r - 1].clone();
        let n = self.size(&n_dim)?;
        let row_varies = !is_one(&n_dim);

        // Per-row statements, in op order.
        let mut row: Vec<Stmt> = Vec::new();
        let mut row_scope = Scope { j: None, cache: HashMap::new(), lets: Some(Vec::new()) };
        for &o in self.ops {
            let d = self.op(o)?;
            let res = d.results[0];
            let varies = row_varies && value_varies(f, res, &full);
            if Some(o) == anchor {
                self.lower_anchor(&space, o, &n, &mut row)?;
                continue;
            }
            if !varies {
                // A per-row scalar: computed once per row.
                let e = self.expr(&space, &mut row_scope, res)?;
                row.append(row_scope.lets.as_mut().map(std::mem::take).unwrap_or_default().as_mut());
                let ty = self.scalar_type(res, d.op.name())?;
                let e = match e {
                    Expr::Local(_) | Expr::Const(_) => e,
                    other => {
                        let local = self.fresh_local(ty);
                        row.push(Stmt::Let { local, value: other });
                        Expr::Local(local)
                    }
                };
                row_scope.cache.clear();
                self.row_values.insert(res, Bound::Expr(e));
            }
        }
        // Stores: per-row outputs at row level, the others in one loop over the row.
        let j = self.fresh_var();
        let mut loop_scope = Scope { j: Some(j), cache: HashMap::new(), lets: Some(Vec::new()) };
        let mut loop_body = Vec::new();
        for &out in &outputs {
            let varies = row_varies && value_varies(f, out, &full) && !self.rank_reduced.contains(&out);
            let shape = f.ty(out).shape.clone();
            if varies {
                let value = self.expr(&space, &mut loop_scope, out)?;
                loop_body.append(loop_scope.lets.as_mut().map(std::mem::take).unwrap_or_default().as_mut());
                let buffer = self.buffer(out, BufferRole::Output);
                let index = self.index(&space, &shape, Some(j))?;
                loop_body.push(Stmt::Store { buffer, index, value });
            } else {
                let value = match self.row_values.get(&out) {
                    Some(Bound::Expr(e)) => e.clone(),
                    None => {
                        let e = self.expr(&space, &mut row_scope, out)?;
                        // Locals the expression bound must precede the store.
                        row.append(row_scope.lets.as_mut().map(std::mem::take).unwrap_or_default().as_mut());
                        e
                    }
                };
                let buffer = self.buffer(out, BufferRole::Output);
                let index = if self.rank_reduced.contains(&out) {
                    self.row_index(&space, &shape)?
                } else {
                    self.index(&space, &shape, None)?
                };
                row.push(Stmt::Store { buffer, index, value });
            }
        }
        if !loop_body.is_empty() {
            row.push(Stmt::Loop { var: j, extent: Extent::Size(n), body: loop_body });
        }
        // Wrap the row in the nest of leading loops.
        let mut body = row;
        while let Some((v, e)) = nest_vars.pop() {
            body = vec![Stmt::Loop { var: v, extent: Extent::Size(e), body }];
        }
        Ok(self.finish(parallel, body))
    }

    fn finish(self, parallel: LoopExtent, body: Vec<Stmt>) -> (Kernel, Vec<ValueId>) {
        let kernel =
            Kernel { name: self.name, buffers: self.buffers, dims: self.dims, parallel, locals: self.locals, body };
        (kernel, self.buffer_values)
    }

    /// Emit the reduction statements of `anchor` into `row` and bind its result.
    fn lower_anchor(&mut self, space: &Space, anchor: OpId, n: &Size, row: &mut Vec<Stmt>) -> LResult<()> {
        let d = self.op(anchor)?;
        let name = d.op.name();
        let x = d.operands[0];
        let res = d.results[0];
        // The reduced input: `x`, or `x + residual` for `rms_norm_residual`.
        let xs: Vec<ValueId> = match d.op {
            Op::RmsNormResidual { .. } => d.operands[..2].to_vec(),
            _ => vec![x],
        };
        for &v in xs.iter().chain(&d.results) {
            if self.scalar_type(v, name)? != ScalarType::F32 {
                return Err(unsupported(name, "reductions are lowered for f32 only"));
            }
        }
        let mut reduce =
            |this: &mut Self, kind: ReduceKind, init: f32, map: &dyn Fn(Expr) -> Expr| -> LResult<LocalId> {
                let var = this.fresh_var();
                let mut scope = Scope { j: Some(var), cache: HashMap::new(), lets: None };
                let xe = this.sum_expr(space, &mut scope, &xs)?;
                let into = this.fresh_local(ScalarType::F32);
                row.push(Stmt::Reduce {
                    kind,
                    var,
                    extent: Extent::Size(n.clone()),
                    init: Expr::f32(init),
                    value: map(xe),
                    into,
                });
                Ok(into)
            };
        let n_f32 = match n.as_constant() {
            Some(c) => Expr::f32(c as f32),
            None => Expr::cast(ScalarType::F32, size_expr(n)),
        };
        match &d.op {
            Op::ReduceSum { keepdims, .. } | Op::ReduceMean { keepdims, .. } | Op::ReduceMax { keepdims, .. } => {
                let kind = if matches!(d.op, Op::ReduceMax { .. }) { ReduceKind::Max } else { ReduceKind::Sum };
                let init = if kind == ReduceKind::Max { f32::NEG_INFINITY } else { 0.0 };
                let acc = reduce(self, kind, init, &|e| e)?;
                let value = if matches!(d.op, Op::ReduceMean { .. }) {
                    let l = self.fresh_local(ScalarType::F32);
                    row.push(Stmt::Let { local: l, value: Expr::binary(BinaryOp::Div, Expr::Local(acc), n_f32) });
                    l
                } else {
                    acc
                };
                if !keepdims {
                    self.rank_reduced.insert(res);
                }
                self.row_values.insert(res, Bound::Expr(Expr::Local(value)));
            }
            Op::Softmax { .. } => {
                let max = reduce(self, ReduceKind::Max, f32::NEG_INFINITY, &|e| e)?;
                let sum = reduce(self, ReduceKind::Sum, 0.0, &|e| {
                    Expr::unary(UnaryOp::Exp, Expr::binary(BinaryOp::Sub, e, Expr::Local(max)))
                })?;
                let inv_sum = self.fresh_local(ScalarType::F32);
                row.push(Stmt::Let { local: inv_sum, value: Expr::unary(UnaryOp::Recip, Expr::Local(sum)) });
                self.row_defs.insert(res, RowDef::Softmax { x, max, inv_sum });
            }
            Op::RmsNorm { epsilon } | Op::RmsNormResidual { epsilon } => {
                let weight = *d.operands.last().unwrap_or(&x);
                let sumsq = reduce(self, ReduceKind::Sum, 0.0, &|e| Expr::binary(BinaryOp::Mul, e.clone(), e))?;
                let scale = self.fresh_local(ScalarType::F32);
                let mean = Expr::binary(BinaryOp::Div, Expr::Local(sumsq), n_f32);
                row.push(Stmt::Let {
                    local: scale,
                    value: Expr::unary(UnaryOp::Rsqrt, Expr::binary(BinaryOp::Add, mean, Expr::f32(*epsilon as f32))),
                });
                if let Some(&sum) = d.results.get(1) {
                    self.row_defs.insert(sum, RowDef::Sum(xs.clone()));
                }
                self.row_defs.insert(res, RowDef::RmsNorm { xs, weight, scale });
            }
            Op::LayerNorm { epsilon, .. } => {
                // Two passes over the row, as the interpreter's population variance: the sum,
                // then the squared deviations from the mean.
                let sum = reduce(self, ReduceKind::Sum, 0.0, &|e| e)?;
                let mean_of = || Expr::binary(BinaryOp::Div, Expr::Local(sum), n_f32.clone());
                let sq_dev = reduce(self, ReduceKind::Sum, 0.0, &|e| {
                    let dev = Expr::binary(BinaryOp::Sub, e, mean_of());
                    Expr::binary(BinaryOp::Mul, dev.clone(), dev)
                })?;
                let (mean, scale) = (self.fresh_local(ScalarType::F32), self.fresh_local(ScalarType::F32));
                row.push(Stmt::Let { local: mean, value: mean_of() });
                let var = Expr::binary(BinaryOp::Div, Expr::Local(sq_dev), n_f32.clone());
                row.push(Stmt::Let {
                    local: scale,
                    value: Expr::unary(UnaryOp::Rsqrt, Expr::binary(BinaryOp::Add, var, Expr::f32(*epsilon as f32))),
                });
                let (weight, bias) = (d.operands[1], d.operands.get(2).copied());
                self.row_defs.insert(res, RowDef::LayerNorm { x, mean, scale, weight, bias });
            }
            other => return Err(unsupported(other.name(), "not a supported reduction")),
        }
        Ok(())
    }

    // ------------------------------------------------------------------ the matmul template

    fn matmul_template(mut self) -> LResult<(Kernel, Vec<ValueId>)> {
        let f = self.f;
        let mut anchor = None;
        let mut reshapes = Vec::new();
        for &o in self.ops {
            let d = self.op(o)?;
            if matches!(d.op, Op::MatMul | Op::Linear | Op::PackedLinear { .. } | Op::QuantizedLinear | Op::Gemm { .. })
            {
                if anchor.is_some() {
                    return Err(unsupported(d.op.name(), "a second matmul in one group"));
                }
                anchor = Some(o);
            } else if matches!(d.op, Op::Reshape { .. }) && !self.supported_member(d) {
                reshapes.push(d);
            } else if !self.supported_member(d) {
                return Err(unsupported(d.op.name(), "not lowered as a matmul epilogue yet"));
            }
        }
        let Some(anchor) = anchor else {
            return Err(LowerFail::Error(CodegenError::Invalid("matmul group without a matmul".into())));
        };
        let d = self.op(anchor)?;
        let name = d.op.name();
        let x = d.operands[0];
        let res = d.results[0];
        // A reshape of the product that changes its rows (`[B, S, H·D] → [B, S, H, D]`, as
        // Qwen3's q/k projections before their per-head norm) is only lowered as the whole
        // epilogue: the group is `matmul-op, reshape` and the reshape the only output. A
        // reshape keeps the bytes in place, so the product is written to it as `[m, n]` rows.
        let reshaped = match reshapes.as_slice() {
            [] => None,
            [r] if self.ops.len() == 2 && r.operands[0] == res && self.outputs() == [r.results[0]] => {
                Some(r.results[0])
            }
            [r, ..] => return Err(unsupported(r.op.name(), "not lowered as a matmul epilogue yet")),
        };
        let xs = f.ty(x).shape.clone();
        let out_shape = f.ty(res).shape.clone();
        if xs.is_empty() || out_shape.is_empty() || f.ty(x).dtype != DType::F32 || f.ty(res).dtype != DType::F32 {
            return Err(unsupported(name, "only f32 operands of rank ≥ 1 are lowered"));
        }
        let k_dim = xs[xs.len() - 1].clone();
        let n_dim = out_shape[out_shape.len() - 1].clone();
        let k = self.size(&k_dim)?;
        let n = self.size(&n_dim)?;
        let m = self.product(&out_shape[..out_shape.len() - 1])?;
        // What the anchor computes and with which weight/bias.
        enum How {
            Call(MicroKernel, ValueId, Size),
        }
        // Per-channel int8 weights' scales (`quantized_linear x, w:i8, scale[, bias]`).
        let mut scale = None;
        let (how, bias) = match &d.op {
            Op::MatMul => {
                let b = d.operands[1];
                if f.ty(b).rank() != 2 || f.ty(b).dtype != DType::F32 {
                    return Err(unsupported(name, "matmul is lowered with a 2-D f32 right operand only"));
                }
                (How::Call(MicroKernel::Sgemm, b, n.clone()), None)
            }
            Op::PackedLinear { .. } => {
                (How::Call(MicroKernel::SgemmPacked, d.operands[1], Size::constant(0)), d.operands.get(2).copied())
            }
            Op::QuantizedLinear if f.ty(d.operands[1]).dtype == DType::I8 => {
                let w = d.operands[1];
                let s = self.int8_scale(d.operands.get(2).copied(), w, &n)?;
                if d.operands.len() > 4 {
                    return Err(unsupported(name, "int8 weights take x, w, scale[, bias]"));
                }
                scale = Some(s);
                (How::Call(MicroKernel::GemmI8, w, k.clone()), d.operands.get(3).copied())
            }
            Op::QuantizedLinear => {
                let w = d.operands[1];
                let which = match f.ty(w).dtype {
                    DType::Q8_0 => MicroKernel::GemmQ8_0,
                    DType::Q4_0 => MicroKernel::GemmQ4_0,
                    other => return Err(unsupported(name, format!("{other} weights have no micro-kernel yet"))),
                };
                if d.operands.len() > 3 {
                    return Err(unsupported(name, "per-channel scales"));
                }
                (How::Call(which, w, Size::constant(0)), d.operands.get(2).copied())
            }
            Op::Linear => {
                let w = d.operands[1];
                if f.ty(w).rank() != 2 || f.ty(w).dtype != DType::F32 {
                    return Err(unsupported(name, "linear is lowered with a 2-D f32 weight only"));
                }
                (How::Call(MicroKernel::SgemmNt, w, k.clone()), d.operands.get(2).copied())
            }
            other => return Err(unsupported(other.name(), "no kernel template yet")),
        };
        if reshaped.is_some() && bias.is_some() {
            return Err(unsupported(name, "a bias before a row-changing reshape"));
        }
        let outputs = self.outputs();
        let written_whole = |o: ValueId| Some(o) == reshaped && f.ty(o).dtype == DType::F32;
        if outputs
            .iter()
            .any(|&o| !written_whole(o) && (!same_rows(&f.ty(o).shape, &out_shape) || f.ty(o).dtype != DType::F32))
        {
            return Err(unsupported(name, "epilogue outputs must have the matmul's shape and dtype f32"));
        }
        let Some(&first_out) = outputs.first() else {
            return Err(LowerFail::Error(CodegenError::Invalid("group has no outputs".into())));
        };
        let mut body = Vec::new();
        let sb = scale.map(|s| self.buffer(s, BufferRole::Input));
        let j = self.fresh_var();
        match how {
            How::Call(which, w, ldb) if gemm_col_tile(&n).is_some() => {
                // Column split: every launch multiplies all `m` rows by its tile of columns,
                // so one-row products (decode) use every thread and each weight column is
                // read once per step.
                let tile = gemm_col_tile(&n).unwrap_or(PANEL_COLS);
                let xb = self.buffer(x, BufferRole::Input);
                let wb = self.buffer(w, BufferRole::Input);
                let cb = self.buffer(first_out, BufferRole::Output);
                body.push(col_tile_gemm(which, xb, wb, cb, &m, &n, &k, ldb, sb));
                let parallel = LoopExtent { extent: n.clone(), tile };
                if outputs.len() == 1 && (first_out == res || written_whole(first_out)) && bias.is_none() {
                    return Ok(self.finish(parallel, body));
                }
                if let Some(up) = self.silu_mul_epilogue(res, bias, &outputs, &out_shape)? {
                    // `silu(acc) · up` in place over each row of the tile by the runtime's
                    // 16-lane helper (the generated f32x4 loop re-materializes exp's
                    // constants per element and cost ~25% of the gate projection).
                    let ub = self.buffer(up, BufferRole::Input);
                    let i = self.fresh_var();
                    let row = |buffer| DynRef {
                        buffer,
                        base: None,
                        index: IndexExpr::var(i, n.clone()).plus_var(Var::PARALLEL, &Size::constant(1)),
                    };
                    let call = SiluMulArgs { x: row(cb), z: row(ub), y: row(cb), n: Extent::ParallelTile };
                    body.push(Stmt::Loop {
                        var: i,
                        extent: Extent::Size(m),
                        body: vec![Stmt::CallSiluMul(Box::new(call))],
                    });
                    return Ok(self.finish(parallel, body));
                }
                let i = self.fresh_var();
                let space = Space {
                    shape: vec![Dim::fixed(0), n_dim.clone()],
                    original: Some(out_shape.clone()),
                    coords: vec![unit(i)],
                };
                self.col_base = Some(unit(Var::PARALLEL));
                let acc = self.fresh_local(ScalarType::F32);
                let acc_index = self.index(&space, &out_shape, Some(j))?;
                let mut inner = vec![Stmt::Let { local: acc, value: Expr::Load { buffer: cb, index: acc_index } }];
                self.row_defs.insert(res, RowDef::Anchor { acc, bias });
                inner.extend(self.epilogue_stores(&space, j, &outputs)?);
                body.push(Stmt::Loop {
                    var: i,
                    extent: Extent::Size(m),
                    body: vec![Stmt::Loop { var: j, extent: Extent::ParallelTile, body: inner }],
                });
                Ok(self.finish(parallel, body))
            }
            How::Call(which, w, ldb) => {
                let xb = self.buffer(x, BufferRole::Input);
                let wb = self.buffer(w, BufferRole::Input);
                let cb = self.buffer(first_out, BufferRole::Output);
                body.push(row_tile_gemm(which, xb, wb, cb, &n, &k, ldb, sb));
                // Epilogue over the tile's rows, unless the call already wrote the result.
                if outputs.len() == 1 && (first_out == res || written_whole(first_out)) && bias.is_none() {
                    let parallel = LoopExtent { extent: m, tile: GEMM_ROW_TILE };
                    return Ok(self.finish(parallel, body));
                }
                let i = self.fresh_var();
                let row = IndexExpr::var(Var::PARALLEL, Size::constant(1)).plus_var(i, &Size::constant(1));
                let space = Space {
                    shape: vec![Dim::fixed(0), n_dim.clone()],
                    original: Some(out_shape.clone()),
                    coords: vec![row],
                };
                let acc = self.fresh_local(ScalarType::F32);
                let acc_index = self.index(&space, &out_shape, Some(j))?;
                let mut inner = vec![Stmt::Let { local: acc, value: Expr::Load { buffer: cb, index: acc_index } }];
                self.row_defs.insert(res, RowDef::Anchor { acc, bias });
                inner.extend(self.epilogue_stores(&space, j, &outputs)?);
                body.push(Stmt::Loop {
                    var: i,
                    extent: Extent::ParallelTile,
                    body: vec![Stmt::Loop { var: j, extent: Extent::Size(n), body: inner }],
                });
                Ok(self.finish(LoopExtent { extent: m, tile: GEMM_ROW_TILE }, body))
            }
        }
    }

    /// The `up` operand when the group is exactly `out = silu_mul(acc, up)` with no bias,
    /// `up` a group input of the product's shape (dense rows like the output's).
    fn silu_mul_epilogue(
        &self,
        acc: ValueId,
        bias: Option<ValueId>,
        outputs: &[ValueId],
        out_shape: &[Dim],
    ) -> LResult<Option<ValueId>> {
        if bias.is_some() || outputs.len() != 1 || self.ops.len() != 2 {
            return Ok(None);
        }
        for &o in self.ops {
            let d = self.op(o)?;
            if let Op::SiluMul = d.op {
                let [g, up] = d.operands[..] else { return Ok(None) };
                let ty = self.f.ty(up);
                if g == acc
                    && up != acc
                    && d.results.first() == outputs.first()
                    && ty.dtype == DType::F32
                    && ty.shape == out_shape
                {
                    return Ok(Some(up));
                }
            }
        }
        Ok(None)
    }

    /// The scale operand of an int8 `quantized_linear`: f32 `[n]` beside an i8 `[n, k]` weight.
    fn int8_scale(&self, scale: Option<ValueId>, w: ValueId, n: &Size) -> LResult<ValueId> {
        let fail = |why: &str| unsupported("quantized_linear", why.to_string());
        let s = scale.ok_or_else(|| fail("an int8 weight needs its per-channel scale operand"))?;
        let (st, wt) = (self.f.ty(s), self.f.ty(w));
        if wt.rank() != 2 || st.dtype != DType::F32 || st.rank() != 1 {
            return Err(fail("int8 weights must be [n, k] with f32 scales [n]"));
        }
        if n.as_constant().is_some() && st.shape[0].as_fixed() != n.as_constant() {
            return Err(fail("the scales must have one entry per output column"));
        }
        Ok(s)
    }

    fn epilogue_stores(&mut self, space: &Space, j: Var, outputs: &[ValueId]) -> LResult<Vec<Stmt>> {
        let mut scope = Scope { j: Some(j), cache: HashMap::new(), lets: Some(Vec::new()) };
        let mut stmts = Vec::new();
        let mut stores = Vec::new();
        for &out in outputs {
            let value = self.expr(space, &mut scope, out).map_err(|e| match e {
                LowerFail::NotCollapsible => {
                    unsupported(&self.name, "an epilogue operand broadcasts over only some of the leading dims")
                }
                other => other,
            })?;
            stmts.append(scope.lets.as_mut().map(std::mem::take).unwrap_or_default().as_mut());
            let buffer = self.buffer(out, BufferRole::Output);
            let shape = self.f.ty(out).shape.clone();
            let index = self.index(space, &shape, Some(j))?;
            stores.push(Stmt::Store { buffer, index, value });
        }
        stmts.extend(stores);
        Ok(stmts)
    }
}

// ---------------------------------------------------------------------- data-dependent templates

/// `Index(ix)` as an expression.
fn ix_expr(ix: IndexExpr) -> Expr {
    Expr::Index(ix)
}

fn unit(v: Var) -> IndexExpr {
    IndexExpr::var(v, Size::constant(1))
}

impl Lowerer<'_> {
    fn f32_only(&self, v: ValueId, op: &str) -> LResult<()> {
        if self.f.ty(v).dtype == DType::F32 {
            Ok(())
        } else {
            Err(unsupported(op, format!("{} operands are not lowered yet", self.f.ty(v).dtype)))
        }
    }

    fn shape(&self, v: ValueId) -> Vec<Dim> {
        self.f.ty(v).shape.clone()
    }

    /// The gather template: `gather data, indices {axis = 0}` (embedding lookup). Parallel
    /// over the index elements; each copies one row of `data`. Negative indices wrap once;
    /// indices still out of range (which the runtime rejects before launch) read row 0 and
    /// produce zeros (`row · 0`, so finite data is assumed), never memory outside `data`.
    fn gather_template(mut self) -> LResult<(Kernel, Vec<ValueId>)> {
        let d = self.op(self.ops[0])?;
        let Op::Gather { axis } = d.op else {
            return Err(unsupported(d.op.name(), "not lowered by the data-movement template yet"));
        };
        let (data, ids, out) = (d.operands[0], d.operands[1], d.results[0]);
        let ds = self.shape(data);
        if (axis != 0 && axis != -(ds.len() as i64)) || ds.is_empty() {
            return Err(unsupported("gather", "only gathers along axis 0 are lowered"));
        }
        self.f32_only(data, "gather")?;
        if self.f.ty(ids).dtype != DType::I64 {
            return Err(unsupported("gather", "only i64 indices are lowered"));
        }
        let rows_n = self.product(&self.shape(ids))?;
        let v = self.size(&ds[0])?;
        let row = self.product(&ds[1..])?;
        let (db, ib, ob) = (
            self.buffer(data, BufferRole::Input),
            self.buffer(ids, BufferRole::Input),
            self.buffer(out, BufferRole::Output),
        );
        let (idx, wrapped, valid, safe, vf, base) = (
            self.fresh_local(ScalarType::I64),
            self.fresh_local(ScalarType::I64),
            self.fresh_local(ScalarType::Bool),
            self.fresh_local(ScalarType::I64),
            self.fresh_local(ScalarType::F32),
            self.fresh_local(ScalarType::I64),
        );
        let j = self.fresh_var();
        let l = Expr::Local;
        let body = vec![
            Stmt::Let { local: idx, value: Expr::Load { buffer: ib, index: unit(Var::PARALLEL) } },
            Stmt::Let {
                local: wrapped,
                value: Expr::select(
                    Expr::compare(CmpOp::Lt, l(idx), Expr::i64(0)),
                    Expr::binary(BinaryOp::Add, l(idx), Expr::Dim(v.clone())),
                    l(idx),
                ),
            },
            Stmt::Let { local: valid, value: Expr::compare(CmpOp::ULt, l(wrapped), Expr::Dim(v)) },
            Stmt::Let { local: safe, value: Expr::select(l(valid), l(wrapped), Expr::i64(0)) },
            Stmt::Let { local: vf, value: Expr::select(l(valid), Expr::f32(1.0), Expr::f32(0.0)) },
            Stmt::Let { local: base, value: Expr::binary(BinaryOp::Mul, l(safe), Expr::Dim(row.clone())) },
            Stmt::Loop {
                var: j,
                extent: Extent::Size(row.clone()),
                body: vec![Stmt::Store {
                    buffer: ob,
                    index: IndexExpr::var(Var::PARALLEL, row).plus_var(j, &Size::constant(1)),
                    value: Expr::binary(BinaryOp::Mul, Expr::load_at(db, l(base), unit(j)), l(vf)),
                }],
            },
        ];
        Ok(self.finish(LoopExtent { extent: rows_n, tile: 1 }, body))
    }

    /// The matmul template with a head-split tail: `A = matmul-op(x, w[, bias])` of shape
    /// `[B, S, H·D]` (the bias added as rows are scattered), then `reshape → [B, S, H, D]`, `transpose {perm = [0, 2, 1, 3]}` and
    /// optionally `rotary_embedding` (the Llama q/k/v projections). The product goes to a
    /// temp buffer (bound to `A`, sized by its type) one tile of rows at a time; each row
    /// `r = b·S + s` is then scattered to `out[b, :, s, :]` (rotated when there is a
    /// rotary op: positions out of the tables' range rotate by zero tables, i.e. produce
    /// zeros; the runtime rejects them before launch).
    fn matmul_heads_template(mut self) -> LResult<(Kernel, Vec<ValueId>)> {
        let f = self.f;
        let ops: Vec<&ferrumc_ir::OpData> = self.ops.iter().map(|o| self.op(*o)).collect::<LResult<_>>()?;
        let fail = |why: &str| unsupported("matmul", format!("head-split epilogue: {why}"));
        let [anchor, reshape, transpose, rest @ ..] = ops.as_slice() else {
            return Err(fail("expected matmul, reshape, transpose[, rotary_embedding]"));
        };
        let rotary = match rest {
            [] => None,
            [r] if matches!(r.op, Op::RotaryEmbedding { .. }) => Some(*r),
            _ => return Err(fail("expected matmul, reshape, transpose[, rotary_embedding]")),
        };
        let a_val = anchor.results[0];
        if !matches!(reshape.op, Op::Reshape { .. })
            || reshape.operands[0] != a_val
            || !matches!(&transpose.op, Op::Transpose { perm } if perm == &[0, 2, 1, 3])
            || transpose.operands[0] != reshape.results[0]
            || rotary.is_some_and(|r| r.operands[0] != transpose.results[0])
        {
            return Err(fail("ops do not form a chain"));
        }
        let out = rotary.map(|r| r.results[0]).unwrap_or(transpose.results[0]);
        if self.outputs() != vec![out] {
            return Err(fail("only the chain's last value may leave the group"));
        }
        let a_shape = self.shape(a_val);
        let r_shape = self.shape(reshape.results[0]);
        if a_shape.len() != 3 || r_shape.len() != 4 || a_shape[..2] != r_shape[..2] {
            return Err(fail("the reshape must split the last dim of a rank-3 value"));
        }
        let (Some(hn), Some(dn), Some(nn)) = (r_shape[2].as_fixed(), r_shape[3].as_fixed(), a_shape[2].as_fixed())
        else {
            return Err(fail("heads and head size must be static"));
        };
        if hn * dn != nn {
            return Err(fail("the reshape must split the last dim"));
        }
        self.f32_only(a_val, "matmul")?;
        let x = anchor.operands[0];
        let xs = self.shape(x);
        let k = self.size(&xs[xs.len() - 1])?;
        let n = Size::constant(nn);
        let s_dim = self.size(&a_shape[1])?;
        let m = self.product(&a_shape[..2])?;
        let xb = self.buffer(x, BufferRole::Input);
        let tb = self.buffer(a_val, BufferRole::Temp);
        // Split over heads (one head's `D` columns per parallel tile, all rows per launch) when
        // a head is whole packed panels: decode's one-row projections then use every thread.
        let by_heads = dn % 16 == 0 && hn >= 2;
        // With few heads (the kv projections: 3 heads on 2 threads leave one thread idle a
        // third of the time) tiles are parts of heads: `(columns, pairs)` — plain column
        // tiles without rotary, and with (non-interleaved, full) rotary tiles of `st` columns
        // from each half of a head (the rotation pairs column `c` with `c + D/2`), found
        // through a bound column variable since such tiles are not contiguous.
        let sub: Option<(i64, bool)> = match rotary.map(|r| &r.op) {
            _ if !by_heads || hn >= 4 => None,
            None => Some((if dn % 32 == 0 { 32 } else { 16 }, false)),
            Some(Op::RotaryEmbedding { interleaved: false, rotary_dim })
                if (*rotary_dim == 0 || *rotary_dim == dn) && (dn / 2) % 16 == 0 && dn / 2 > 16 =>
            {
                Some((16, true))
            }
            Some(_) => None,
        };
        // The tile's first column of the product (`Var::PARALLEL` unless tiles are pairs),
        // and locals for its head and column within the head.
        let col = if matches!(sub, Some((_, true))) { self.fresh_var() } else { Var::PARALLEL };
        let (head_l, c0_l) = match sub {
            Some(_) => (self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64)),
            // Not referenced without sub-head tiles.
            None => (LocalId(0), LocalId(0)),
        };
        // The bias of a linear (Qwen2's q/k/v projections), added as the product is scattered.
        let mut bias = None;
        let (tile, mut body) = match &anchor.op {
            Op::MatMul | Op::Linear | Op::PackedLinear { .. } | Op::QuantizedLinear => {
                let w = anchor.operands[1];
                let arity = anchor.operands.len();
                let (which, ldb) = match &anchor.op {
                    Op::MatMul if f.ty(w).rank() == 2 && f.ty(w).dtype == DType::F32 => (MicroKernel::Sgemm, n.clone()),
                    Op::Linear if arity <= 3 && f.ty(w).rank() == 2 && f.ty(w).dtype == DType::F32 => {
                        bias = anchor.operands.get(2).copied();
                        (MicroKernel::SgemmNt, k.clone())
                    }
                    Op::PackedLinear { .. } if arity <= 3 => {
                        bias = anchor.operands.get(2).copied();
                        (MicroKernel::SgemmPacked, Size::constant(0))
                    }
                    Op::QuantizedLinear if arity <= 3 && f.ty(w).dtype == DType::Q8_0 => {
                        bias = anchor.operands.get(2).copied();
                        (MicroKernel::GemmQ8_0, Size::constant(0))
                    }
                    Op::QuantizedLinear if arity <= 3 && f.ty(w).dtype == DType::Q4_0 => {
                        bias = anchor.operands.get(2).copied();
                        (MicroKernel::GemmQ4_0, Size::constant(0))
                    }
                    Op::QuantizedLinear if (3..=4).contains(&arity) && f.ty(w).dtype == DType::I8 => {
                        bias = anchor.operands.get(3).copied();
                        (MicroKernel::GemmI8, k.clone())
                    }
                    _ => return Err(fail("unsupported weight form")),
                };
                let wb = self.buffer(w, BufferRole::Input);
                let sb = match which {
                    MicroKernel::GemmI8 => {
                        let s = self.int8_scale(anchor.operands.get(2).copied(), w, &n)?;
                        Some(self.buffer(s, BufferRole::Input))
                    }
                    _ => None,
                };
                if let Some((st, pairs)) = sub {
                    // P is the tile's first column (plain) or pair column `h·D/2 + c0` (pairs).
                    let per = if pairs { dn / 2 } else { dn };
                    let p = || Expr::Index(unit(Var::PARALLEL));
                    let mut body = vec![
                        Stmt::Let { local: head_l, value: Expr::binary(BinaryOp::Div, p(), Expr::i64(per)) },
                        Stmt::Let { local: c0_l, value: Expr::binary(BinaryOp::Rem, p(), Expr::i64(per)) },
                    ];
                    if pairs {
                        // col = h·D + c0 = P + h·D/2.
                        body.push(Stmt::BindVar {
                            var: col,
                            value: Expr::binary(
                                BinaryOp::Add,
                                p(),
                                Expr::binary(BinaryOp::Mul, Expr::Local(head_l), Expr::i64(dn / 2)),
                            ),
                        });
                        body.push(col_gemm_at(which, xb, wb, tb, &m, &n, &k, ldb.clone(), col, 0, sb));
                        body.push(col_gemm_at(which, xb, wb, tb, &m, &n, &k, ldb, col, dn / 2, sb));
                    } else {
                        body.push(col_gemm_at(which, xb, wb, tb, &m, &n, &k, ldb, col, 0, sb));
                    }
                    (st as u32, body)
                } else if by_heads {
                    (dn as u32, vec![col_tile_gemm(which, xb, wb, tb, &m, &n, &k, ldb, sb)])
                } else {
                    (GEMM_ROW_TILE, vec![row_tile_gemm(which, xb, wb, tb, &n, &k, ldb, sb)])
                }
            }
            _ => return Err(fail("unsupported matmul form")),
        };
        let bias_buffer = match bias {
            Some(b) => {
                self.f32_only(b, "linear bias")?;
                if self.shape(b).iter().map(Dim::as_fixed).collect::<Vec<_>>() != [Some(nn)] {
                    return Err(fail("the bias must be a vector of the output width"));
                }
                Some(self.buffer(b, BufferRole::Input))
            }
            None => None,
        };
        // Scatter the tile's rows (or, split by heads, all rows of the tile's head).
        let ob = self.buffer(out, BufferRole::Output);
        let i = self.fresh_var();
        let r = if by_heads {
            unit(i)
        } else {
            IndexExpr::var(Var::PARALLEL, Size::constant(1)).plus_var(i, &Size::constant(1))
        };
        let (bl, sl, base) =
            (self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64));
        let l = Expr::Local;
        let head_stride = s_dim.mul(&Size::constant(dn));
        let mut row = vec![
            Stmt::Let { local: bl, value: Expr::binary(BinaryOp::Div, ix_expr(r.clone()), Expr::Dim(s_dim.clone())) },
            Stmt::Let { local: sl, value: Expr::binary(BinaryOp::Rem, ix_expr(r.clone()), Expr::Dim(s_dim.clone())) },
            Stmt::Let {
                local: base,
                value: Expr::binary(
                    BinaryOp::Add,
                    Expr::binary(BinaryOp::Mul, l(bl), Expr::Dim(head_stride.mul(&Size::constant(hn)))),
                    Expr::binary(BinaryOp::Mul, l(sl), Expr::i64(dn)),
                ),
            },
        ];
        // Sub-head tiles store from `base + h·S·D + c0` (`dst` then indexes within the tile).
        let store_base = if sub.is_some() {
            let b2 = self.fresh_local(ScalarType::I64);
            let h_off = Expr::binary(BinaryOp::Mul, l(head_l), Expr::Dim(head_stride.clone()));
            row.push(Stmt::Let {
                local: b2,
                value: Expr::binary(BinaryOp::Add, Expr::binary(BinaryOp::Add, l(base), h_off), l(c0_l)),
            });
            b2
        } else {
            base
        };
        let h = self.fresh_var();
        let e = self.fresh_var();
        // temp[r, h·D + c] and out[base + h·S·D + c]; split by heads, h·D is the tile's first
        // column (`Var::PARALLEL`).
        let src = |c: IndexExpr| -> IndexExpr {
            let mut ix = if by_heads {
                IndexExpr::var(i, n.clone()).plus_var(col, &Size::constant(1))
            } else {
                IndexExpr::var(Var::PARALLEL, n.clone()).plus_var(i, &n).plus_var(h, &Size::constant(dn))
            };
            for (v, st) in &c.terms {
                ix = ix.plus_var(*v, st);
            }
            ix.plus_offset(&c.offset)
        };
        // The product at column `c` of the current head (plus the bias of that column).
        let product = |c: IndexExpr| -> Expr {
            let value = Expr::Load { buffer: tb, index: src(c.clone()) };
            let Some(bb) = bias_buffer else { return value };
            let mut column = if by_heads { unit(col) } else { IndexExpr::var(h, Size::constant(dn)) };
            for (v, st) in &c.terms {
                column = column.plus_var(*v, st);
            }
            let column = column.plus_offset(&c.offset);
            Expr::binary(BinaryOp::Add, value, Expr::Load { buffer: bb, index: column })
        };
        let dst = |c: IndexExpr| -> IndexExpr {
            let mut ix = if sub.is_some() {
                IndexExpr::default()
            } else if by_heads {
                IndexExpr::var(Var::PARALLEL, s_dim.clone())
            } else {
                IndexExpr::var(h, head_stride.clone())
            };
            for (v, st) in &c.terms {
                ix = ix.plus_var(*v, st);
            }
            ix.plus_offset(&c.offset)
        };
        let mut per_head = Vec::new();
        match rotary {
            None => per_head.push(Stmt::Loop {
                var: e,
                extent: Extent::Size(Size::constant(sub.map_or(dn, |(st, _)| st))),
                body: vec![Stmt::StoreAt {
                    buffer: ob,
                    base: l(store_base),
                    index: dst(unit(e)),
                    value: product(unit(e)),
                }],
            }),
            Some(rot) => {
                let Op::RotaryEmbedding { interleaved, rotary_dim } = rot.op else {
                    return Err(fail("internal: not a rotary op"));
                };
                let rd = if rotary_dim == 0 { dn } else { rotary_dim };
                if rd <= 0 || rd > dn || rd % 2 != 0 {
                    return Err(unsupported("rotary_embedding", "rotary_dim must be even and at most head_dim"));
                }
                let half = rd / 2;
                let (cos, sin, pos) = (rot.operands[1], rot.operands[2], rot.operands[3]);
                self.f32_only(cos, "rotary_embedding")?;
                self.f32_only(sin, "rotary_embedding")?;
                let cs = self.shape(cos);
                let ps = self.shape(pos);
                if cs.len() != 2 || cs[1].as_fixed() != Some(half) || self.shape(sin) != cs || ps.len() != 2 {
                    return Err(unsupported("rotary_embedding", "tables must be [max_pos, rotary_dim/2]"));
                }
                let max_pos = self.size(&cs[0])?;
                let (cb, sb, pb) = (
                    self.buffer(cos, BufferRole::Input),
                    self.buffer(sin, BufferRole::Input),
                    self.buffer(pos, BufferRole::Input),
                );
                let (pl, valid, vf, tbase) = (
                    self.fresh_local(ScalarType::I64),
                    self.fresh_local(ScalarType::Bool),
                    self.fresh_local(ScalarType::F32),
                    self.fresh_local(ScalarType::I64),
                );
                let pos_load = if is_one(&ps[0]) {
                    Expr::load_at(pb, l(sl), IndexExpr::default())
                } else {
                    Expr::Load { buffer: pb, index: r.clone() }
                };
                row.push(Stmt::Let { local: pl, value: pos_load });
                row.push(Stmt::Let { local: valid, value: Expr::compare(CmpOp::ULt, l(pl), Expr::Dim(max_pos)) });
                row.push(Stmt::Let { local: vf, value: Expr::select(l(valid), Expr::f32(1.0), Expr::f32(0.0)) });
                row.push(Stmt::Let {
                    local: tbase,
                    value: Expr::binary(BinaryOp::Mul, Expr::select(l(valid), l(pl), Expr::i64(0)), Expr::i64(half)),
                });
                // Pair tiles read the tables from the tile's column within the half on.
                let tbase = if sub.is_some() {
                    let t2 = self.fresh_local(ScalarType::I64);
                    row.push(Stmt::Let { local: t2, value: Expr::binary(BinaryOp::Add, l(tbase), l(c0_l)) });
                    t2
                } else {
                    tbase
                };
                let (ia, ib) = if interleaved {
                    (
                        IndexExpr::var(e, Size::constant(2)),
                        IndexExpr::var(e, Size::constant(2)).plus_offset(&Size::constant(1)),
                    )
                } else {
                    (unit(e), unit(e).plus_offset(&Size::constant(half)))
                };
                let a = product(ia.clone());
                let b = product(ib.clone());
                let c = Expr::binary(BinaryOp::Mul, Expr::load_at(cb, l(tbase), unit(e)), l(vf));
                let sn = Expr::binary(BinaryOp::Mul, Expr::load_at(sb, l(tbase), unit(e)), l(vf));
                let mul = |x: &Expr, y: &Expr| Expr::binary(BinaryOp::Mul, x.clone(), y.clone());
                per_head.push(Stmt::Loop {
                    var: e,
                    extent: Extent::Size(Size::constant(sub.map_or(half, |(st, _)| st))),
                    body: vec![
                        Stmt::StoreAt {
                            buffer: ob,
                            base: l(store_base),
                            index: dst(ia),
                            value: Expr::binary(BinaryOp::Sub, mul(&a, &c), mul(&b, &sn)),
                        },
                        Stmt::StoreAt {
                            buffer: ob,
                            base: l(store_base),
                            index: dst(ib),
                            value: Expr::binary(BinaryOp::Add, mul(&b, &c), mul(&a, &sn)),
                        },
                    ],
                });
                if rd < dn {
                    let e2 = self.fresh_var();
                    let c2 = unit(e2).plus_offset(&Size::constant(rd));
                    per_head.push(Stmt::Loop {
                        var: e2,
                        extent: Extent::Size(Size::constant(dn - rd)),
                        body: vec![Stmt::StoreAt {
                            buffer: ob,
                            base: l(base),
                            index: dst(c2.clone()),
                            value: product(c2),
                        }],
                    });
                }
            }
        }
        if by_heads {
            row.extend(per_head);
            body.push(Stmt::Loop { var: i, extent: Extent::Size(m), body: row });
            // Pair tiles count pair columns: `H·D/2` of them.
            let extent = if matches!(sub, Some((_, true))) { Size::constant(nn / 2) } else { n };
            return Ok(self.finish(LoopExtent { extent, tile }, body));
        }
        row.push(Stmt::Loop { var: h, extent: Extent::Size(Size::constant(hn)), body: per_head });
        body.push(Stmt::Loop { var: i, extent: Extent::ParallelTile, body: row });
        Ok(self.finish(LoopExtent { extent: m, tile }, body))
    }
}

/// What [`Lowerer::attention_rows_template`] needs of an attention group.
struct AttentionShape {
    q: ValueId,
    k: ValueId,
    v: ValueId,
    /// The group's output (the attention result, or its transposed/merged view).
    out: ValueId,
    transposed: bool,
    hq: i64,
    /// Query heads per kv head.
    group: i64,
    dk: i64,
    dv: i64,
    scale: f32,
    causal: bool,
    /// An f32 (added) or bool (keep where true) mask that broadcasts to `[B, H, S, T]` with
    /// `T` keys in its last dim.
    mask: Option<ValueId>,
}

impl Lowerer<'_> {
    /// Whether `mask` can be read one dense row of `T` scores per query row by
    /// [`Lowerer::attention_rows_template`]: f32 (added) or bool (keep where true), rank ≤ 4,
    /// its last dim the key count and every other dim 1 or provably that of `q: [B, H, S, ·]`.
    fn row_mask_fits(&self, mask: ValueId, qs: &[Dim], keys: &Dim) -> bool {
        let ms = self.shape(mask);
        let Some((last, rest)) = ms.split_last() else { return false };
        matches!(self.f.ty(mask).dtype, DType::F32 | DType::Bool)
            && ms.len() <= 4
            && last == keys
            && rest.iter().enumerate().all(|(kk, d)| is_one(d) || *d == qs[4 - ms.len() + kk])
    }

    /// Attention without a KV cache (prefill / `forward`), unmasked or with a mask that
    /// [`Lowerer::row_mask_fits`]: parallel over query rows (`(b·H + h)·S + i`, one
    /// `attention_row` call each, given that row's mask), so long sequences use every thread
    /// and causal rows (which see `i + (T − S) + 1` keys) are spread evenly over the chunks.
    fn attention_rows_template(mut self, a: AttentionShape, qs: &[Dim]) -> LResult<(Kernel, Vec<ValueId>)> {
        let c = |n: i64| Size::constant(n);
        let ks = self.shape(a.k);
        let s = self.size(&qs[2])?;
        let t = self.size(&ks[2])?;
        let batch = self.size(&qs[0])?;
        let (qb, kb, vb) = (
            self.buffer(a.q, BufferRole::Input),
            self.buffer(a.k, BufferRole::Input),
            self.buffer(a.v, BufferRole::Input),
        );
        let ob = self.buffer(a.out, BufferRole::Output);
        let row = || Expr::Index(unit(Var::PARALLEL));
        let (head, i, kvh) =
            (self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64));
        let lo = Expr::Local;
        let mul = |x: Expr, y: Expr| Expr::binary(BinaryOp::Mul, x, y);
        let add = |x: Expr, y: Expr| Expr::binary(BinaryOp::Add, x, y);
        let mut body = vec![
            // head = b·H + h, i = the row within the head, kvh = b·Hkv + h / G.
            Stmt::Let { local: head, value: Expr::binary(BinaryOp::Div, row(), Expr::Dim(s.clone())) },
            Stmt::Let { local: i, value: Expr::binary(BinaryOp::Rem, row(), Expr::Dim(s.clone())) },
            Stmt::Let { local: kvh, value: Expr::binary(BinaryOp::Div, lo(head), Expr::i64(a.group)) },
        ];
        // The mask row of (b, h, i): broadcast axes (dim 1) contribute nothing.
        let mask_ref = match a.mask {
            None => None,
            Some(mk) => {
                let ms = self.shape(mk);
                let mb = self.buffer(mk, BufferRole::Input);
                let (b, h) = (self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64));
                body.push(Stmt::Let { local: b, value: Expr::binary(BinaryOp::Div, lo(head), Expr::i64(a.hq)) });
                body.push(Stmt::Let { local: h, value: Expr::binary(BinaryOp::Rem, lo(head), Expr::i64(a.hq)) });
                let mut base = Expr::i64(0);
                let mut stride = c(1);
                for (kk, d) in ms.iter().enumerate().rev() {
                    let axis = 4 - ms.len() + kk;
                    if axis < 3 && !is_one(d) {
                        let coord = [lo(b), lo(h), lo(i)][axis].clone();
                        base = add(base, mul(coord, Expr::Dim(stride.clone())));
                    }
                    stride = stride.mul(&self.size(d)?);
                }
                Some(DynRef { buffer: mb, base: Some(base), index: IndexExpr::default() })
            }
        };
        let o_base = if a.transposed {
            // ((b·S + i)·H + h)·Dv with b = head / H, h = head % H.
            let (b, h) = (self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64));
            let base = self.fresh_local(ScalarType::I64);
            body.push(Stmt::Let { local: b, value: Expr::binary(BinaryOp::Div, lo(head), Expr::i64(a.hq)) });
            body.push(Stmt::Let { local: h, value: Expr::binary(BinaryOp::Rem, lo(head), Expr::i64(a.hq)) });
            let bs_i = add(mul(lo(b), Expr::Dim(s.clone())), lo(i));
            body.push(Stmt::Let { local: base, value: mul(add(mul(bs_i, Expr::i64(a.hq)), lo(h)), Expr::i64(a.dv)) });
            lo(base)
        } else {
            mul(row(), Expr::i64(a.dv))
        };
        let keys = if a.causal {
            // Visible iff j ≤ i + (T − S).
            add(lo(i), Expr::Dim(t.add(&s.mul(&c(-1))).add(&c(1))))
        } else {
            Expr::Dim(t.clone())
        };
        let at = |buffer: u32, base: Expr| DynRef { buffer, base: Some(base), index: IndexExpr::default() };
        body.push(Stmt::CallAttentionRow(Box::new(AttentionRowArgs {
            q: DynRef { buffer: qb, base: None, index: IndexExpr::var(Var::PARALLEL, c(a.dk)) },
            k: at(kb, mul(lo(kvh), Expr::Dim(t.mul(&c(a.dk))))),
            v: at(vb, mul(lo(kvh), Expr::Dim(t.mul(&c(a.dv))))),
            mask: mask_ref,
            o: at(ob, o_base),
            keys,
            dk: a.dk,
            dv: a.dv,
            scale: a.scale,
        })));
        Ok(self.finish(LoopExtent { extent: batch.mul(&c(a.hq)).mul(&s), tile: 1 }, body))
    }

    /// The attention template (see the module doc): parallel over (batch, kv head); per
    /// iteration the KV cache of that head is first concatenated into `present_k`/`present_v`
    /// (when there is one; the scores then read the keys back from there), then each of the
    /// head's `H/Hkv` query heads' rows runs
    /// an *online softmax*: for each key `j`, `s = q·k_j · scale (+ mask)`, masked scores
    /// are `-∞`; with the running maximum `m` and sum `l`, `m' = max(m, s)`,
    /// `c = e^(m − m')`, `w = e^(s − m')`, `l ← l·c + w`, `o ← o·c + w·v_j` (`c = 1, w = 0`
    /// while `m' = −∞`), finally `o ← o / l` (zeros for a fully masked row, `l = 0`). The
    /// output row `o` lives in the output buffer (at its place after an optional
    /// `transpose {perm = [0, 2, 1, 3]}` and head-merging `reshape` epilogue).
    fn attention_template(mut self) -> LResult<(Kernel, Vec<ValueId>)> {
        let ops: Vec<&ferrumc_ir::OpData> = self.ops.iter().map(|o| self.op(*o)).collect::<LResult<_>>()?;
        let fail = |why: &str| unsupported("attention", why.to_string());
        let (att, tail) = match ops.split_first() {
            Some((a, t)) if matches!(a.op, Op::Attention { .. }) => (*a, t),
            _ => return Err(fail("the group must start with the attention op")),
        };
        let Op::Attention { scale, causal } = att.op else {
            return Err(fail("internal: not attention"));
        };
        // The epilogue: none, or transpose [0,2,1,3] then optionally a reshape merging heads.
        let mut out = att.results[0];
        let mut transposed = false;
        for t in tail {
            match &t.op {
                Op::Transpose { perm } if !transposed && perm == &[0, 2, 1, 3] && t.operands[0] == out => {
                    transposed = true;
                    out = t.results[0];
                }
                Op::Reshape { .. } if transposed && t.operands[0] == out => {
                    let (a, b) = (self.shape(out), self.shape(t.results[0]));
                    if b.len() != 3 || a[..2] != b[..2] || a[2].mul(&a[3]) != b[2] {
                        return Err(fail("only a reshape merging heads follows the transpose"));
                    }
                    out = t.results[0];
                }
                _ => return Err(fail("unsupported epilogue op")),
            }
        }
        let mut outputs = self.outputs();
        outputs.retain(|v| *v != out);
        let presents: Vec<ValueId> = att.results[1..].to_vec();
        if outputs.iter().any(|v| !presents.contains(v)) {
            return Err(fail("intermediate values of the group are used outside it"));
        }
        let (q, k, v) = (att.operands[0], att.operands[1], att.operands[2]);
        let (mask, past) = match att.operands.len() {
            3 => (None, None),
            4 => (Some(att.operands[3]), None),
            5 => (None, Some((att.operands[3], att.operands[4]))),
            6 => (Some(att.operands[3]), Some((att.operands[4], att.operands[5]))),
            _ => return Err(fail("3 to 6 operands")),
        };
        for &x in [q, k, v].iter().chain(past.as_ref().map(|(a, b)| [*a, *b]).iter().flatten()) {
            self.f32_only(x, "attention")?;
            if self.f.ty(x).rank() != 4 {
                return Err(fail("q, k, v and the cache must be 4-D"));
            }
        }
        let (qs, ks, vs) = (self.shape(q), self.shape(k), self.shape(v));
        let Some(hq) = qs[1].as_fixed() else { return Err(fail("static heads")) };
        let Some(hkv) = ks[1].as_fixed() else { return Err(fail("static heads")) };
        let (Some(dk), Some(dv)) = (qs[3].as_fixed(), vs[3].as_fixed()) else {
            return Err(fail("static head sizes"));
        };
        if hkv == 0 || hq % hkv != 0 {
            return Err(fail("query heads must be a multiple of kv heads"));
        }
        let group = hq / hkv;
        let s = self.size(&qs[2])?;
        let sn = self.size(&ks[2])?;
        let p_len = match past {
            Some((pk, _)) => {
                let ps = self.shape(pk);
                self.size(&ps[2])?
            }
            None => Size::constant(0),
        };
        let t = p_len.add(&sn);
        let c = |n: i64| Size::constant(n);
        let scale = scale.unwrap_or(1.0 / (dk as f64).sqrt()) as f32;
        let row_mask = mask.filter(|&mk| self.row_mask_fits(mk, &qs, &ks[2]));
        if past.is_none() && mask == row_mask {
            return self.attention_rows_template(
                AttentionShape { q, k, v, out, transposed, hq, group, dk, dv, scale, causal, mask: row_mask },
                &qs,
            );
        }
        let (qb, kb, vb) =
            (self.buffer(q, BufferRole::Input), self.buffer(k, BufferRole::Input), self.buffer(v, BufferRole::Input));
        let mut body = Vec::new();
        // The parallel variable is `b·Hkv + hk`; `b` and `hk` as locals where needed.
        let (bl, hkl) = (self.fresh_local(ScalarType::I64), self.fresh_local(ScalarType::I64));
        body.push(Stmt::Let {
            local: bl,
            value: Expr::binary(BinaryOp::Div, Expr::Index(unit(Var::PARALLEL)), Expr::i64(hkv)),
        });
        body.push(Stmt::Let {
            local: hkl,
            value: Expr::binary(BinaryOp::Rem, Expr::Index(unit(Var::PARALLEL)), Expr::i64(hkv)),
        });
        // KV cache: present = concat(past, new) along the sequence.
        let (keys_buf, vals) = match past {
            None => (kb, vb),
            Some((pk, pv)) => {
                if presents.len() != 2 {
                    return Err(fail("a KV cache needs the present_k/present_v results"));
                }
                let pkb = self.buffer(pk, BufferRole::Input);
                let pvb = self.buffer(pv, BufferRole::Input);
                let ok = self.buffer(presents[0], BufferRole::Output);
                let ov = self.buffer(presents[1], BufferRole::Output);
                for (src_past, src_new, dst, d) in [(pkb, kb, ok, dk), (pvb, vb, ov, dv)] {
                    let (tv, ev) = (self.fresh_var(), self.fresh_var());
                    let head = |len: &Size| IndexExpr::var(Var::PARALLEL, c(d).mul(len));
                    let copy = |from: u32, len: &Size, at: &Size| Stmt::Loop {
                        var: tv,
                        extent: Extent::Size(len.clone()),
                        body: vec![Stmt::Loop {
                            var: ev,
                            extent: Extent::Size(c(d)),
                            body: vec![Stmt::Store {
                                buffer: dst,
                                index: head(&t).plus_var(tv, &c(d)).plus_var(ev, &c(1)).plus_offset(&at.mul(&c(d))),
                                value: Expr::Load {
                                    buffer: from,
                                    index: head(len).plus_var(tv, &c(d)).plus_var(ev, &c(1)),
                                },
                            }],
                        }],
                    };
                    body.push(copy(src_past, &p_len, &c(0)));
                    body.push(copy(src_new, &sn, &p_len));
                }
                (ok, ov)
            }
        };
        let ob = self.buffer(out, BufferRole::Output);
        let (g, i, j, dd, e) =
            (self.fresh_var(), self.fresh_var(), self.fresh_var(), self.fresh_var(), self.fresh_var());
        let lo = Expr::Local;
        // q row: ((b·H + h)·S + i)·D with b·H + h = (b·Hkv + hk)·G + g.
        let q_row =
            IndexExpr::var(Var::PARALLEL, c(group * dk).mul(&s)).plus_var(g, &s.mul(&c(dk))).plus_var(i, &c(dk));
        // kv row: ((b·Hkv + hk)·T + j)·D.
        let kv_row = |d: i64| IndexExpr::var(Var::PARALLEL, c(d).mul(&t)).plus_var(j, &c(d));
        // Output row: base (per parallel iteration) + affine part.
        let (o_base, o_row) = if transposed {
            // ((b·S + i)·H + h)·Dv = b·S·H·Dv + hk·G·Dv + i·H·Dv + g·Dv.
            let base = self.fresh_local(ScalarType::I64);
            body.push(Stmt::Let {
                local: base,
                value: Expr::binary(
                    BinaryOp::Add,
                    Expr::binary(BinaryOp::Mul, lo(bl), Expr::Dim(s.mul(&c(hq * dv)))),
                    Expr::binary(BinaryOp::Mul, lo(hkl), Expr::i64(group * dv)),
                ),
            });
            (Some(base), IndexExpr::var(i, c(hq * dv)).plus_var(g, &c(dv)))
        } else {
            (None, IndexExpr::var(Var::PARALLEL, c(group * dv).mul(&s)).plus_var(g, &s.mul(&c(dv))).plus_var(i, &c(dv)))
        };
        let plus = |ix: &IndexExpr, v: Var| ix.clone().plus_var(v, &c(1));
        if mask.is_none() {
            // One `attention_row` call per query row over the present keys (the cache copy
            // above ran first in this same iteration); causal rows see `i + (T − S) + 1` keys.
            let keys = if causal {
                Expr::Index(unit(i).plus_offset(&t.add(&s.mul(&c(-1))).add(&c(1))))
            } else {
                Expr::Dim(t.clone())
            };
            let kv_base = |d: i64| IndexExpr::var(Var::PARALLEL, c(d).mul(&t));
            let call = Stmt::CallAttentionRow(Box::new(AttentionRowArgs {
                q: DynRef { buffer: qb, base: None, index: q_row.clone() },
                k: DynRef { buffer: keys_buf, base: None, index: kv_base(dk) },
                v: DynRef { buffer: vals, base: None, index: kv_base(dv) },
                mask: None,
                o: DynRef { buffer: ob, base: o_base.map(lo), index: o_row.clone() },
                keys,
                dk,
                dv,
                scale,
            }));
            body.push(Stmt::Loop {
                var: g,
                extent: Extent::Size(c(group)),
                body: vec![Stmt::Loop { var: i, extent: Extent::Size(s), body: vec![call] }],
            });
            let batch = self.size(&qs[0])?;
            return Ok(self.finish(LoopExtent { extent: batch.mul(&c(hkv)), tile: 1 }, body));
        }
        let o_load = |v: Var| match o_base {
            Some(b) => Expr::load_at(ob, lo(b), plus(&o_row, v)),
            None => Expr::Load { buffer: ob, index: plus(&o_row, v) },
        };
        let o_store = |v: Var, value: Expr| match o_base {
            Some(b) => Stmt::StoreAt { buffer: ob, base: lo(b), index: plus(&o_row, v), value },
            None => Stmt::Store { buffer: ob, index: plus(&o_row, v), value },
        };
        let (m, l, sc, s1, mn, dead, cf, w, inv) = (
            self.fresh_local(ScalarType::F32),
            self.fresh_local(ScalarType::F32),
            self.fresh_local(ScalarType::F32),
            self.fresh_local(ScalarType::F32),
            self.fresh_local(ScalarType::F32),
            self.fresh_local(ScalarType::Bool),
            self.fresh_local(ScalarType::F32),
            self.fresh_local(ScalarType::F32),
            self.fresh_local(ScalarType::F32),
        );
        let ninf = || Expr::f32(f32::NEG_INFINITY);
        let mut score = Expr::binary(BinaryOp::Mul, lo(sc), Expr::f32(scale));
        if let Some(mk) = mask {
            let ms = self.shape(mk);
            if ms.len() > 4 {
                return Err(fail("mask rank above 4"));
            }
            let full = [qs[0].clone(), qs[1].clone(), qs[2].clone(), Dim::fixed(0)];
            // Axis coordinates: b and hk through the base, g, i, j affinely.
            let mut ix = IndexExpr::default();
            let mut base: Option<Expr> = None;
            let mut add_base = |term: Expr| {
                base = Some(match base.take() {
                    None => term,
                    Some(b) => Expr::binary(BinaryOp::Add, b, term),
                })
            };
            let mut stride = c(1);
            for (kk, d) in ms.iter().enumerate().rev() {
                let axis = 4 - ms.len() + kk;
                if !is_one(d) {
                    if axis < 3 && *d != full[axis] {
                        return Err(fail("the mask must broadcast to [B, H, S, T] provably"));
                    }
                    match axis {
                        0 => add_base(Expr::binary(BinaryOp::Mul, lo(bl), Expr::Dim(stride.clone()))),
                        1 => {
                            add_base(Expr::binary(BinaryOp::Mul, lo(hkl), Expr::Dim(stride.mul(&c(group)))));
                            ix = ix.plus_var(g, &stride);
                        }
                        2 => ix = ix.plus_var(i, &stride),
                        _ => ix = ix.plus_var(j, &stride),
                    }
                }
                let ds = self.size(d)?;
                stride = stride.mul(&ds);
            }
            let mb = self.buffer(mk, BufferRole::Input);
            let load = match base {
                Some(b) => Expr::load_at(mb, b, ix),
                None => Expr::Load { buffer: mb, index: ix },
            };
            score = match self.f.ty(mk).dtype {
                DType::F32 => Expr::binary(BinaryOp::Add, score, load),
                DType::Bool => Expr::select(load, score, ninf()),
                other => return Err(fail(&format!("{other} masks are not lowered"))),
            };
        }
        if causal {
            // Visible iff j ≤ i + (T − S).
            let lim = unit(i).plus_offset(&t.add(&s.mul(&c(-1))));
            score = Expr::select(Expr::compare(CmpOp::Le, Expr::Index(unit(j)), Expr::Index(lim)), score, ninf());
        }
        let dot = Stmt::Reduce {
            kind: ReduceKind::Sum,
            var: dd,
            extent: Extent::Size(c(dk)),
            init: Expr::f32(0.0),
            value: Expr::binary(
                BinaryOp::Mul,
                Expr::Load { buffer: qb, index: plus(&q_row, dd) },
                Expr::Load { buffer: keys_buf, index: plus(&kv_row(dk), dd) },
            ),
            into: sc,
        };
        let per_key = vec![
            dot,
            Stmt::Let { local: s1, value: score },
            Stmt::Let { local: mn, value: Expr::binary(BinaryOp::Max, lo(m), lo(s1)) },
            Stmt::Let { local: dead, value: Expr::compare(CmpOp::Eq, lo(mn), ninf()) },
            Stmt::Let {
                local: cf,
                value: Expr::select(
                    lo(dead),
                    Expr::f32(1.0),
                    Expr::unary(UnaryOp::Exp, Expr::binary(BinaryOp::Sub, lo(m), lo(mn))),
                ),
            },
            Stmt::Let {
                local: w,
                value: Expr::select(
                    lo(dead),
                    Expr::f32(0.0),
                    Expr::unary(UnaryOp::Exp, Expr::binary(BinaryOp::Sub, lo(s1), lo(mn))),
                ),
            },
            Stmt::Assign {
                local: l,
                value: Expr::binary(BinaryOp::Add, Expr::binary(BinaryOp::Mul, lo(l), lo(cf)), lo(w)),
            },
            Stmt::Loop {
                var: e,
                extent: Extent::Size(c(dv)),
                body: vec![o_store(
                    e,
                    Expr::binary(
                        BinaryOp::Add,
                        Expr::binary(BinaryOp::Mul, o_load(e), lo(cf)),
                        Expr::binary(BinaryOp::Mul, lo(w), Expr::Load { buffer: vals, index: plus(&kv_row(dv), e) }),
                    ),
                )],
            },
            Stmt::Assign { local: m, value: lo(mn) },
        ];
        let e2 = self.fresh_var();
        let e0 = self.fresh_var();
        let row = vec![
            Stmt::Let { local: m, value: ninf() },
            Stmt::Let { local: l, value: Expr::f32(0.0) },
            Stmt::Loop { var: e0, extent: Extent::Size(c(dv)), body: vec![o_store(e0, Expr::f32(0.0))] },
            Stmt::Loop { var: j, extent: Extent::Size(t.clone()), body: per_key },
            Stmt::Let {
                local: inv,
                value: Expr::select(
                    Expr::compare(CmpOp::Lt, Expr::f32(0.0), lo(l)),
                    Expr::unary(UnaryOp::Recip, lo(l)),
                    Expr::f32(0.0),
                ),
            },
            Stmt::Loop {
                var: e2,
                extent: Extent::Size(c(dv)),
                body: vec![o_store(e2, Expr::binary(BinaryOp::Mul, o_load(e2), lo(inv)))],
            },
        ];
        body.push(Stmt::Loop {
            var: g,
            extent: Extent::Size(c(group)),
            body: vec![Stmt::Loop { var: i, extent: Extent::Size(s), body: row }],
        });
        let batch = self.size(&qs[0])?;
        Ok(self.finish(LoopExtent { extent: batch.mul(&c(hkv)), tile: 1 }, body))
    }
}

/// Elements per parallel iteration of a flat copy.
pub const COPY_TILE: u32 = 4096;

impl Lowerer<'_> {
    /// Row-major strides of `shape`.
    fn strides(&mut self, shape: &[Dim]) -> LResult<Vec<Size>> {
        let mut st = vec![Size::constant(1); shape.len()];
        for a in (0..shape.len().saturating_sub(1)).rev() {
            let d = self.size(&shape[a + 1])?;
            st[a] = st[a + 1].mul(&d);
        }
        Ok(st)
    }

    /// A loop nest over `shape` storing `out[row-major coords] = src[Σ coord·st + offset]`:
    /// axis 0 is the parallel loop when `parallel`, else every axis is a nested loop.
    fn copy_nest(
        &mut self,
        shape: &[Dim],
        out: (u32, IndexExpr, Vec<Size>),
        src: (u32, IndexExpr, Vec<Size>),
        parallel: bool,
    ) -> LResult<Vec<Stmt>> {
        let (ob, mut oix, ost) = out;
        let (sb, mut six, sst) = src;
        let mut vars = Vec::new();
        for (a, d) in shape.iter().enumerate() {
            let v = if parallel && a == 0 { Var::PARALLEL } else { self.fresh_var() };
            oix = oix.plus_var(v, &ost[a]);
            six = six.plus_var(v, &sst[a]);
            if !(parallel && a == 0) {
                vars.push((v, self.size(d)?));
            }
        }
        let mut body = vec![Stmt::Store { buffer: ob, index: oix, value: Expr::Load { buffer: sb, index: six } }];
        while let Some((v, e)) = vars.pop() {
            body = vec![Stmt::Loop { var: v, extent: Extent::Size(e), body }];
        }
        Ok(body)
    }

    /// Single-op data-movement groups other than `gather`: views (`reshape`, `squeeze`,
    /// `unsqueeze`, `identity`) as flat copies in tiles of [`COPY_TILE`]; `transpose` (any
    /// perm), `expand` (numpy broadcast, provable shapes) and `slice` (static attributes)
    /// as strided copies parallel over the output's first axis; `concat` as block copies
    /// parallel over the dims before the axis. Dims may be symbolic (`slice` needs static
    /// dims on sliced axes unless starts are non-negative with positive steps).
    fn copy_template(mut self) -> LResult<(Kernel, Vec<ValueId>)> {
        let d = self.op(self.ops[0])?;
        let name = d.op.name();
        let out = d.results[0];
        let os = self.shape(out);
        let dtype = self.f.ty(out).dtype;
        if ScalarType::of_dtype(dtype).is_none() {
            return Err(unsupported(name, format!("dtype {dtype} is not supported in kernels yet")));
        }
        let x = d.operands[0];
        let xs = self.shape(x);
        let rank_par = !os.is_empty();
        let par_extent = |this: &mut Self| -> LResult<Size> {
            if rank_par {
                this.size(&os[0])
            } else {
                Ok(Size::constant(1))
            }
        };
        match &d.op {
            Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Identity => {
                let n = self.product(&os)?;
                let xb = self.buffer(x, BufferRole::Input);
                let ob = self.buffer(out, BufferRole::Output);
                let i = self.fresh_var();
                let ix = unit(Var::PARALLEL).plus_var(i, &Size::constant(1));
                let body = vec![Stmt::Loop {
                    var: i,
                    extent: Extent::ParallelTile,
                    body: vec![Stmt::Store {
                        buffer: ob,
                        index: ix.clone(),
                        value: Expr::Load { buffer: xb, index: ix },
                    }],
                }];
                Ok(self.finish(LoopExtent { extent: n, tile: COPY_TILE }, body))
            }
            Op::Transpose { perm } => {
                let r = xs.len();
                let perm: Vec<usize> = if perm.is_empty() {
                    (0..r).rev().collect()
                } else {
                    perm.iter().map(|&p| if p < 0 { p + r as i64 } else { p } as usize).collect()
                };
                if perm.len() != r || perm.iter().any(|&p| p >= r) {
                    return Err(unsupported(name, "invalid perm"));
                }
                let xst = self.strides(&xs)?;
                let sst: Vec<Size> = perm.iter().map(|&p| xst[p].clone()).collect();
                let ost = self.strides(&os)?;
                let xb = self.buffer(x, BufferRole::Input);
                let ob = self.buffer(out, BufferRole::Output);
                let body =
                    self.copy_nest(&os, (ob, IndexExpr::default(), ost), (xb, IndexExpr::default(), sst), rank_par)?;
                let extent = par_extent(&mut self)?;
                Ok(self.finish(LoopExtent { extent, tile: 1 }, body))
            }
            Op::Expand => {
                if xs.len() > os.len() {
                    return Err(unsupported(name, "input rank above the output rank"));
                }
                let xst = self.strides(&xs)?;
                let lead = os.len() - xs.len();
                let mut sst = vec![Size::default(); os.len()];
                for (k, dx) in xs.iter().enumerate() {
                    if !is_one(dx) {
                        if *dx != os[lead + k] {
                            return Err(unsupported(name, "shapes do not broadcast provably"));
                        }
                        sst[lead + k] = xst[k].clone();
                    }
                }
                let ost = self.strides(&os)?;
                let xb = self.buffer(x, BufferRole::Input);
                let ob = self.buffer(out, BufferRole::Output);
                let body =
                    self.copy_nest(&os, (ob, IndexExpr::default(), ost), (xb, IndexExpr::default(), sst), rank_par)?;
                let extent = par_extent(&mut self)?;
                Ok(self.finish(LoopExtent { extent, tile: 1 }, body))
            }
            Op::Slice { axes, starts, ends: _, steps } if d.operands.len() == 1 => {
                let r = xs.len();
                let xst = self.strides(&xs)?;
                let mut sst = xst.clone();
                let mut offset = Size::default();
                let axes: Vec<usize> = if axes.is_empty() {
                    (0..starts.len()).collect()
                } else {
                    axes.iter().map(|&a| if a < 0 { a + r as i64 } else { a } as usize).collect()
                };
                for (k, &a) in axes.iter().enumerate() {
                    let (Some(&start), step) = (starts.get(k), steps.get(k).copied().unwrap_or(1)) else {
                        return Err(unsupported(name, "malformed attributes"));
                    };
                    if a >= r || step == 0 {
                        return Err(unsupported(name, "malformed attributes"));
                    }
                    let eff = match xs[a].as_fixed() {
                        Some(dim) => {
                            let s = if start < 0 { start.saturating_add(dim) } else { start };
                            if step > 0 {
                                s.clamp(0, dim)
                            } else {
                                s.clamp(0, (dim - 1).max(0))
                            }
                        }
                        None if start >= 0 && step > 0 => start,
                        None => return Err(unsupported(name, "negative starts or steps on a symbolic dim")),
                    };
                    offset = offset.add(&xst[a].mul(&Size::constant(eff)));
                    sst[a] = xst[a].mul(&Size::constant(step));
                }
                let ost = self.strides(&os)?;
                let xb = self.buffer(x, BufferRole::Input);
                let ob = self.buffer(out, BufferRole::Output);
                let body = self.copy_nest(
                    &os,
                    (ob, IndexExpr::default(), ost),
                    (xb, IndexExpr::constant(offset), sst),
                    rank_par,
                )?;
                let extent = par_extent(&mut self)?;
                Ok(self.finish(LoopExtent { extent, tile: 1 }, body))
            }
            Op::Concat { axis } => {
                let r = os.len() as i64;
                let a = if *axis < 0 { axis + r } else { *axis };
                if a < 0 || a >= r {
                    return Err(unsupported(name, "axis out of range"));
                }
                let a = a as usize;
                let outer = self.product(&os[..a])?;
                let out_inner = self.product(&os[a..])?;
                let ob = self.buffer(out, BufferRole::Output);
                let mut at = Size::default();
                let mut body = Vec::new();
                for &x in &d.operands {
                    let s = self.shape(x);
                    let inner = self.product(&s[a..])?;
                    let xb = self.buffer(x, BufferRole::Input);
                    let i = self.fresh_var();
                    body.push(Stmt::Loop {
                        var: i,
                        extent: Extent::Size(inner.clone()),
                        body: vec![Stmt::Store {
                            buffer: ob,
                            index: IndexExpr::var(Var::PARALLEL, out_inner.clone())
                                .plus_var(i, &Size::constant(1))
                                .plus_offset(&at),
                            value: Expr::Load {
                                buffer: xb,
                                index: IndexExpr::var(Var::PARALLEL, inner.clone()).plus_var(i, &Size::constant(1)),
                            },
                        }],
                    });
                    at = at.add(&inner);
                }
                Ok(self.finish(LoopExtent { extent: outer, tile: 1 }, body))
            }
            other => Err(unsupported(other.name(), "not lowered by the data-movement template yet")),
        }
    }
}

/// `ix + coord · scale`.
fn add_scaled(mut ix: IndexExpr, coord: &IndexExpr, scale: &Size) -> IndexExpr {
    for (v, s) in &coord.terms {
        ix = ix.plus_var(*v, &s.mul(scale));
    }
    ix.plus_offset(&coord.offset.mul(scale))
}

/// A size as an i64 expression.
fn size_expr(s: &Size) -> Expr {
    Expr::Dim(s.clone())
}

/// Whether member value `v` varies along the row axis of `space`.
fn value_varies(f: &Function, v: ValueId, _space: &[Dim]) -> bool {
    let shape = &f.ty(v).shape;
    match shape.last() {
        None => false,
        Some(last) => !is_one(last),
    }
}

fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::fixed(1), |a, d| a.mul(d))
}

/// Same row length and the same number of rows (so the collapsed row space indexes both alike).
fn same_rows(a: &[Dim], b: &[Dim]) -> bool {
    match (a.split_last(), b.split_last()) {
        (Some((la, ra)), Some((lb, rb))) => {
            la == lb && !la.is_unknown() && !product(ra).is_unknown() && product(ra) == product(rb)
        }
        _ => false,
    }
}

/// Ops that make a matmul group a head-split group (`matmul_heads_template`); a row-changing
/// reshape alone does not (`matmul_template` writes the product through it).
fn is_head_split_op(d: &ferrumc_ir::OpData) -> bool {
    matches!(d.op, Op::Transpose { .. } | Op::RotaryEmbedding { .. })
}

/// Views that the templates lower as index maps (only row-keeping ones: see `same_rows`).
fn is_view(op: &Op) -> bool {
    matches!(op, Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. })
}

/// A micro-kernel call computing the parallel tile's rows of `c[rows, n] = x[rows, k] · w`:
/// row-major `x` and `c` (strides `k` and `n`), `w` in the layout `which` reads.
#[allow(clippy::too_many_arguments)]
fn row_tile_gemm(
    which: MicroKernel,
    xb: u32,
    wb: u32,
    cb: u32,
    n: &Size,
    k: &Size,
    ldb: Size,
    scale: Option<u32>,
) -> Stmt {
    Stmt::CallMicroKernel {
        which,
        args: MicroKernelArgs {
            m: Extent::ParallelTile,
            n: Extent::Size(n.clone()),
            k: k.clone(),
            a: BufferRef { buffer: xb, offset: IndexExpr::var(Var::PARALLEL, k.clone()) },
            lda: k.clone(),
            b: BufferRef { buffer: wb, offset: IndexExpr::default() },
            ldb,
            c: BufferRef { buffer: cb, offset: IndexExpr::var(Var::PARALLEL, n.clone()) },
            ldc: n.clone(),
            accumulate: false,
            scale: scale.map(|buffer| BufferRef { buffer, offset: IndexExpr::default() }),
        },
    }
}

/// Columns of a packed weight panel (`ukernels::PANEL`).
const PANEL_COLS: u32 = 16;

/// Columns per parallel tile of a column-split matmul, or `None` when `n` is not a constant
/// of at least 64 (then the product is split over rows). Wide tiles keep the micro-kernel's
/// 64-column register tile busy; narrower ones balance two threads over the few tiles of
/// mid-sized products (576 columns: 18 tiles of 32, not 9 of 64).
fn gemm_col_tile(n: &Size) -> Option<u32> {
    match n.as_constant()? {
        n if n >= 1024 => Some(64),
        n if n >= 64 => Some(32),
        _ => None,
    }
}

/// A micro-kernel call computing `c`'s columns `[col + offset, col + offset + tile)` of
/// `c[m, n] = x[m, k] · w` for all `m` rows, `col` a (bound) index variable; the weight
/// addressing follows [`col_tile_gemm`] (a column start must begin a packed panel).
#[allow(clippy::too_many_arguments)]
fn col_gemm_at(
    which: MicroKernel,
    xb: u32,
    wb: u32,
    cb: u32,
    m: &Size,
    n: &Size,
    k: &Size,
    ldb: Size,
    col: Var,
    offset: i64,
    scale: Option<u32>,
) -> Stmt {
    let at = |stride: &Size| IndexExpr::var(col, stride.clone()).plus_offset(&stride.mul(&Size::constant(offset)));
    let w_offset = match which {
        MicroKernel::Sgemm => at(&Size::constant(1)),
        MicroKernel::SgemmPacked
        | MicroKernel::SgemmNt
        | MicroKernel::GemmQ8_0
        | MicroKernel::GemmQ4_0
        | MicroKernel::GemmI8 => at(k),
    };
    Stmt::CallMicroKernel {
        which,
        args: MicroKernelArgs {
            m: Extent::Size(m.clone()),
            n: Extent::ParallelTile,
            k: k.clone(),
            a: BufferRef { buffer: xb, offset: IndexExpr::default() },
            lda: k.clone(),
            b: BufferRef { buffer: wb, offset: w_offset },
            ldb,
            c: BufferRef { buffer: cb, offset: at(&Size::constant(1)) },
            ldc: n.clone(),
            accumulate: false,
            scale: scale.map(|buffer| BufferRef { buffer, offset: at(&Size::constant(1)) }),
        },
    }
}

/// A micro-kernel call computing the parallel tile's columns of `c[m, n] = x[m, k] · w` for
/// all `m` rows: `w`'s columns from the tile's first (`Var::PARALLEL`) on — dense `[k, n]`
/// rows at stride `ldb`, packed panels `[⌈n/16⌉, k, 16]` (a tile starts on a panel), or
/// quantized rows `[n, k]` — and `c`'s columns likewise (row stride `n`).
#[allow(clippy::too_many_arguments)]
fn col_tile_gemm(
    which: MicroKernel,
    xb: u32,
    wb: u32,
    cb: u32,
    m: &Size,
    n: &Size,
    k: &Size,
    ldb: Size,
    scale: Option<u32>,
) -> Stmt {
    col_gemm_at(which, xb, wb, cb, m, n, k, ldb, Var::PARALLEL, 0, scale)
}

fn is_reduction_anchor(op: &Op) -> bool {
    matches!(
        op,
        Op::ReduceSum { .. }
            | Op::ReduceMean { .. }
            | Op::ReduceMax { .. }
            | Op::Softmax { .. }
            | Op::RmsNorm { .. }
            | Op::RmsNormResidual { .. }
            | Op::LayerNorm { .. }
    )
}

fn is_supported_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Max
            | Op::Min
            | Op::Neg
            | Op::Abs
            | Op::Exp
            | Op::Tanh
            | Op::Sigmoid
            | Op::Silu
            | Op::Relu
            | Op::Sqrt
            | Op::Rsqrt
            | Op::Reciprocal
            | Op::Erf
            | Op::Gelu { .. }
            | Op::SiluMul
            | Op::Where
            | Op::Cast { .. }
            | Op::Identity
    )
}

/// Ops whose expansion uses an operand more than once (so the operand is bound to a local).
fn duplicates_operand(f: &Function, v: ValueId) -> bool {
    f.value(v).uses.iter().any(|u| {
        f.op(u.op).is_some_and(|d| {
            matches!(d.op, Op::Silu | Op::Gelu { .. }) || (matches!(d.op, Op::SiluMul) && u.operand == 0)
        })
    })
}

/// The expression of an elementwise op applied to its operands' expressions.
fn elementwise_expr(op: &Op, mut args: Vec<Expr>, tys: &[ScalarType], out: ScalarType) -> LResult<Expr> {
    let name = op.name();
    let float_only = |t: ScalarType| -> LResult<()> {
        if t == ScalarType::F32 {
            Ok(())
        } else {
            Err(unsupported(name, format!("{} operands are not lowered yet", t.name())))
        }
    };
    let numeric = |t: ScalarType| -> LResult<()> {
        if t == ScalarType::Bool {
            Err(unsupported(name, "bool operands are not lowered yet"))
        } else {
            Ok(())
        }
    };
    let mut arg = |i: usize| -> Expr { std::mem::replace(&mut args[i], Expr::f32(0.0)) };
    let t0 = tys.first().copied().unwrap_or(ScalarType::F32);
    let bin = |bop: BinaryOp, a: Expr, b: Expr| Expr::binary(bop, a, b);
    let un = |uop: UnaryOp, a: Expr| Expr::unary(uop, a);
    Ok(match op {
        Op::Add | Op::Sub | Op::Mul | Op::Max | Op::Min => {
            numeric(t0)?;
            let bop = match op {
                Op::Add => BinaryOp::Add,
                Op::Sub => BinaryOp::Sub,
                Op::Mul => BinaryOp::Mul,
                Op::Max => BinaryOp::Max,
                _ => BinaryOp::Min,
            };
            bin(bop, arg(0), arg(1))
        }
        Op::Div => {
            float_only(t0)?;
            bin(BinaryOp::Div, arg(0), arg(1))
        }
        Op::Neg | Op::Abs => {
            numeric(t0)?;
            un(if matches!(op, Op::Neg) { UnaryOp::Neg } else { UnaryOp::Abs }, arg(0))
        }
        Op::Relu => {
            numeric(t0)?;
            let zero = match t0 {
                ScalarType::I64 => Expr::Const(Const::I64(0)),
                ScalarType::F64 => Expr::f64(0.0),
                _ => Expr::f32(0.0),
            };
            bin(BinaryOp::Max, arg(0), zero)
        }
        Op::Exp | Op::Tanh | Op::Sigmoid | Op::Sqrt | Op::Rsqrt | Op::Reciprocal | Op::Erf => {
            float_only(t0)?;
            let uop = match op {
                Op::Exp => UnaryOp::Exp,
                Op::Tanh => UnaryOp::Tanh,
                Op::Sigmoid => UnaryOp::Sigmoid,
                Op::Sqrt => UnaryOp::Sqrt,
                Op::Rsqrt => UnaryOp::Rsqrt,
                Op::Reciprocal => UnaryOp::Recip,
                _ => UnaryOp::Erf,
            };
            un(uop, arg(0))
        }
        Op::Silu => {
            float_only(t0)?;
            let x = arg(0);
            bin(BinaryOp::Mul, x.clone(), un(UnaryOp::Sigmoid, x))
        }
        Op::SiluMul => {
            float_only(t0)?;
            let (g, u) = (arg(0), arg(1));
            bin(BinaryOp::Mul, bin(BinaryOp::Mul, g.clone(), un(UnaryOp::Sigmoid, g)), u)
        }
        Op::Gelu { approximate } => {
            float_only(t0)?;
            let x = arg(0);
            let inner = match approximate {
                GeluApproximation::None => {
                    un(UnaryOp::Erf, bin(BinaryOp::Mul, x.clone(), Expr::f32(std::f32::consts::FRAC_1_SQRT_2)))
                }
                GeluApproximation::Tanh => {
                    let x3 = bin(BinaryOp::Mul, bin(BinaryOp::Mul, x.clone(), x.clone()), x.clone());
                    let poly = bin(BinaryOp::Add, x.clone(), bin(BinaryOp::Mul, Expr::f32(0.044715), x3));
                    un(UnaryOp::Tanh, bin(BinaryOp::Mul, Expr::f32(0.797_884_6), poly))
                }
            };
            let half_x = bin(BinaryOp::Mul, Expr::f32(0.5), x);
            bin(BinaryOp::Mul, half_x, bin(BinaryOp::Add, Expr::f32(1.0), inner))
        }
        Op::Where => {
            if tys.len() != 3 || tys[0] != ScalarType::Bool || tys[1] != tys[2] {
                return Err(unsupported(name, "operand types"));
            }
            let (c, a, b) = (arg(0), arg(1), arg(2));
            Expr::select(c, a, b)
        }
        Op::Cast { .. } => match (t0, out) {
            (a, b) if a == b => arg(0),
            (_, ScalarType::F32 | ScalarType::F64 | ScalarType::I64) => Expr::cast(out, arg(0)),
            (a, b) => return Err(unsupported(name, format!("cast {} → {} is not lowered yet", a.name(), b.name()))),
        },
        Op::Identity => arg(0),
        other => return Err(unsupported(other.name(), "not an elementwise op the kernels lower yet")),
    })
}

/// Ops of `f` that no kernel template lowers yet (for coverage reports): `(op name, reason)`
/// per unsupported group.
pub fn coverage(f: &Function) -> Result<Vec<(u32, String)>, CodegenError> {
    Ok(lower_function(f)?.into_iter().filter_map(|(g, r)| r.err().map(|e| (g, e.to_string()))).collect())
}
