//! The target-neutral kernel form: what one fusion group computes, as loop nests over
//! dense buffers. The CPU (Cranelift), PTX and naga backends all consume exactly this.
//!
//! # Model
//!
//! A [`Kernel`] is a function over
//! * **buffers** ([`BufferParam`]): dense, row-major arrays of one [`DType`]; buffer `i` is
//!   `buffers[i]` of the ABI (`ferrumc_runtime::abi::KernelFn`). Block-quantized or packed
//!   weights are buffers too, only ever handed to a micro-kernel;
//! * **dims**: the symbolic dim values the kernel reads (`dims[j]` of the ABI), named by the
//!   ModelIR symbol (`?seq` → `"seq"`);
//! * a **parallel loop** ([`LoopExtent`]): the launch computes iterations `[begin, end)` of
//!   it; iteration `i` covers the tile `[i·tile, min((i+1)·tile, extent))`. Inside the body
//!   [`Var::PARALLEL`] is the tile's first element (`i·tile`) and [`Extent::ParallelTile`]
//!   its length. Different iterations write disjoint memory, so they may run on different
//!   threads in any order;
//! * a **body** of [`Stmt`]s run once per parallel iteration.
//!
//! Statements are loop nests ([`Stmt::Loop`], counting a [`Var`] from 0 to an [`Extent`]),
//! stores of elementwise expression trees ([`Stmt::Store`]), scalar bindings
//! ([`Stmt::Let`]), reductions over one loop into a local ([`Stmt::Reduce`]), and calls to
//! the runtime's matrix micro-kernels ([`Stmt::CallMicroKernel`], the entries of
//! `abi::RuntimeFnTable`) and array helpers (attention row, `silu_mul`, `topk`).
//!
//! Locals are immutable unless reassigned by [`Stmt::Assign`] (a *mutable* local: defined
//! by a `Let`, then reassigned in the same or an enclosed scope; a read sees the latest
//! assignment in program order — loop-carried state such as the running maximum of an
//! online softmax).
//!
//! Data-dependent addressing ([`Expr::LoadAt`], [`Stmt::StoreAt`]) adds an `i64` *base*
//! expression to an affine index; the base must not vary along the loop it is used in when
//! that loop is vectorized (backends evaluate it once per element otherwise). Kernels that
//! read through indices loaded from buffers (gather, rotary tables) clamp them into range
//! first, so no access leaves its buffer; what out-of-range indices compute is documented
//! by the lowering (the runtime checks indices before launch).
//!
//! Sizes ([`Size`]) are integer polynomials over the dims (ModelIR dims are polynomials
//! over symbols too), and indices ([`IndexExpr`]) are affine: `Σ var·stride + offset`,
//! strides and offset being [`Size`]s, counted in elements. Backends may rely on that: a
//! loop variable with stride 1 in every access of an innermost loop means contiguous
//! memory (vectorizable), stride 0 means a broadcast.
//!
//! Scalars in expressions are typed ([`ScalarType`]): `f32`, `f64`, `i64` or `bool`; buffers
//! of dtype `bool` hold one byte per element (0 or 1). Locals ([`LocalId`]) are immutable
//! scalars: each is defined by exactly one `Let` or `Reduce`, before its uses, in a scope
//! that encloses them (SSA); their types are listed in [`Kernel::locals`].
//!
//! # Storage dtypes and compute types
//!
//! A buffer's dtype ([`BufferParam::dtype`], printed in the signature) is how its elements
//! are *stored*; [`ScalarType::of_dtype`] gives the *compute type* its elements load as,
//! and a store converts the (compute-typed) value back:
//!
//! | storage            | compute | load                      | store                                   |
//! |--------------------|---------|---------------------------|-----------------------------------------|
//! | `f32`, `f64`, `i64`, `bool` | same | exact              | exact                                   |
//! | `i8`, `i32`        | `i64`   | sign-extended             | wraps (two's complement, keeps low bits) |
//! | `u8`               | `i64`   | zero-extended             | wraps (keeps the low 8 bits)            |
//! | `f16`, `bf16`      | `f32`   | exact widening            | rounds to nearest even; NaN stays NaN, overflow → ±inf |
//!
//! So narrow integers compute in `i64` and half floats in `f32`, like numpy's/ONNX's
//! results once stored; `f64` is computed in `f64`. A value of a narrow dtype that is not
//! stored right away (an intermediate of a fused group) is brought to its dtype explicitly
//! with [`UnaryOp::Narrow`] (`wrap_i8(x)`, `round_f16(x)`, … in the text form), which is the
//! store-then-load round trip.
//!
//! # Semantics of the operations
//!
//! Float ops follow IEEE-754 f32 / f64 with the accuracy of the backend's math (documented
//! by each backend; f32 transcendental functions may be approximations within a few
//! ulp·10, f64 ones are the runtime's f64 library functions). `max` and `min` propagate
//! NaN. `Cast` float→int truncates toward zero and saturates (NaN → 0); int→float rounds to
//! nearest; `f64`→`f32` rounds to nearest.
//!
//! # Text form
//!
//! [`Kernel`]'s `Display` prints a deterministic, line-oriented form used by golden tests:
//!
//! ```text
//! kernel @k0(b0: in f32, b1: out f32) dims(n) parallel(p in 0..4 step 1) {
//!   for i1 in 0..n {
//!     b1[n*p + i1] = exp(b0[i1])
//!   }
//! }
//! ```

use ferrumc_ir::DType;
use std::fmt::{self, Write as _};

/// How a kernel uses a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferRole {
    /// Read only (function inputs, weights, results of earlier kernels).
    Input,
    /// Written by the kernel (and possibly read back after writing the same element).
    Output,
    /// Scratch the runtime provides for the duration of the launch.
    Temp,
}

impl BufferRole {
    fn name(self) -> &'static str {
        match self {
            BufferRole::Input => "in",
            BufferRole::Output => "out",
            BufferRole::Temp => "temp",
        }
    }
}

/// One buffer argument of a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferParam {
    /// Element type (block-quantized dtypes: raw GGML blocks, only for micro-kernels).
    pub dtype: DType,
    pub role: BufferRole,
}

/// A loop variable. [`Var::PARALLEL`] is the parallel loop's tile start; nested loops and
/// reductions use `Var(1)`, `Var(2)`, … (printed `i1`, `i2`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub u32);

impl Var {
    /// The parallel loop's variable (the first element of the current tile).
    pub const PARALLEL: Var = Var(0);
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Var::PARALLEL {
            f.write_str("p")
        } else {
            write!(f, "i{}", self.0)
        }
    }
}

/// A scalar local (see the module doc: defined once, before use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalId(pub u32);

impl fmt::Display for LocalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// An integer polynomial over the kernel's dims: `Σ coef · Π dims[j]`. Terms are kept
/// sorted with no zero coefficient, so equal sizes compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Size {
    /// `(coefficient, dim indices of the monomial, sorted)`, sorted by monomial.
    pub terms: Vec<(i64, Vec<u32>)>,
}

impl Size {
    /// The constant `n`.
    pub fn constant(n: i64) -> Size {
        Size { terms: if n == 0 { Vec::new() } else { vec![(n, Vec::new())] } }
    }

    /// The value of dim `j`.
    pub fn dim(j: u32) -> Size {
        Size { terms: vec![(1, vec![j])] }
    }

    /// The value if it has no dims.
    pub fn as_constant(&self) -> Option<i64> {
        match self.terms.as_slice() {
            [] => Some(0),
            [(c, m)] if m.is_empty() => Some(*c),
            _ => None,
        }
    }

    fn normalize(mut terms: Vec<(i64, Vec<u32>)>) -> Size {
        for (_, m) in terms.iter_mut() {
            m.sort_unstable();
        }
        terms.sort_by(|a, b| a.1.cmp(&b.1));
        let mut out: Vec<(i64, Vec<u32>)> = Vec::new();
        for (c, m) in terms {
            match out.last_mut() {
                Some((oc, om)) if *om == m => *oc = oc.wrapping_add(c),
                _ => out.push((c, m)),
            }
        }
        out.retain(|(c, _)| *c != 0);
        Size { terms: out }
    }

    pub fn add(&self, other: &Size) -> Size {
        Size::normalize(self.terms.iter().chain(&other.terms).cloned().collect())
    }

    pub fn mul(&self, other: &Size) -> Size {
        let mut terms = Vec::new();
        for (a, ma) in &self.terms {
            for (b, mb) in &other.terms {
                let mut m = ma.clone();
                m.extend(mb);
                terms.push((a.wrapping_mul(*b), m));
            }
        }
        Size::normalize(terms)
    }

    /// Evaluate with concrete dim values (`None` if a dim index is out of range).
    pub fn eval(&self, dims: &[i64]) -> Option<i64> {
        let mut total = 0i64;
        for (c, m) in &self.terms {
            let mut v = *c;
            for j in m {
                v = v.wrapping_mul(*dims.get(*j as usize)?);
            }
            total = total.wrapping_add(v);
        }
        Some(total)
    }

    fn write(&self, f: &mut impl fmt::Write, dims: &[String]) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        for (i, (c, m)) in self.terms.iter().enumerate() {
            let (sign, mag) = if *c < 0 { ("-", c.unsigned_abs()) } else { ("+", c.unsigned_abs()) };
            if i == 0 {
                if sign == "-" {
                    f.write_str("-")?;
                }
            } else {
                write!(f, " {sign} ")?;
            }
            let mut first = true;
            if mag != 1 || m.is_empty() {
                write!(f, "{mag}")?;
                first = false;
            }
            for j in m {
                if !first {
                    f.write_str("*")?;
                }
                first = false;
                match dims.get(*j as usize) {
                    Some(name) => f.write_str(name)?,
                    None => write!(f, "d{j}")?,
                }
            }
        }
        Ok(())
    }
}

/// A loop's trip count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Extent {
    /// A size over the dims.
    Size(Size),
    /// The length of the current parallel tile: `min(tile, parallel.extent - p)`.
    ParallelTile,
}

/// The parallel (outermost) loop: `ceil(extent / tile)` iterations, each a tile of `tile`
/// elements (the last one possibly shorter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopExtent {
    pub extent: Size,
    /// Elements per parallel iteration, at least 1.
    pub tile: u32,
}

/// An affine element index: `Σ var·stride + offset`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct IndexExpr {
    /// At most one term per variable, sorted by variable; no zero strides.
    pub terms: Vec<(Var, Size)>,
    pub offset: Size,
}

impl IndexExpr {
    /// The constant index `offset`.
    pub fn constant(offset: Size) -> IndexExpr {
        IndexExpr { terms: Vec::new(), offset }
    }

    /// `var · stride`.
    pub fn var(var: Var, stride: Size) -> IndexExpr {
        IndexExpr::default().plus_var(var, &stride)
    }

    /// `self + var · stride`.
    pub fn plus_var(mut self, var: Var, stride: &Size) -> IndexExpr {
        match self.terms.iter_mut().find(|(v, _)| *v == var) {
            Some((_, s)) => *s = s.add(stride),
            None => self.terms.push((var, stride.clone())),
        }
        self.terms.retain(|(_, s)| !s.terms.is_empty());
        self.terms.sort_by_key(|(v, _)| *v);
        self
    }

    /// `self + offset`.
    pub fn plus_offset(mut self, offset: &Size) -> IndexExpr {
        self.offset = self.offset.add(offset);
        self
    }

    /// The stride of `var` (zero if absent).
    pub fn stride(&self, var: Var) -> Size {
        self.terms.iter().find(|(v, _)| *v == var).map(|(_, s)| s.clone()).unwrap_or_default()
    }
}

/// Scalar (compute) types of expressions and locals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarType {
    F32,
    F64,
    I64,
    Bool,
}

impl ScalarType {
    /// The compute type elements of a buffer of `dtype` load as, if any (see the module
    /// doc: `i8`/`u8`/`i32` → `i64`, `f16`/`bf16` → `f32`).
    pub fn of_dtype(dtype: DType) -> Option<ScalarType> {
        match dtype {
            DType::F32 | DType::F16 | DType::BF16 => Some(ScalarType::F32),
            DType::F64 => Some(ScalarType::F64),
            DType::I64 | DType::I32 | DType::I8 | DType::U8 => Some(ScalarType::I64),
            DType::Bool => Some(ScalarType::Bool),
            _ => None,
        }
    }

    /// Whether values of `dtype` are held in a wider compute type (so intermediates need
    /// [`UnaryOp::Narrow`] to have exactly the dtype's values).
    pub fn is_narrow(dtype: DType) -> bool {
        matches!(dtype, DType::F16 | DType::BF16 | DType::I32 | DType::I8 | DType::U8)
    }

    /// `f32` or `f64`.
    pub fn is_float(self) -> bool {
        matches!(self, ScalarType::F32 | ScalarType::F64)
    }

    pub fn name(self) -> &'static str {
        match self {
            ScalarType::F32 => "f32",
            ScalarType::F64 => "f64",
            ScalarType::I64 => "i64",
            ScalarType::Bool => "bool",
        }
    }
}

/// A literal scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Const {
    F32(f32),
    F64(f64),
    I64(i64),
    Bool(bool),
}

impl Const {
    pub fn ty(self) -> ScalarType {
        match self {
            Const::F32(_) => ScalarType::F32,
            Const::F64(_) => ScalarType::F64,
            Const::I64(_) => ScalarType::I64,
            Const::Bool(_) => ScalarType::Bool,
        }
    }
}

/// Unary operations. Float-only (f32 or f64) unless noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// Float or i64.
    Neg,
    /// Float or i64.
    Abs,
    Sqrt,
    /// `1/√x`.
    Rsqrt,
    /// `1/x`.
    Recip,
    Exp,
    Tanh,
    Erf,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `sin x` (radians).
    Sin,
    /// `cos x` (radians).
    Cos,
    /// Natural logarithm.
    Log,
    /// The value as a buffer of this narrow dtype would store and load it back (see the
    /// module doc): an `i64` wrapped to `i8`/`u8`/`i32`, or an `f32` rounded to `f16`/`bf16`
    /// (nearest even). Only those five dtypes.
    Narrow(DType),
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Narrow(DType::I8) => "wrap_i8",
            UnaryOp::Narrow(DType::U8) => "wrap_u8",
            UnaryOp::Narrow(DType::I32) => "wrap_i32",
            UnaryOp::Narrow(DType::F16) => "round_f16",
            UnaryOp::Narrow(DType::BF16) => "round_bf16",
            UnaryOp::Narrow(_) => "narrow",
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Recip => "recip",
            UnaryOp::Exp => "exp",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Erf => "erf",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Log => "log",
        }
    }
}

/// Binary operations on two operands of one type (f32, f64 or i64; `Rem` i64 only, `Fmod`
/// float only, `Pow` f64 only; i64 `Div` and `Rem` truncate toward zero, division by zero
/// is undefined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// NaN-propagating maximum.
    Max,
    /// NaN-propagating minimum.
    Min,
    /// Integer remainder (i64).
    Rem,
    /// Float remainder with the dividend's sign, C's `fmod` (exact; NaN for a zero divisor).
    Fmod,
    /// `aᵇ` as C's `pow` (f64).
    Pow,
}

/// Comparisons (floats: ordered, false with NaN; i64: signed unless noted) giving a bool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Lt,
    Le,
    Eq,
    Ne,
    /// Unsigned `<` on i64 (`0 ≤ a < b` for non-negative `b` in one comparison).
    ULt,
}

impl CmpOp {
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::ULt => "ult",
        }
    }
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Rem => "rem",
            BinaryOp::Fmod => "fmod",
            BinaryOp::Pow => "pow",
        }
    }

    fn infix(self) -> Option<&'static str> {
        match self {
            BinaryOp::Add => Some("+"),
            BinaryOp::Sub => Some("-"),
            BinaryOp::Mul => Some("*"),
            BinaryOp::Div => Some("/"),
            _ => None,
        }
    }
}

/// A scalar expression tree, evaluated at the current values of the loop variables.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `buffers[buffer][index]` (the buffer's dtype must have a [`ScalarType`]).
    Load {
        buffer: u32,
        index: IndexExpr,
    },
    Const(Const),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `cond ? a : b` with a bool `cond` and `a`, `b` of one type.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// Conversion between `f32`, `f64` and `i64` (and bool → number as 0/1).
    Cast(ScalarType, Box<Expr>),
    Local(LocalId),
    /// The value of a size over the dims, as `i64`.
    Dim(Size),
    /// The value of an affine index over the loop variables, as `i64`.
    Index(IndexExpr),
    /// `a ⋈ b` for two operands of one type (f32, f64 or i64), a bool.
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    /// `buffers[buffer][base + index]` with an `i64` `base`.
    LoadAt {
        buffer: u32,
        base: Box<Expr>,
        index: IndexExpr,
    },
}

impl Expr {
    pub fn f32(v: f32) -> Expr {
        Expr::Const(Const::F32(v))
    }
    pub fn f64(v: f64) -> Expr {
        Expr::Const(Const::F64(v))
    }
    pub fn unary(op: UnaryOp, e: Expr) -> Expr {
        Expr::Unary(op, Box::new(e))
    }
    pub fn binary(op: BinaryOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }
    pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
        Expr::Select(Box::new(c), Box::new(a), Box::new(b))
    }
    pub fn cast(to: ScalarType, e: Expr) -> Expr {
        Expr::Cast(to, Box::new(e))
    }
    pub fn i64(v: i64) -> Expr {
        Expr::Const(Const::I64(v))
    }
    pub fn compare(op: CmpOp, a: Expr, b: Expr) -> Expr {
        Expr::Compare(op, Box::new(a), Box::new(b))
    }
    pub fn load_at(buffer: u32, base: Expr, index: IndexExpr) -> Expr {
        Expr::LoadAt { buffer, base: Box::new(base), index }
    }

    /// The expression's type, given the kernel's buffers and locals (`None` when it
    /// refers to something that does not exist or mixes types).
    pub fn ty(&self, k: &Kernel) -> Option<ScalarType> {
        match self {
            Expr::Load { buffer, .. } => ScalarType::of_dtype(k.buffers.get(*buffer as usize)?.dtype),
            Expr::Const(c) => Some(c.ty()),
            Expr::Unary(_, e) => e.ty(k),
            Expr::Binary(_, a, b) => {
                let t = a.ty(k)?;
                (b.ty(k)? == t).then_some(t)
            }
            Expr::Select(c, a, b) => {
                let t = a.ty(k)?;
                (c.ty(k)? == ScalarType::Bool && b.ty(k)? == t).then_some(t)
            }
            Expr::Cast(t, _) => Some(*t),
            Expr::Local(l) => k.locals.get(l.0 as usize).copied(),
            Expr::Dim(_) | Expr::Index(_) => Some(ScalarType::I64),
            Expr::Compare(_, a, b) => {
                let t = a.ty(k)?;
                (b.ty(k)? == t && t != ScalarType::Bool).then_some(ScalarType::Bool)
            }
            Expr::LoadAt { buffer, base, .. } => {
                (base.ty(k)? == ScalarType::I64).then_some(())?;
                ScalarType::of_dtype(k.buffers.get(*buffer as usize)?.dtype)
            }
        }
    }

    /// Visit this expression and all its subexpressions, parents first.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Unary(_, e) | Expr::Cast(_, e) => e.visit(f),
            Expr::LoadAt { base, .. } => base.visit(f),
            Expr::Binary(_, a, b) | Expr::Compare(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Select(c, a, b) => {
                c.visit(f);
                a.visit(f);
                b.visit(f);
            }
            Expr::Load { .. } | Expr::Const(_) | Expr::Local(_) | Expr::Dim(_) | Expr::Index(_) => {}
        }
    }
}

/// How a reduction combines values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    /// NaN-propagating.
    Max,
    /// NaN-propagating.
    Min,
}

impl ReduceKind {
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "sum",
            ReduceKind::Max => "max",
            ReduceKind::Min => "min",
        }
    }
}

/// Which runtime micro-kernel (`abi::RuntimeFnTable` entry) a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MicroKernel {
    /// `sgemm`: dense row-major `b: [k, n]`, row stride `ldb`.
    Sgemm,
    /// `sgemm_packed`: `b` in `[⌈n/16⌉, k, 16]` panels.
    SgemmPacked,
    /// `sgemm_nt`: `c = a·wᵀ`, f32 `w: [n, k]` rows at stride `ldb`.
    SgemmNt,
    /// `gemm_q8_0`: `c = a·wᵀ`, `w: [n, k]` in Q8_0 blocks.
    GemmQ8_0,
    /// `gemm_q4_0`: `c = a·wᵀ`, `w: [n, k]` in Q4_0 blocks.
    GemmQ4_0,
    /// `gemm_i8`: `c = (a·wᵀ)·diag(scale)`, `w: [n, k]` i8 rows at stride `ldb`, one f32 scale
    /// per output column ([`MicroKernelArgs::scale`]).
    GemmI8,
}

impl MicroKernel {
    pub fn name(self) -> &'static str {
        match self {
            MicroKernel::Sgemm => "sgemm",
            MicroKernel::SgemmPacked => "sgemm_packed",
            MicroKernel::SgemmNt => "sgemm_nt",
            MicroKernel::GemmQ8_0 => "gemm_q8_0",
            MicroKernel::GemmQ4_0 => "gemm_q4_0",
            MicroKernel::GemmI8 => "gemm_i8",
        }
    }
}

/// A pointer into a buffer: `&buffers[buffer][offset]` (element offset; for block-quantized
/// buffers the offset counts logical elements and must be a multiple of the block size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferRef {
    pub buffer: u32,
    pub offset: IndexExpr,
}

/// Arguments of a `GemmFn` call (see `abi::GemmFn`): `c[m, n] (+)= a[m, k] · B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicroKernelArgs {
    pub m: Extent,
    pub n: Extent,
    pub k: Size,
    pub a: BufferRef,
    pub lda: Size,
    pub b: BufferRef,
    pub ldb: Size,
    pub c: BufferRef,
    pub ldc: Size,
    pub accumulate: bool,
    /// `gemm_i8`'s per-column scales from `c`'s first column on (`None` for the others).
    pub scale: Option<BufferRef>,
}

/// A pointer `&buffers[buffer][base + index]` into an f32 buffer, with an optional dynamic
/// `i64` base (element offsets).
#[derive(Debug, Clone, PartialEq)]
pub struct DynRef {
    pub buffer: u32,
    pub base: Option<Expr>,
    pub index: IndexExpr,
}

/// Arguments of an `attention_row` call (see `abi::AttentionRowFn`): one query row `q[dk]`
/// against the first `keys` (an `i64` expression) rows of `k: [·, dk]` and `v: [·, dv]`,
/// writing `o[dv]`; with a `mask` of `keys` elements, an f32 `mask[j]` is added to key `j`'s
/// score and a bool `mask[j]` keeps the key where true (`abi::AttentionRowMaskedFn`).
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionRowArgs {
    pub q: DynRef,
    pub k: DynRef,
    pub v: DynRef,
    pub mask: Option<DynRef>,
    pub o: DynRef,
    pub keys: Expr,
    pub dk: i64,
    pub dv: i64,
    pub scale: f32,
}

/// Arguments of a `silu_mul` call (see `abi::BinaryArrayFn`): `y[j] = x[j]·σ(x[j])·z[j]` for
/// `j < n` over contiguous f32 elements (`y` may be `x` or `z`).
#[derive(Debug, Clone, PartialEq)]
pub struct SiluMulArgs {
    pub x: DynRef,
    pub z: DynRef,
    pub y: DynRef,
    pub n: Extent,
}

/// Arguments of a `topk` call (see `abi::TopKFn`): the `k` best of the `n` elements
/// `x[i·x_stride]` (`largest` or smallest first; ties by lower position) to
/// `values[j·v_stride]` and their positions to the i64 `indices[j·i_stride]`. `x` and `values`
/// share one numeric dtype (any the runtime helper knows, not only f32).
#[derive(Debug, Clone, PartialEq)]
pub struct TopKArgs {
    pub x: DynRef,
    pub n: Size,
    pub x_stride: Size,
    pub k: Size,
    pub largest: bool,
    pub values: DynRef,
    pub v_stride: Size,
    pub indices: DynRef,
    pub i_stride: Size,
}

/// A statement of a kernel body.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `for var in 0..extent { body }`.
    Loop { var: Var, extent: Extent, body: Vec<Stmt> },
    /// `buffers[buffer][index] = value` (value converted to the buffer's scalar type must
    /// already match it).
    Store { buffer: u32, index: IndexExpr, value: Expr },
    /// `local = value`.
    Let { local: LocalId, value: Expr },
    /// `local = value` for a local already defined by a `Let` (see the module doc).
    Assign { local: LocalId, value: Expr },
    /// `buffers[buffer][base + index] = value` with an `i64` `base`.
    StoreAt { buffer: u32, base: Expr, index: IndexExpr, value: Expr },
    /// `into = init ⊕ value(var=0) ⊕ … ⊕ value(var=extent-1)` with `⊕` given by `kind`
    /// (f32, f64 or i64: the type of `into`). Backends may reassociate f32 sums (several
    /// accumulators, vector lanes).
    Reduce { kind: ReduceKind, var: Var, extent: Extent, init: Expr, value: Expr, into: LocalId },
    /// A call of a matrix micro-kernel from the runtime's function table.
    CallMicroKernel { which: MicroKernel, args: MicroKernelArgs },
    /// A call of the runtime's `attention_row` micro-kernel.
    CallAttentionRow(Box<AttentionRowArgs>),
    /// A call of the runtime's `silu_mul` array helper (the gated-MLP epilogue).
    CallSiluMul(Box<SiluMulArgs>),
    /// A call of the runtime's `topk` helper on one lane.
    CallTopK(Box<TopKArgs>),
    /// `var = value` (an `i64`) for the statements after it in the same body: an index
    /// variable computed from others (e.g. a tile's first column when parallel tiles are
    /// not contiguous), so index expressions and micro-kernel offsets can use it linearly.
    BindVar { var: Var, value: Expr },
}

/// One kernel (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub buffers: Vec<BufferParam>,
    /// Symbol names of the dims, in ABI order.
    pub dims: Vec<String>,
    pub parallel: LoopExtent,
    /// Types of the locals, by [`LocalId`].
    pub locals: Vec<ScalarType>,
    pub body: Vec<Stmt>,
}

impl Kernel {
    /// The number of parallel iterations under concrete dims.
    pub fn parallel_iterations(&self, dims: &[i64]) -> Option<u64> {
        let extent = u64::try_from(self.parallel.extent.eval(dims)?).ok()?;
        let tile = u64::from(self.parallel.tile.max(1));
        Some(extent.div_ceil(tile))
    }

    /// The printed form (same as `Display`).
    pub fn print(&self) -> String {
        self.to_string()
    }

    /// Check that every expression is well typed (operands of one type, ops defined on
    /// their type, stores and bindings of their target's compute type). Lowering runs it so
    /// that a template producing a mix it cannot express (say an `f32` constant in an `f64`
    /// expression) reports the group as unsupported instead of failing in a backend.
    pub fn check_types(&self) -> Result<(), String> {
        self.check_stmts(&self.body)
    }

    fn check_expr(&self, e: &Expr) -> Result<ScalarType, String> {
        let mut bad: Option<String> = None;
        e.visit(&mut |x| {
            if bad.is_some() {
                return;
            }
            let Some(t) = x.ty(self) else {
                bad = Some("an ill-typed expression".into());
                return;
            };
            let ok = match x {
                Expr::Unary(UnaryOp::Narrow(d), _) => ScalarType::of_dtype(*d) == Some(t) && ScalarType::is_narrow(*d),
                Expr::Unary(UnaryOp::Neg | UnaryOp::Abs, _) => t != ScalarType::Bool,
                Expr::Unary(_, _) => t.is_float(),
                Expr::Binary(BinaryOp::Rem, ..) => t == ScalarType::I64,
                Expr::Binary(BinaryOp::Fmod, ..) => t.is_float(),
                Expr::Binary(BinaryOp::Pow, ..) => t == ScalarType::F64,
                Expr::Binary(..) => t != ScalarType::Bool,
                Expr::Cast(to, a) => *to != ScalarType::Bool && a.ty(self).is_some(),
                _ => true,
            };
            if !ok {
                bad = Some(format!("an operation not defined on {}", t.name()));
            }
        });
        match bad {
            Some(b) => Err(b),
            None => e.ty(self).ok_or_else(|| "an ill-typed expression".into()),
        }
    }

    fn check_stmts(&self, body: &[Stmt]) -> Result<(), String> {
        let buffer_ty = |b: u32| self.buffers.get(b as usize).and_then(|p| ScalarType::of_dtype(p.dtype));
        let local_ty = |l: LocalId| self.locals.get(l.0 as usize).copied();
        for s in body {
            match s {
                Stmt::Loop { body, .. } => self.check_stmts(body)?,
                Stmt::Store { buffer, value, .. } => {
                    if Some(self.check_expr(value)?) != buffer_ty(*buffer) {
                        return Err(format!("a store into b{buffer} of another type"));
                    }
                }
                Stmt::StoreAt { buffer, base, value, .. } => {
                    if self.check_expr(base)? != ScalarType::I64 || Some(self.check_expr(value)?) != buffer_ty(*buffer)
                    {
                        return Err(format!("a store into b{buffer} of another type"));
                    }
                }
                Stmt::Let { local, value } | Stmt::Assign { local, value } => {
                    if Some(self.check_expr(value)?) != local_ty(*local) {
                        return Err(format!("{local} bound to a value of another type"));
                    }
                }
                Stmt::Reduce { init, value, into, .. } => {
                    let t = local_ty(*into);
                    if Some(self.check_expr(init)?) != t
                        || Some(self.check_expr(value)?) != t
                        || t == Some(ScalarType::Bool)
                    {
                        return Err(format!("reduction into {into} of mixed types"));
                    }
                }
                Stmt::BindVar { value, .. } => {
                    if self.check_expr(value)? != ScalarType::I64 {
                        return Err("a variable bound to a non-i64 value".into());
                    }
                }
                Stmt::CallMicroKernel { .. } | Stmt::CallAttentionRow(_) | Stmt::CallSiluMul(_) | Stmt::CallTopK(_) => {
                }
            }
        }
        Ok(())
    }
}

struct Printer<'a> {
    k: &'a Kernel,
    out: String,
}

impl Printer<'_> {
    fn size(&mut self, s: &Size) {
        let _ = s.write(&mut self.out, &self.k.dims);
    }

    fn extent(&mut self, e: &Extent) {
        match e {
            Extent::Size(s) => self.size(s),
            Extent::ParallelTile => self.out.push_str("tile"),
        }
    }

    fn index(&mut self, ix: &IndexExpr) {
        let mut first = true;
        for (v, s) in &ix.terms {
            if !first {
                self.out.push_str(" + ");
            }
            first = false;
            if s.as_constant() == Some(1) {
                let _ = write!(self.out, "{v}");
            } else if s.terms.len() == 1 {
                self.size(s);
                let _ = write!(self.out, "*{v}");
            } else {
                self.out.push('(');
                self.size(s);
                let _ = write!(self.out, ")*{v}");
            }
        }
        if !ix.offset.terms.is_empty() || first {
            if !first {
                self.out.push_str(" + ");
            }
            if ix.offset.terms.len() > 1 && !first {
                self.out.push('(');
                self.size(&ix.offset);
                self.out.push(')');
            } else {
                self.size(&ix.offset);
            }
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Load { buffer, index } => {
                let _ = write!(self.out, "b{buffer}[");
                self.index(index);
                self.out.push(']');
            }
            Expr::Const(Const::F32(v)) => {
                let _ = write!(self.out, "{v:?}");
            }
            Expr::Const(Const::F64(v)) => {
                let _ = write!(self.out, "{v:?}f64");
            }
            Expr::Const(Const::I64(v)) => {
                let _ = write!(self.out, "{v}i64");
            }
            Expr::Const(Const::Bool(v)) => {
                let _ = write!(self.out, "{v}");
            }
            Expr::Unary(op, a) => {
                let _ = write!(self.out, "{}(", op.name());
                self.expr(a);
                self.out.push(')');
            }
            Expr::Binary(op, a, b) => match op.infix() {
                Some(sym) => {
                    self.out.push('(');
                    self.expr(a);
                    let _ = write!(self.out, " {sym} ");
                    self.expr(b);
                    self.out.push(')');
                }
                None => {
                    let _ = write!(self.out, "{}(", op.name());
                    self.expr(a);
                    self.out.push_str(", ");
                    self.expr(b);
                    self.out.push(')');
                }
            },
            Expr::Select(c, a, b) => {
                self.out.push_str("select(");
                self.expr(c);
                self.out.push_str(", ");
                self.expr(a);
                self.out.push_str(", ");
                self.expr(b);
                self.out.push(')');
            }
            Expr::Cast(t, a) => {
                let _ = write!(self.out, "{}(", t.name());
                self.expr(a);
                self.out.push(')');
            }
            Expr::Local(l) => {
                let _ = write!(self.out, "{l}");
            }
            Expr::Dim(s) => {
                self.out.push_str("size(");
                self.size(s);
                self.out.push(')');
            }
            Expr::Index(ix) => {
                self.out.push_str("index(");
                self.index(ix);
                self.out.push(')');
            }
            Expr::Compare(op, a, b) => {
                let _ = write!(self.out, "{}(", op.name());
                self.expr(a);
                self.out.push_str(", ");
                self.expr(b);
                self.out.push(')');
            }
            Expr::LoadAt { buffer, base, index } => {
                let _ = write!(self.out, "b{buffer}[");
                self.expr(base);
                self.out.push_str(" + ");
                self.index(index);
                self.out.push(']');
            }
        }
    }

    fn buffer_ref(&mut self, r: &BufferRef) {
        let _ = write!(self.out, "&b{}[", r.buffer);
        self.index(&r.offset);
        self.out.push(']');
    }

    fn dyn_ref(&mut self, r: &DynRef) {
        let _ = write!(self.out, "&b{}[", r.buffer);
        if let Some(b) = &r.base {
            self.expr(b);
            self.out.push_str(" + ");
        }
        self.index(&r.index);
        self.out.push(']');
    }

    fn stmts(&mut self, body: &[Stmt], depth: usize) {
        for s in body {
            self.stmt(s, depth);
        }
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn stmt(&mut self, s: &Stmt, depth: usize) {
        self.indent(depth);
        match s {
            Stmt::Loop { var, extent, body } => {
                let _ = write!(self.out, "for {var} in 0..");
                self.extent(extent);
                self.out.push_str(" {\n");
                self.stmts(body, depth + 1);
                self.indent(depth);
                self.out.push_str("}\n");
            }
            Stmt::Store { buffer, index, value } => {
                let _ = write!(self.out, "b{buffer}[");
                self.index(index);
                self.out.push_str("] = ");
                self.expr(value);
                self.out.push('\n');
            }
            Stmt::Let { local, value } => {
                let ty = self.k.locals.get(local.0 as usize).map(|t| t.name()).unwrap_or("?");
                let _ = write!(self.out, "let {local}: {ty} = ");
                self.expr(value);
                self.out.push('\n');
            }
            Stmt::Assign { local, value } => {
                let _ = write!(self.out, "{local} := ");
                self.expr(value);
                self.out.push('\n');
            }
            Stmt::StoreAt { buffer, base, index, value } => {
                let _ = write!(self.out, "b{buffer}[");
                self.expr(base);
                self.out.push_str(" + ");
                self.index(index);
                self.out.push_str("] = ");
                self.expr(value);
                self.out.push('\n');
            }
            Stmt::Reduce { kind, var, extent, init, value, into } => {
                let ty = self.k.locals.get(into.0 as usize).map(|t| t.name()).unwrap_or("?");
                let _ = write!(self.out, "let {into}: {ty} = reduce_{}({var} in 0..", kind.name());
                self.extent(extent);
                self.out.push_str(", init ");
                self.expr(init);
                self.out.push_str(") ");
                self.expr(value);
                self.out.push('\n');
            }
            Stmt::CallMicroKernel { which, args } => {
                let _ = write!(self.out, "call {}(m ", which.name());
                self.extent(&args.m);
                self.out.push_str(", n ");
                self.extent(&args.n);
                self.out.push_str(", k ");
                self.size(&args.k);
                self.out.push_str(", a ");
                self.buffer_ref(&args.a);
                self.out.push_str(", lda ");
                self.size(&args.lda);
                self.out.push_str(", b ");
                self.buffer_ref(&args.b);
                self.out.push_str(", ldb ");
                self.size(&args.ldb);
                self.out.push_str(", c ");
                self.buffer_ref(&args.c);
                self.out.push_str(", ldc ");
                self.size(&args.ldc);
                let _ = write!(self.out, ", accumulate {}", args.accumulate);
                if let Some(s) = &args.scale {
                    self.out.push_str(", scale ");
                    self.buffer_ref(s);
                }
                self.out.push_str(")\n");
            }
            Stmt::CallAttentionRow(a) => {
                self.out.push_str("call attention_row(q ");
                self.dyn_ref(&a.q);
                self.out.push_str(", k ");
                self.dyn_ref(&a.k);
                self.out.push_str(", v ");
                self.dyn_ref(&a.v);
                if let Some(m) = &a.mask {
                    self.out.push_str(", mask ");
                    self.dyn_ref(m);
                }
                self.out.push_str(", keys ");
                self.expr(&a.keys);
                let _ = write!(self.out, ", dk {}, dv {}, scale {:?}, o ", a.dk, a.dv, a.scale);
                self.dyn_ref(&a.o);
                self.out.push_str(")\n");
            }
            Stmt::BindVar { var, value } => {
                let _ = write!(self.out, "bind {var} = ");
                self.expr(value);
                self.out.push('\n');
            }
            Stmt::CallTopK(a) => {
                self.out.push_str("call topk(x ");
                self.dyn_ref(&a.x);
                self.out.push_str(", n ");
                self.size(&a.n);
                self.out.push_str(", stride ");
                self.size(&a.x_stride);
                self.out.push_str(", k ");
                self.size(&a.k);
                let _ = write!(self.out, ", largest {}, values ", a.largest);
                self.dyn_ref(&a.values);
                self.out.push_str(", stride ");
                self.size(&a.v_stride);
                self.out.push_str(", indices ");
                self.dyn_ref(&a.indices);
                self.out.push_str(", stride ");
                self.size(&a.i_stride);
                self.out.push_str(")\n");
            }
            Stmt::CallSiluMul(a) => {
                self.out.push_str("call silu_mul(x ");
                self.dyn_ref(&a.x);
                self.out.push_str(", z ");
                self.dyn_ref(&a.z);
                self.out.push_str(", y ");
                self.dyn_ref(&a.y);
                self.out.push_str(", n ");
                self.extent(&a.n);
                self.out.push_str(")\n");
            }
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut p = Printer { k: self, out: String::new() };
        let _ = write!(p.out, "kernel @{}(", self.name);
        for (i, b) in self.buffers.iter().enumerate() {
            if i > 0 {
                p.out.push_str(", ");
            }
            let _ = write!(p.out, "b{i}: {} {}", b.role.name(), b.dtype);
        }
        p.out.push_str(") dims(");
        p.out.push_str(&self.dims.join(", "));
        p.out.push_str(") parallel(p in 0..");
        p.size(&self.parallel.extent);
        let _ = writeln!(p.out, " step {}) {{", self.parallel.tile);
        p.stmts(&self.body, 1);
        p.out.push_str("}\n");
        f.write_str(&p.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_normalize_and_evaluate() {
        let n = Size::dim(0);
        let s = Size::dim(1).mul(&n).add(&Size::constant(3)).add(&n.mul(&Size::dim(1)));
        assert_eq!(s.terms, vec![(3, vec![]), (2, vec![0, 1])]);
        assert_eq!(s.eval(&[4, 5]), Some(43));
        assert_eq!(Size::constant(2).add(&Size::constant(-2)), Size::constant(0));
        let mut text = String::new();
        s.write(&mut text, &["n".into(), "m".into()]).unwrap();
        assert_eq!(text, "3 + 2*n*m");
    }

    #[test]
    fn printing_is_deterministic() {
        let k = Kernel {
            name: "k0".into(),
            buffers: vec![
                BufferParam { dtype: DType::F32, role: BufferRole::Input },
                BufferParam { dtype: DType::F32, role: BufferRole::Output },
            ],
            dims: vec!["n".into()],
            parallel: LoopExtent { extent: Size::constant(4), tile: 1 },
            locals: vec![],
            body: vec![Stmt::Loop {
                var: Var(1),
                extent: Extent::Size(Size::dim(0)),
                body: vec![Stmt::Store {
                    buffer: 1,
                    index: IndexExpr::var(Var::PARALLEL, Size::dim(0)).plus_var(Var(1), &Size::constant(1)),
                    value: Expr::unary(
                        UnaryOp::Exp,
                        Expr::Load { buffer: 0, index: IndexExpr::var(Var(1), Size::constant(1)) },
                    ),
                }],
            }],
        };
        let expected = "kernel @k0(b0: in f32, b1: out f32) dims(n) parallel(p in 0..4 step 1) {
  for i1 in 0..n {
    b1[n*p + i1] = exp(b0[i1])
  }
}
";
        assert_eq!(k.print(), expected);
        assert_eq!(k.print(), k.clone().print());
    }
}
