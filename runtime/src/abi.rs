//! The calling convention between generated kernels and the runtime.
//!
//! Codegen emits every kernel with the signature [`KernelFn`]; the runtime calls it once per
//! chunk of the kernel's parallel (outermost) loop, possibly from several threads at once,
//! and passes the function table of micro-kernels and math helpers it ships
//! ([`RuntimeFnTable`]) — the way IREE's ukernels are reached. Kernels never call anything
//! else, so machine code needs no relocation at load time.
//!
//! Layout rules every kernel and the runtime agree on:
//! * `buffers[i]` points at the i-th buffer the schedule step binds (arena slices, weights,
//!   inputs, outputs), row-major, dense, 64-byte aligned.
//! * `dims[j]` is the j-th symbolic dim value the step binds (evaluated by the runtime).
//! * A launch computes iterations `[begin, end)` of the kernel's parallel loop; different
//!   ranges write disjoint memory. In artifacts (`ferrumc compile`), a step's extent counts
//!   the parallel loop's *elements* and its grain is the kernel's tile: a kernel whose loop
//!   walks tiles of `t` elements runs the tiles whose first element lies in `[begin, end)`
//!   (tile indices `[⌈begin/t⌉, ⌈end/t⌉)`), since a schedule's polynomial extent cannot
//!   state `⌈extent/t⌉`. For `t = 1` both readings agree.

/// A generated kernel (see the module doc).
pub type KernelFn =
    unsafe extern "C" fn(buffers: *const *mut u8, dims: *const i64, table: *const RuntimeFnTable, begin: u64, end: u64);

/// `c[m, n] (+)= Σ_k a[m, k] · b[k, n]` on an `m × n` tile. `a` has row stride `lda`
/// (elements), `c` row stride `ldc`; `accumulate != 0` adds to `c` instead of overwriting.
/// The layout of `b` depends on the entry (dense `[k, n]` with row stride `ldb`, or packed
/// panels `[⌈n/16⌉, k, 16]` for the `packed` entry, or GGML blocks for the quantized ones).
pub type GemmFn = unsafe extern "C" fn(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    b: *const u8,
    ldb: u64,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
);

/// `c[m, n] (+)= (a[m, k] · wᵀ) · diag(scale)`: `w: [n, k]` `i8` rows (row stride `ldb`
/// bytes) with one f32 scale per output column (`scale[j]` for `c`'s column `j`) — the
/// `quantized_linear` of per-channel int8 weights. `accumulate` as in [`GemmFn`].
pub type GemmI8Fn = unsafe extern "C" fn(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    w: *const i8,
    ldb: u64,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
    scale: *const f32,
);

/// One query row of softmax attention: `o[e] = Σ_j p_j · v[j, e]` for `e < dv`, with
/// `p = softmax_j(scale · Σ_d q[d] · k[j, d])` over the first `keys` key rows (`k: [keys, dk]`,
/// `v: [keys, dv]`, dense rows). `keys == 0` writes zeros. Causal and cache handling are the
/// caller's: it passes the visible key count and contiguous key/value rows.
pub type AttentionRowFn = unsafe extern "C" fn(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    keys: u64,
    dk: u64,
    dv: u64,
    scale: f32,
    o: *mut f32,
);

/// [`AttentionRowFn`] with a mask over the `keys` keys, of kind `mask_kind`:
/// [`MASK_ADDITIVE`] — `mask` holds `keys` f32 added to the scores (`scale · q·k_j + mask[j]`;
/// `−∞` hides a key); [`MASK_KEEP`] — `mask` holds `keys` bytes, and key `j` is seen iff
/// `mask[j] != 0` (a bool mask). A row whose every score is `−∞` gets zeros.
pub type AttentionRowMaskedFn = unsafe extern "C" fn(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    mask: *const u8,
    mask_kind: u32,
    keys: u64,
    dk: u64,
    dv: u64,
    scale: f32,
    o: *mut f32,
);

/// [`AttentionRowMaskedFn`]'s `mask_kind` for f32 masks added to the scores.
pub const MASK_ADDITIVE: u32 = 0;
/// [`AttentionRowMaskedFn`]'s `mask_kind` for byte masks that keep the keys where nonzero.
pub const MASK_KEEP: u32 = 1;

/// The mask of one attention row, as the micro-kernels read it.
#[derive(Debug, Clone, Copy)]
pub enum RowMask {
    /// No mask.
    None,
    /// `mask_kind` [`MASK_ADDITIVE`].
    Additive(*const f32),
    /// `mask_kind` [`MASK_KEEP`].
    Keep(*const u8),
}

impl RowMask {
    /// From the ABI's pointer and kind (an unknown kind hides nothing, like no mask).
    pub fn from_abi(mask: *const u8, kind: u32) -> Self {
        match kind {
            _ if mask.is_null() => RowMask::None,
            MASK_ADDITIVE => RowMask::Additive(mask.cast()),
            MASK_KEEP => RowMask::Keep(mask),
            _ => RowMask::None,
        }
    }

    /// What key `j`'s score gains: the additive value, or `0` / `−∞` for a kept / hidden key.
    ///
    /// # Safety
    /// The mask covers key `j`.
    #[inline(always)]
    pub unsafe fn added(self, j: usize) -> f32 {
        // SAFETY: the caller's contract.
        unsafe {
            match self {
                RowMask::None => 0.0,
                RowMask::Additive(m) => *m.add(j),
                RowMask::Keep(m) => {
                    if *m.add(j) != 0 {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                }
            }
        }
    }
}

/// `y[i] = f(x[i], z[i])` for `i < n` (`y` may be the same buffer as `x` or `z`).
pub type BinaryArrayFn = unsafe extern "C" fn(x: *const f32, z: *const f32, y: *mut f32, n: u64);

/// `y[i] = f(x[i])` for `i < n` (`x` and `y` may be the same buffer).
pub type UnaryArrayFn = unsafe extern "C" fn(x: *const f32, y: *mut f32, n: u64);

/// Top-k of one lane ([`RuntimeFnTable::topk`]): of the `n` elements `x[i·x_stride]` (element
/// type `elem`, an [`elem_code`]), the `k` largest (`largest != 0`) or smallest, best first,
/// are copied to `values[j·v_stride]` (same element type) and their positions `i` to
/// `indices[j·i_stride]`. Equal elements keep the lower position first; NaN counts as larger
/// than every number (NaNs compare equal among themselves). Strides count elements. `k` is at
/// most `n` (a larger `k` is treated as `n`); an unknown `elem` writes nothing.
pub type TopKFn = unsafe extern "C" fn(
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
);

/// Element-type codes of array helpers that take any numeric dtype ([`TopKFn`]).
pub mod elem_code {
    pub const F32: u32 = 1;
    pub const F64: u32 = 2;
    pub const I64: u32 = 3;
    pub const I32: u32 = 4;
    pub const I8: u32 = 5;
    pub const U8: u32 = 6;
    pub const F16: u32 = 7;
    pub const BF16: u32 = 8;
}

/// `y = f(x)` on one f64 scalar.
pub type ScalarF64Fn = unsafe extern "C" fn(x: f64) -> f64;

/// `z = f(x, y)` on two f64 scalars.
pub type BinaryScalarF64Fn = unsafe extern "C" fn(x: f64, y: f64) -> f64;

/// Scalar f64 math for kernels that compute in f64 (added in version 4). Every entry has
/// the semantics of Rust's `f64` method of the same name (the C library's `exp`, `log`,
/// `tanh`, `sin`, `cos`, `pow`; `fmod` is C's `fmod`, Rust's `%`); `erf` is accurate to
/// about 1e-15 relative.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ScalarMathF64 {
    pub exp: ScalarF64Fn,
    pub log: ScalarF64Fn,
    pub tanh: ScalarF64Fn,
    pub erf: ScalarF64Fn,
    pub sin: ScalarF64Fn,
    pub cos: ScalarF64Fn,
    pub pow: BinaryScalarF64Fn,
    pub fmod: BinaryScalarF64Fn,
}

/// The version of [`RuntimeFnTable`]'s layout; artifacts record the version they were
/// compiled against and a runtime refuses other versions.
pub const FN_TABLE_VERSION: u32 = 5;

/// Micro-kernels and math helpers the runtime passes to every kernel.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RuntimeFnTable {
    /// [`FN_TABLE_VERSION`].
    pub version: u32,
    /// f32 GEMM with dense row-major `b: [k, n]` (row stride `ldb`).
    pub sgemm: GemmFn,
    /// f32 GEMM with `b` prepacked into `[⌈n/16⌉, k, 16]` panels (`packed_linear`'s weight
    /// layout; `ldb` ignored), `n` the unpadded column count.
    pub sgemm_packed: GemmFn,
    /// `c = a · wᵀ` with f32 `w: [n, k]` rows (row stride `ldb`; a `linear` weight as stored;
    /// added in version 2).
    pub sgemm_nt: GemmFn,
    /// `c = a · wᵀ` with `w: [n, k]` in GGML Q8_0 blocks (row after row; `ldb` ignored).
    pub gemm_q8_0: GemmFn,
    /// `c = a · wᵀ` with `w: [n, k]` in GGML Q4_0 blocks (row after row; `ldb` ignored).
    pub gemm_q4_0: GemmFn,
    /// Elementwise `exp`, `tanh`, `erf` over arrays (f32, max error a few ulp).
    pub exp: UnaryArrayFn,
    pub tanh: UnaryArrayFn,
    pub erf: UnaryArrayFn,
    /// One query row of attention ([`AttentionRowFn`]; added in version 2).
    pub attention_row: AttentionRowFn,
    /// `y = x · σ(x) · z` ([`BinaryArrayFn`]; the gated-MLP epilogue `silu(gate) · up`, run
    /// on each row of a column tile right after its GEMM; added in version 3).
    pub silu_mul: BinaryArrayFn,
    /// Per-channel int8 GEMM ([`GemmI8Fn`]; added in version 3).
    pub gemm_i8: GemmI8Fn,
    /// Top-k along one strided lane, any numeric element type ([`TopKFn`]; added in version 4).
    pub topk: TopKFn,
    /// Scalar f64 math ([`ScalarMathF64`]; added in version 4).
    pub f64_math: ScalarMathF64,
    /// One query row of attention with an additive mask ([`AttentionRowMaskedFn`]; added in
    /// version 5).
    pub attention_row_masked: AttentionRowMaskedFn,
}

impl std::fmt::Debug for ScalarMathF64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalarMathF64").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RuntimeFnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeFnTable").field("version", &self.version).finish_non_exhaustive()
    }
}
