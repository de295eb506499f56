//! Kernel assembly shared by the single-op templates (`scan`, `scatter`, `topk`): the dims a
//! kernel reads, its buffers bound to IR values, fresh locals and loop variables, and the
//! ModelIR dim → [`Size`] conversion. The templates stay generic over [`ScalarType`]: they
//! ask [`KernelBuilder::scalar`] for a value's type and build zeros with [`zero`].

use crate::kernel::*;
use crate::CodegenError;
use ferrumc_ir::dim::Dim;
use ferrumc_ir::{Function, OpId, ValueId};
use std::collections::{HashMap, HashSet};

pub(crate) type BResult<T> = Result<T, CodegenError>;

pub(crate) fn unsupported(op: &str, reason: impl Into<String>) -> CodegenError {
    CodegenError::Unsupported { op: op.to_string(), reason: reason.into() }
}

/// The results of `ops` (members of one kernel, `members`) that something outside reads or
/// the function returns: the values the kernel must store.
pub(crate) fn group_outputs(f: &Function, ops: &[OpId], members: &HashSet<OpId>) -> Vec<ValueId> {
    let mut out = Vec::new();
    for &o in ops {
        let Some(d) = f.op(o) else { continue };
        for &r in &d.results {
            let outside =
                f.value(r).uses.iter().any(|u| !members.contains(&u.op)) || f.outputs().iter().any(|(_, v)| *v == r);
            if outside {
                out.push(r);
            }
        }
    }
    out
}

/// Why a `?` dim has no kernel size.
pub(crate) const UNKNOWN_DIM: &str = "a dim is unknown (`?`); run shape-inference first";

/// A ModelIR dim as a kernel [`Size`], each symbol becoming the index of its name in `dims`
/// (appended when new); `None` for `?`.
pub(crate) fn dim_size(dims: &mut Vec<String>, d: &Dim) -> Option<Size> {
    let Dim::Expr(terms) = d else { return None };
    let mut out = Size::default();
    for (mono, coef) in terms {
        let mut term = Size::constant(*coef);
        for sym in mono {
            let j = match dims.iter().position(|s| s == sym) {
                Some(j) => j,
                None => {
                    dims.push(sym.clone());
                    dims.len() - 1
                }
            };
            term = term.mul(&Size::dim(j as u32));
        }
        out = out.add(&term);
    }
    Some(out)
}

/// The zero of `ty`, as a cast of the `i64` literal (so it needs no per-type literal).
pub(crate) fn zero(ty: ScalarType) -> Expr {
    if ty == ScalarType::I64 {
        Expr::i64(0)
    } else {
        Expr::cast(ty, Expr::i64(0))
    }
}

/// A size as an `i64` expression (a literal when constant).
pub(crate) fn size_expr(s: &Size) -> Expr {
    match s.as_constant() {
        Some(c) => Expr::i64(c),
        None => Expr::Dim(s.clone()),
    }
}

/// Normalise a possibly negative axis of a rank-`rank` tensor.
pub(crate) fn axis_of(axis: i64, rank: usize, op: &str) -> BResult<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(a).ok().filter(|a| *a < rank).ok_or_else(|| unsupported(op, format!("axis {axis} out of range")))
}

/// Buffers, dims, locals and variables of the kernel under construction.
pub(crate) struct KernelBuilder<'a> {
    pub f: &'a Function,
    dims: Vec<String>,
    buffers: Vec<BufferParam>,
    buffer_values: Vec<ValueId>,
    buffer_of: HashMap<ValueId, u32>,
    locals: Vec<ScalarType>,
    next_var: u32,
}

impl<'a> KernelBuilder<'a> {
    pub fn new(f: &'a Function) -> Self {
        KernelBuilder {
            f,
            dims: Vec::new(),
            buffers: Vec::new(),
            buffer_values: Vec::new(),
            buffer_of: HashMap::new(),
            locals: Vec::new(),
            next_var: 1,
        }
    }

    pub fn var(&mut self) -> Var {
        let v = Var(self.next_var);
        self.next_var += 1;
        v
    }

    pub fn local(&mut self, ty: ScalarType) -> LocalId {
        self.locals.push(ty);
        LocalId(self.locals.len() as u32 - 1)
    }

    /// `let l: ty = value`, appended to `out`; returns `l` as an expression.
    pub fn bind(&mut self, ty: ScalarType, value: Expr, out: &mut Vec<Stmt>) -> Expr {
        let l = self.local(ty);
        out.push(Stmt::Let { local: l, value });
        Expr::Local(l)
    }

    /// The kernel scalar type of `v`'s elements, or why there is none.
    pub fn scalar(&self, v: ValueId, op: &str) -> BResult<ScalarType> {
        let dt = self.f.ty(v).dtype;
        ScalarType::of_dtype(dt).ok_or_else(|| unsupported(op, format!("dtype {dt} is not supported in kernels yet")))
    }

    /// The buffer bound to `v` (created on first use).
    pub fn buffer(&mut self, v: ValueId, role: BufferRole) -> u32 {
        if let Some(&b) = self.buffer_of.get(&v) {
            return b;
        }
        let b = self.buffers.len() as u32;
        self.buffers.push(BufferParam { dtype: self.f.ty(v).dtype, role });
        self.buffer_values.push(v);
        self.buffer_of.insert(v, b);
        b
    }

    pub fn size(&mut self, d: &Dim, op: &str) -> BResult<Size> {
        dim_size(&mut self.dims, d).ok_or_else(|| unsupported(op, UNKNOWN_DIM))
    }

    pub fn product(&mut self, dims: &[Dim], op: &str) -> BResult<Size> {
        let mut s = Size::constant(1);
        for d in dims {
            s = s.mul(&self.size(d, op)?);
        }
        Ok(s)
    }

    pub fn finish(self, name: &str, parallel: LoopExtent, body: Vec<Stmt>) -> (Kernel, Vec<ValueId>) {
        let kernel = Kernel {
            name: name.to_string(),
            buffers: self.buffers,
            dims: self.dims,
            parallel,
            locals: self.locals,
            body,
        };
        (kernel, self.buffer_values)
    }
}
