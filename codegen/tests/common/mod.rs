//! Test support: compile a ModelIR function through `fusion-groups` → lowering → JIT, run
//! it with a tiny executor (groups in dependency order, each kernel launched over its
//! parallel range in two halves to exercise `[begin, end)`), a naive reference
//! `RuntimeFnTable`, and comparison with the reference interpreter.

#![allow(dead_code)]

use ferrumc_codegen::cpu::JitKernels;
use ferrumc_codegen::kernel::BufferRole;
use ferrumc_codegen::lower::{lower_function, LoweredGroup};
use ferrumc_ir::interp::{eval_single_op, run_function};
use ferrumc_ir::text::parse_module;
use ferrumc_ir::weights::{InlineWeights, WeightProvider};
use ferrumc_ir::{DType, Module, Tensor, ValueId};
use ferrumc_passes::{PassManager, PassOptions};
use ferrumc_runtime::abi::{RuntimeFnTable, FN_TABLE_VERSION};
use std::collections::{HashMap, HashSet};

/// A function compiled to kernels.
pub struct Compiled {
    pub module: Module,
    /// Index of the compiled function in `module.functions`.
    pub function: usize,
    pub groups: Vec<LoweredGroup>,
    pub jit: JitKernels,
}

/// Parse, group and lower; panics with the codegen error when a group is unsupported.
pub fn lower(src: &str) -> (Module, Vec<LoweredGroup>) {
    let mut m = parse_module(src).expect("test module parses");
    PassManager::new(&["fusion-groups"], PassOptions::default()).unwrap().run(&mut m).unwrap();
    let f = &m.functions[0];
    let groups =
        lower_function(f).unwrap().into_iter().map(|(g, r)| r.unwrap_or_else(|e| panic!("group {g}: {e}"))).collect();
    (m, groups)
}

pub fn compile(src: &str) -> Compiled {
    let (module, groups) = lower(src);
    let kernels: Vec<_> = groups.iter().map(|g| g.kernel.clone()).collect();
    let jit = JitKernels::compile(&kernels).unwrap_or_else(|e| panic!("{e}\n{}", kernels[0]));
    Compiled { module, function: 0, groups, jit }
}

/// Lower function `name` of an already optimized module (every group must lower).
pub fn compile_function(module: Module, name: &str) -> Compiled {
    let function = module.functions.iter().position(|f| f.name == name).unwrap();
    let f = &module.functions[function];
    // Ops outside groups must be weight-derived (prepacking): the executor evaluates them
    // with the interpreter before the kernels run.
    let mut weight_derived: HashSet<ValueId> = f.weight_values().values().copied().collect();
    for o in f.op_order().unwrap() {
        let d = f.op(o).unwrap();
        if f.group(o).is_none() {
            assert!(
                d.operands.iter().all(|v| weight_derived.contains(v)),
                "op {o} ({}) is outside fusion groups and not weight-derived",
                d.op.name()
            );
            weight_derived.extend(d.results.iter().copied());
        }
    }
    let groups: Vec<LoweredGroup> = lower_function(&module.functions[function])
        .unwrap()
        .into_iter()
        .map(|(g, r)| r.unwrap_or_else(|e| panic!("group {g}: {e}")))
        .collect();
    let kernels: Vec<_> = groups.iter().map(|g| g.kernel.clone()).collect();
    let jit = JitKernels::compile(&kernels).unwrap();
    Compiled { module, function, groups, jit }
}

/// 64-byte aligned storage.
#[derive(Clone)]
struct Buf {
    dtype: DType,
    shape: Vec<usize>,
    words: Vec<[u64; 8]>,
    len: usize,
}

impl Buf {
    fn zeroed(dtype: DType, shape: Vec<usize>, len: usize) -> Buf {
        Buf { dtype, shape, words: vec![[0u64; 8]; len.div_ceil(64).max(1)], len }
    }
    fn from_tensor(t: &Tensor) -> Buf {
        let bytes = t.to_le_bytes().unwrap();
        let mut b = Buf::zeroed(t.dtype, t.shape.clone(), bytes.len());
        b.bytes_mut().copy_from_slice(&bytes);
        b
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: the words are plain data covering at least `len` bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, self.len) }
    }
    fn ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr() as *mut u8
    }
    fn to_tensor(&self) -> Tensor {
        Tensor::from_le_bytes(self.dtype, self.shape.clone(), self.bytes()).unwrap()
    }
}

fn storage_len(dtype: DType, shape: &[usize]) -> usize {
    let numel: usize = shape.iter().product();
    let last = shape.last().copied().unwrap_or(1) as u64;
    dtype.storage_bytes(numel as u64, last).unwrap() as usize
}

/// Run the compiled function on `inputs`.
pub fn run(c: &Compiled, inputs: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    run_with(c, inputs, &InlineWeights, &reference_table())
}

/// Run the compiled function with weights from `weights` and micro-kernels from `table`.
pub fn run_with(
    c: &Compiled,
    inputs: &[(String, Tensor)],
    weights: &dyn WeightProvider,
    table: &RuntimeFnTable,
) -> Vec<(String, Tensor)> {
    let f = &c.module.functions[c.function];
    let mut bindings: HashMap<String, i64> = HashMap::new();
    let mut values: HashMap<ValueId, Buf> = HashMap::new();
    for (name, v) in f.params() {
        let t = &inputs.iter().find(|(n, _)| n == name).unwrap().1;
        for (d, n) in f.ty(*v).shape.iter().zip(&t.shape) {
            if let Some(s) = d.as_symbol() {
                bindings.insert(s.to_string(), *n as i64);
            }
        }
        values.insert(*v, Buf::from_tensor(t));
    }
    for (name, v) in f.weight_values() {
        let decl = c.module.weight_decl(name).unwrap();
        values.insert(*v, Buf::from_tensor(&weights.load(decl).unwrap()));
    }
    let order = f.op_order().unwrap();
    let ungrouped: Vec<_> = order.iter().copied().filter(|o| f.group(*o).is_none()).collect();
    let mut done_groups: HashSet<usize> = HashSet::new();
    let mut done_ops: HashSet<ferrumc_ir::OpId> = HashSet::new();
    loop {
        let mut progress = false;
        for &o in &ungrouped {
            if done_ops.contains(&o) {
                continue;
            }
            let d = f.op(o).unwrap();
            if !d.operands.iter().all(|v| values.contains_key(v)) {
                continue;
            }
            let args: Vec<Tensor> = d.operands.iter().map(|v| values[v].to_tensor()).collect();
            let refs: Vec<&Tensor> = args.iter().collect();
            let tys: Vec<_> = d.results.iter().map(|r| f.ty(*r)).collect();
            let out = eval_single_op(&d.op, &refs, &tys).unwrap();
            for (r, t) in d.results.iter().zip(out) {
                values.insert(*r, Buf::from_tensor(&t));
            }
            done_ops.insert(o);
            progress = true;
        }
        for (gi, g) in c.groups.iter().enumerate() {
            if done_groups.contains(&gi) {
                continue;
            }
            let ready = g
                .buffer_values
                .iter()
                .zip(&g.kernel.buffers)
                .all(|(v, b)| b.role != BufferRole::Input || values.contains_key(v));
            if !ready {
                continue;
            }
            launch(c, gi, &mut values, &bindings, table);
            done_groups.insert(gi);
            progress = true;
        }
        if !progress {
            break;
        }
    }
    f.outputs()
        .iter()
        .map(|(name, v)| {
            let b = values.get(v).unwrap_or_else(|| panic!("output {name} never computed"));
            (name.clone(), b.to_tensor())
        })
        .collect()
}

fn launch(
    c: &Compiled,
    gi: usize,
    values: &mut HashMap<ValueId, Buf>,
    bindings: &HashMap<String, i64>,
    table: &RuntimeFnTable,
) {
    let f = &c.module.functions[c.function];
    let g = &c.groups[gi];
    for (v, b) in g.buffer_values.iter().zip(&g.kernel.buffers) {
        if b.role != BufferRole::Input && !values.contains_key(v) {
            let ty = f.ty(*v);
            let shape: Vec<usize> = ty.eval_shape(bindings).unwrap().into_iter().map(|d| d as usize).collect();
            let len = storage_len(ty.dtype, &shape);
            values.insert(*v, Buf::zeroed(ty.dtype, shape, len));
        }
    }
    let mut ptrs: Vec<*mut u8> = Vec::new();
    for v in &g.buffer_values {
        ptrs.push(values.get_mut(v).unwrap().ptr());
    }
    let dims: Vec<i64> = g.kernel.dims.iter().map(|d| bindings[d]).collect();
    let n = g.kernel.parallel_iterations(&dims).unwrap();
    let kf = c.jit.get(gi).unwrap();
    let mid = n / 2;
    // SAFETY: buffers are allocated with the sizes of their declared types, the kernel was
    // generated for exactly this binding of buffers and dims.
    unsafe {
        kf(ptrs.as_ptr(), dims.as_ptr(), table, 0, mid);
        kf(ptrs.as_ptr(), dims.as_ptr(), table, mid, n);
    }
}

/// `|a - b| ≤ rtol·|b| + rtol·(1 + max|b|)` elementwise (the absolute term covers
/// cancellation after transcendental steps); NaN only matches NaN, ∞ matches ∞.
pub fn assert_close(name: &str, got: &Tensor, want: &Tensor, rtol: f64) {
    assert_eq!(got.dtype, want.dtype, "{name}: dtype");
    assert_eq!(got.shape, want.shape, "{name}: shape");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w.iter().filter(|x| x.is_finite()).fold(0.0f64, |a, x| a.max(x.abs()));
    let atol = rtol * (1.0 + scale);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = if b.is_nan() {
            a.is_nan()
        } else if b.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= rtol * b.abs() + atol
        };
        assert!(ok, "{name}[{i}]: got {a}, want {b} (rtol {rtol}, atol {atol})");
    }
}

/// Compile `src`, run it and the interpreter on `inputs`, compare every output.
pub fn check(src: &str, inputs: &[(String, Tensor)], rtol: f64) {
    check_compiled(compile(src), inputs, rtol)
}

/// [`check`], asserting first that every op is in a fusion group (so no op is evaluated by
/// the executor's interpreter fallback).
pub fn check_kernels_only(src: &str, inputs: &[(String, Tensor)], rtol: f64) {
    let c = compile(src);
    let f = &c.module.functions[0];
    let ungrouped: Vec<_> = f.op_order().unwrap().into_iter().filter(|o| f.group(*o).is_none()).collect();
    assert!(ungrouped.is_empty(), "ops outside fusion groups: {ungrouped:?}");
    check_compiled(c, inputs, rtol)
}

fn check_compiled(c: Compiled, inputs: &[(String, Tensor)], rtol: f64) {
    let got = run(&c, inputs);
    let want = run_function(&c.module, &c.module.functions[0].name, inputs, &InlineWeights).unwrap();
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        assert_close(name, g, w, rtol);
    }
}

/// Deterministic pseudo-random numbers (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// An f32 tensor with values in `[lo, hi)` (rounded to f32).
    pub fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v = (0..n).map(|_| self.uniform(lo, hi) as f32 as f64).collect();
        Tensor::from_f64(DType::F32, shape.to_vec(), v).unwrap()
    }
}

// ---------------------------------------------------------------------------- reference table

/// Naive f64-accumulating reference implementations of the table entries.
pub fn reference_table() -> RuntimeFnTable {
    RuntimeFnTable {
        version: FN_TABLE_VERSION,
        sgemm: ref_sgemm,
        sgemm_packed: ref_sgemm_packed,
        sgemm_nt: ref_sgemm_nt,
        gemm_q8_0: ref_gemm_q8_0,
        gemm_q4_0: ref_gemm_q4_0,
        exp: ref_exp,
        tanh: ref_tanh,
        erf: ref_erf,
        attention_row: ref_attention_row,
        silu_mul: ref_silu_mul,
        gemm_i8: ref_gemm_i8,
        topk: ferrumc_runtime::ukernels::topk::topk,
        f64_math: ferrumc_runtime::ukernels::scalar_f64::SCALAR_MATH_F64,
        attention_row_masked: ref_attention_row_masked,
    }
}

/// Shared driver: `b_at(k, n)` reads the right operand.
///
/// # Safety
/// `a` covers `m` rows of `lda`, `c` covers `m` rows of `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    c: *mut f32,
    ldc: u64,
    acc: u32,
    b_at: &dyn Fn(u64, u64) -> f64,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for kk in 0..k {
                // SAFETY: in bounds per the contract.
                s += unsafe { *a.add((i * lda + kk) as usize) } as f64 * b_at(kk, j);
            }
            // SAFETY: in bounds per the contract.
            let cp = unsafe { c.add((i * ldc + j) as usize) };
            unsafe {
                *cp = if acc != 0 { (*cp as f64 + s) as f32 } else { s as f32 };
            }
        }
    }
}

unsafe extern "C" fn ref_sgemm(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    b: *const u8,
    ldb: u64,
    c: *mut f32,
    ldc: u64,
    acc: u32,
) {
    let b = b as *const f32;
    // SAFETY: forwarded contract; `b` covers `k` rows of `ldb`.
    unsafe { gemm_with(m, n, k, a, lda, c, ldc, acc, &|kk, j| *b.add((kk * ldb + j) as usize) as f64) }
}

unsafe extern "C" fn ref_sgemm_nt(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    w: *const u8,
    ldb: u64,
    c: *mut f32,
    ldc: u64,
    acc: u32,
) {
    let w = w as *const f32;
    // SAFETY: forwarded contract; `w` covers `n` rows of `ldb`.
    unsafe { gemm_with(m, n, k, a, lda, c, ldc, acc, &|kk, j| *w.add((j * ldb + kk) as usize) as f64) }
}

unsafe extern "C" fn ref_sgemm_packed(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    b: *const u8,
    _ldb: u64,
    c: *mut f32,
    ldc: u64,
    acc: u32,
) {
    let b = b as *const f32;
    // SAFETY: forwarded contract; `b` holds ⌈n/16⌉ panels of k×16.
    unsafe {
        gemm_with(m, n, k, a, lda, c, ldc, acc, &|kk, j| *b.add(((j / 16) * k * 16 + kk * 16 + j % 16) as usize) as f64)
    }
}

fn f16_at(p: *const u8) -> f64 {
    // SAFETY: callers pass a pointer to two readable bytes.
    let bits = unsafe { u16::from_le_bytes([*p, *p.add(1)]) };
    half::f16::from_bits(bits).to_f64()
}

unsafe extern "C" fn ref_gemm_q8_0(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    b: *const u8,
    _ldb: u64,
    c: *mut f32,
    ldc: u64,
    acc: u32,
) {
    let blocks = k / 32;
    let at = |kk: u64, j: u64| -> f64 {
        // SAFETY: row j of w has k/32 blocks of 34 bytes.
        unsafe {
            let blk = b.add(((j * blocks + kk / 32) * 34) as usize);
            f16_at(blk) * (*blk.add(2 + (kk % 32) as usize) as i8) as f64
        }
    };
    // SAFETY: forwarded contract.
    unsafe { gemm_with(m, n, k, a, lda, c, ldc, acc, &at) }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn ref_gemm_i8(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    b: *const i8,
    ldb: u64,
    c: *mut f32,
    ldc: u64,
    acc: u32,
    scale: *const f32,
) {
    // SAFETY: row j of w has `ldb` bytes, `scale` has n floats.
    let at = |kk: u64, j: u64| -> f64 {
        unsafe { f64::from(*b.add((j * ldb + kk) as usize)) * f64::from(*scale.add(j as usize)) }
    };
    // SAFETY: forwarded contract.
    unsafe { gemm_with(m, n, k, a, lda, c, ldc, acc, &at) }
}

unsafe extern "C" fn ref_gemm_q4_0(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    b: *const u8,
    _ldb: u64,
    c: *mut f32,
    ldc: u64,
    acc: u32,
) {
    let blocks = k / 32;
    let at = |kk: u64, j: u64| -> f64 {
        // SAFETY: row j of w has k/32 blocks of 18 bytes.
        unsafe {
            let blk = b.add(((j * blocks + kk / 32) * 18) as usize);
            let e = (kk % 32) as usize;
            let byte = *blk.add(2 + e % 16);
            let nib = if e < 16 { byte & 15 } else { byte >> 4 };
            f16_at(blk) * (nib as f64 - 8.0)
        }
    };
    // SAFETY: forwarded contract.
    unsafe { gemm_with(m, n, k, a, lda, c, ldc, acc, &at) }
}

unsafe fn map_array(x: *const f32, y: *mut f32, n: u64, f: fn(f64) -> f64) {
    for i in 0..n as usize {
        // SAFETY: caller guarantees n elements.
        unsafe { *y.add(i) = f(*x.add(i) as f64) as f32 };
    }
}

unsafe extern "C" fn ref_exp(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded.
    unsafe { map_array(x, y, n, f64::exp) }
}
unsafe extern "C" fn ref_tanh(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded.
    unsafe { map_array(x, y, n, f64::tanh) }
}
/// `x·σ(x)·z` in f64 (see `abi::BinaryArrayFn`; `y` may alias `x` or `z`).
unsafe extern "C" fn ref_silu_mul(x: *const f32, z: *const f32, y: *mut f32, n: u64) {
    for i in 0..n as usize {
        // SAFETY: the caller's contract; both inputs are read before `y[i]` is written.
        unsafe {
            let (xv, zv) = (f64::from(*x.add(i)), f64::from(*z.add(i)));
            *y.add(i) = (xv / (1.0 + (-xv).exp()) * zv) as f32;
        }
    }
}
/// Softmax attention of one query row in f64 (see `abi::AttentionRowFn`).
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn ref_attention_row(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    keys: u64,
    dk: u64,
    dv: u64,
    scale: f32,
    o: *mut f32,
) {
    // SAFETY: forwarded; no mask.
    unsafe { ref_attention_row_masked(q, k, v, std::ptr::null(), 0, keys, dk, dv, scale, o) }
}
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn ref_attention_row_masked(
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
) {
    let (keys, dk, dv) = (keys as usize, dk as usize, dv as usize);
    // SAFETY: the ABI's contract on the pointers and counts.
    let (q, k, v, o) = unsafe {
        (
            std::slice::from_raw_parts(q, dk),
            std::slice::from_raw_parts(k, keys * dk),
            std::slice::from_raw_parts(v, keys * dv),
            std::slice::from_raw_parts_mut(o, dv),
        )
    };
    // What key j's score gains, read independently of the runtime's `RowMask`.
    let added = |j: usize| -> f64 {
        // SAFETY: the ABI's contract: the mask covers `keys` elements of its kind.
        unsafe {
            match mask_kind {
                _ if mask.is_null() => 0.0,
                ferrumc_runtime::abi::MASK_ADDITIVE => f64::from(*mask.cast::<f32>().add(j)),
                _ if *mask.add(j) != 0 => 0.0,
                _ => f64::NEG_INFINITY,
            }
        }
    };
    let s: Vec<f64> = (0..keys)
        .map(|j| {
            let dot = (0..dk).map(|d| f64::from(q[d]) * f64::from(k[j * dk + d])).sum::<f64>();
            f64::from(scale) * dot + added(j)
        })
        .collect();
    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = s.iter().map(|x| if max == f64::NEG_INFINITY { 0.0 } else { (x - max).exp() }).collect();
    let sum: f64 = p.iter().sum();
    for (e, oe) in o.iter_mut().enumerate() {
        let acc: f64 = (0..keys).map(|j| p[j] * f64::from(v[j * dv + e])).sum();
        *oe = if sum > 0.0 { (acc / sum) as f32 } else { 0.0 };
    }
}
unsafe extern "C" fn ref_erf(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded.
    unsafe { map_array(x, y, n, ferrumc_ir::interp::erf) }
}
