//! [`Model`]: a loaded artifact ready to run, in the shape of limen's `ComputeModel` (load
//! from a path or bytes, inspect metadata and entry points, `init` / `reset` / `drain`, run
//! an entry point with named tensors), plus the runtime's [`Tensor`] type.
//!
//! A run binds the symbols of the entry point's signature from the input shapes (a symbol is
//! bound by the first input dim that is exactly that symbol, and every dim is then checked
//! against its expression → [`RuntimeError::ShapeMismatch`]), evaluates the arena size (first
//! memory-plan bucket whose bounds hold), allocates the outputs (reusing the buffers of this
//! model's dropped output tensors, see `Recycler`) and executes the schedule:
//! per step it builds the kernel's `buffers` and `dims` arrays and calls the kernel over
//! `[0, extent)` in tiles shared by the model's thread team (`team`: the calling thread plus
//! spinning workers, each taking its own range of tiles, then stealing from the others'),
//! passing the caller's [`RuntimeFnTable`].

use crate::abi::{KernelFn, RuntimeFnTable, FN_TABLE_VERSION};
use crate::artifact::{Artifact, Binding, EntryPoint, Placement, Poly, TensorSig};
use crate::error::{Result, RuntimeError};
use std::collections::BTreeMap;
use std::path::Path;

mod team;
use team::Team;

pub use crate::artifact::DType;

/// An owned tensor: dtype, shape and little-endian element bytes.
///
/// The bytes are 64-byte aligned, so a tensor passed back to [`Model::run`] (a KV cache fed
/// from one decode step to the next) is bound in place, never copied; outputs are handed over
/// in the buffer the kernels wrote, not copied out.
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: AlignedBuf,
    len: usize,
    /// The pool of the model whose run produced this tensor: the buffer goes back there when
    /// the tensor is dropped (see [`Recycler`]).
    home: Option<std::sync::Weak<Recycler>>,
}

impl Drop for Tensor {
    fn drop(&mut self) {
        if let Some(pool) = self.home.take().and_then(|w| w.upgrade()) {
            pool.give_back(std::mem::replace(&mut self.data, AlignedBuf::empty()));
        }
    }
}

/// Output buffers of dropped tensors, kept by their [`Model`] for its later runs.
///
/// Outputs are handed over in the memory the kernels wrote, so every run needs output memory
/// of its own. Fresh memory costs: a 25 MB anonymous map for T = 128 logits paid ≈12 ms of
/// page faults on first touch, and a decode step's 61 small outputs (6 MB of KV cache),
/// allocated zeroed and freed together, cost ≈0.6 ms a step (Q8_0 SmolLM2 decode 6.25 →
/// 5.80 ms when reused). A kept buffer is handed out as it is, not zeroed: its bytes were
/// written before, and the kernels write every element of an output (each lowering computes
/// all of its result). Debug builds fill every output buffer, fresh or kept, with `0xFF`
/// bytes (NaN, -1, true) first, so that the differential tests, which run debug builds
/// against the interpreter, fail on any element a kernel would leave unwritten.
#[derive(Default)]
struct Recycler {
    maps: std::sync::Mutex<Vec<memmap2::MmapMut>>,
    blocks: std::sync::Mutex<SmallBuffers>,
}

/// Small buffers kept by a [`Recycler`].
#[derive(Default)]
struct SmallBuffers {
    /// By length in blocks.
    by_len: BTreeMap<usize, Vec<Vec<Block>>>,
    /// Their bytes in all.
    bytes: usize,
}

/// Maps a [`Recycler`] keeps at most (beyond that, dropped buffers are unmapped).
const RECYCLED_MAX: usize = 8;
/// Bytes of small buffers a [`Recycler`] keeps at most (beyond that, dropped ones are freed).
const RECYCLED_SMALL_BYTES: usize = 64 << 20;

impl Recycler {
    fn give_back(&self, buf: AlignedBuf) {
        match buf {
            AlignedBuf::Mapped { map, .. } => {
                let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
                if maps.len() < RECYCLED_MAX {
                    maps.push(map);
                }
            }
            AlignedBuf::Blocks(b) if !b.is_empty() => {
                let mut kept = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
                let bytes = b.len() * 64;
                if kept.bytes + bytes <= RECYCLED_SMALL_BYTES {
                    kept.bytes += bytes;
                    kept.by_len.entry(b.len()).or_default().push(b);
                }
            }
            AlignedBuf::Blocks(_) => {}
        }
    }

    /// An output buffer of `bytes`: a kept one that holds it (a map: the smallest; small
    /// buffers: one of exactly this length, as runs repeat their shapes), else a fresh zeroed
    /// one. See the type's doc for why a kept one is not zeroed.
    fn output(&self, bytes: usize) -> Result<AlignedBuf> {
        let mut buf = self.kept(bytes).map_or_else(|| Self::fresh(bytes), Ok)?;
        if cfg!(debug_assertions) {
            buf.fill(0xFF);
        }
        Ok(buf)
    }

    fn kept(&self, bytes: usize) -> Option<AlignedBuf> {
        let len = bytes.div_ceil(64) * 64;
        if len >= MAP_THRESHOLD {
            let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
            let best = (0..maps.len()).filter(|&i| maps[i].len() >= len).min_by_key(|&i| maps[i].len())?;
            return Some(AlignedBuf::Mapped { map: maps.swap_remove(best), len });
        }
        let mut kept = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let b = kept.by_len.get_mut(&(len / 64)).and_then(Vec::pop)?;
        kept.bytes -= len;
        Some(AlignedBuf::Blocks(b))
    }

    fn fresh(bytes: usize) -> Result<AlignedBuf> {
        let buf = AlignedBuf::zeroed(bytes)?;
        // Transparent huge pages where the kernel offers them on request: a 2 MiB page faults
        // in once instead of 512 times (a 25 MB buffer: ≈2.5 ms instead of ≈12 ms here).
        // Outputs only: the kernels write all of an output, so its huge pages hold no more
        // memory than small ones would, unlike the arena, planned for the largest shapes and
        // touched only in part. Only advice: refused or unsupported, 4 KiB pages remain.
        #[cfg(target_os = "linux")]
        if let AlignedBuf::Mapped { map, len } = &buf {
            if *len >= HUGE_PAGE {
                let _ = map.advise(memmap2::Advice::HugePage);
            }
        }
        Ok(buf)
    }
}

impl Clone for Tensor {
    fn clone(&self) -> Self {
        // `from_bytes` only fails when memory cannot be mapped; that aborts like any failed
        // allocation of a clone.
        let data = AlignedBuf::from_bytes(self.bytes()).unwrap_or_else(|e| panic!("cannot clone a tensor: {e}"));
        Self { dtype: self.dtype, shape: self.shape.clone(), data, len: self.len, home: None }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.dtype == other.dtype && self.shape == other.shape && self.bytes() == other.bytes()
    }
}

impl Eq for Tensor {}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("bytes", &self.len)
            .finish()
    }
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn check_len(name: &str, dtype: DType, shape: &[usize], len: usize) -> Result<()> {
    let want = numel(shape).and_then(|n| dtype.byte_len(n as u64));
    if !dtype.is_plain() || want != Some(len as u64) {
        return Err(RuntimeError::InvalidTensor {
            name: name.to_string(),
            reason: format!("{len} bytes do not hold a {dtype} tensor of shape {shape:?}"),
        });
    }
    Ok(())
}

impl Tensor {
    /// A tensor from raw little-endian bytes (copied into aligned memory); fails if the
    /// length does not match.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Self> {
        check_len("tensor", dtype, &shape, data.len())?;
        Ok(Self { dtype, shape, len: data.len(), data: AlignedBuf::from_bytes(&data)?, home: None })
    }

    /// An f32 tensor.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Result<Self> {
        Self::new(DType::F32, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// An i64 tensor.
    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Result<Self> {
        Self::new(DType::I64, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Raw bytes (64-byte aligned).
    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice(self.len)
    }

    /// The values if this is an f32 tensor.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.dtype == DType::F32)
            .then(|| self.bytes().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// The values if this is an i64 tensor.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        (self.dtype == DType::I64).then(|| {
            self.bytes()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        })
    }

    /// A borrowed view.
    pub fn view(&self) -> TensorView<'_> {
        TensorView { dtype: self.dtype, shape: &self.shape, data: self.bytes() }
    }
}

/// A borrowed tensor passed to [`Model::run`].
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: &'a [usize],
    /// Little-endian element bytes.
    pub data: &'a [u8],
}

/// 64 bytes, 64-byte aligned: the unit of [`AlignedBuf`].
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

/// Buffers from this size on are anonymous memory maps: zero pages the kernel hands out
/// lazily, so an arena planned for the largest allowed shapes costs address space, not
/// memory or start-up time, until a run touches it.
const MAP_THRESHOLD: usize = 1 << 20;

/// What an empty tensor (zero elements) is bound to: 64 readable zero bytes, never written.
/// Kernels may load element 0 of any buffer they read, even one that is empty at run time
/// (a select evaluates both branches of a concat of an empty KV cache), so an empty
/// binding must not be a dangling pointer; no kernel writes an empty output.
#[repr(C, align(64))]
struct EmptyBinding([u8; 64]);

static EMPTY_BINDING: EmptyBinding = EmptyBinding([0; 64]);

fn empty_binding() -> *mut u8 {
    // The ABI passes `*mut u8`; the static is read-only memory, and writes of zero elements
    // are none.
    std::ptr::addr_of!(EMPTY_BINDING).cast::<u8>().cast_mut()
}

/// Size of an x86-64 / aarch64 transparent huge page; maps this large are advised to use them.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// Zeroed, 64-byte aligned scratch memory (arena, states, outputs, misaligned inputs): a
/// vector of aligned blocks when small, an anonymous map (page aligned) when large. No
/// `unsafe` is needed for either, except to view the blocks as bytes.
enum AlignedBuf {
    Blocks(Vec<Block>),
    Mapped { map: memmap2::MmapMut, len: usize },
}

impl AlignedBuf {
    fn empty() -> Self {
        Self::Blocks(Vec::new())
    }
    fn zeroed(bytes: usize) -> Result<Self> {
        let len = bytes.div_ceil(64) * 64;
        if len < MAP_THRESHOLD {
            return Ok(Self::Blocks(vec![Block([0; 64]); len / 64]));
        }
        Ok(Self::Mapped { map: memmap2::MmapMut::map_anon(len)?, len })
    }
    fn len(&self) -> usize {
        match self {
            Self::Blocks(b) => b.len() * 64,
            Self::Mapped { len, .. } => *len,
        }
    }
    fn from_bytes(data: &[u8]) -> Result<Self> {
        let mut b = Self::zeroed(data.len())?;
        match &mut b {
            Self::Blocks(blocks) => {
                for (blk, chunk) in blocks.iter_mut().zip(data.chunks(64)) {
                    blk.0[..chunk.len()].copy_from_slice(chunk);
                }
            }
            Self::Mapped { map, .. } => map[..data.len()].copy_from_slice(data),
        }
        Ok(b)
    }
    /// The first `len` bytes (at most [`AlignedBuf::len`]).
    fn as_slice(&self, len: usize) -> &[u8] {
        match self {
            Self::Blocks(blocks) => {
                let len = len.min(blocks.len() * 64);
                // SAFETY: `Block` is `repr(C)` around `[u8; 64]` (size 64, no padding), so the
                // blocks are `blocks.len() * 64` initialised bytes; the slice borrows them.
                unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), len) }
            }
            Self::Mapped { map, len: mapped } => &map[..len.min(*mapped)],
        }
    }
    fn clear(&mut self) {
        self.fill(0);
    }
    fn fill(&mut self, byte: u8) {
        match self {
            Self::Blocks(blocks) => blocks.fill(Block([byte; 64])),
            Self::Mapped { map, len } => map[..*len].fill(byte),
        }
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        match self {
            Self::Blocks(blocks) => blocks.as_mut_ptr().cast(),
            Self::Mapped { map, .. } => map.as_mut_ptr(),
        }
    }
}

/// One kernel launch shared by the worker threads.
struct Launch {
    f: KernelFn,
    buffers: Vec<*mut u8>,
    dims: Vec<i64>,
    table: *const RuntimeFnTable,
}

// SAFETY: the pointers refer to buffers (arena, states, weights, inputs, outputs, the fn
// table) that `Model::run` keeps alive and does not touch until every tile of the launch has
// run (`Team::run` returns only then; a worker may drop its `Arc` of the launch later, but
// never calls it once every tile has been claimed); by the kernel ABI, tiles write disjoint
// memory, so sharing across threads is what the kernel was compiled for.
unsafe impl Send for Launch {}
// SAFETY: as for `Send`; the struct itself is only read.
unsafe impl Sync for Launch {}

impl Launch {
    fn call(&self, begin: u64, end: u64) {
        // SAFETY: `f` is a kernel of the loaded artifact (validated, mapped executable; see
        // `Artifact::kernel_fn`) or a caller's override with the same ABI; `buffers` holds
        // exactly the step's bindings, each pointing at live, 64-byte aligned memory of the
        // sizes the compiler planned (arena sized by the memory plan, outputs by their
        // signatures, inputs checked against theirs); `dims` holds the step's dims; `table`
        // is a live table of the version the artifact was compiled against; `[begin, end)`
        // is within the step's extent.
        unsafe { (self.f)(self.buffers.as_ptr(), self.dims.as_ptr(), self.table, begin, end) }
    }
}

/// A loaded model (see the module doc).
pub struct Model {
    artifact: Artifact,
    table: Option<Box<RuntimeFnTable>>,
    overrides: BTreeMap<u32, KernelFn>,
    arenas: BTreeMap<String, AlignedBuf>,
    states: Option<Vec<AlignedBuf>>,
    threads: usize,
    team: Option<Team>,
    profile: Option<Profile>,
    recycled: std::sync::Arc<Recycler>,
}

/// Time spent per schedule step, collected when profiling is on ([`Model::with_profiling`] or
/// `FERRUMC_PROFILE=1`): keyed by entry point and step index.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    steps: BTreeMap<(String, usize), StepTime>,
    /// Whether [`Model`]'s `Drop` prints the table (set by `FERRUMC_PROFILE=1`).
    print_on_drop: bool,
}

/// One step's accumulated time.
#[derive(Debug, Default, Clone)]
pub struct StepTime {
    /// Kernel name.
    pub kernel: String,
    /// Times the step ran.
    pub calls: u64,
    /// Wall time in all, nanoseconds.
    pub total_ns: u128,
    /// Threads the last call's tiles were split among (1: ran on the calling thread alone).
    pub chunks: u64,
}

impl Profile {
    /// `(entry, step, time)` rows sorted by total time, largest first.
    pub fn rows(&self) -> Vec<(&str, usize, &StepTime)> {
        let mut rows: Vec<_> = self.steps.iter().map(|((e, i), t)| (e.as_str(), *i, t)).collect();
        rows.sort_by(|a, b| b.2.total_ns.cmp(&a.2.total_ns).then(a.0.cmp(b.0)).then(a.1.cmp(&b.1)));
        rows
    }

    /// A table of the `top` most expensive steps, with each entry point's total.
    pub fn report(&self, top: usize) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut totals: BTreeMap<&str, u128> = BTreeMap::new();
        for ((e, _), t) in &self.steps {
            *totals.entry(e.as_str()).or_default() += t.total_ns;
        }
        for (e, t) in &totals {
            let _ = writeln!(out, "entry `{e}`: {:.3} ms in kernels in all", *t as f64 / 1e6);
        }
        let _ = writeln!(
            out,
            "{:<10} {:>5} {:<28} {:>7} {:>6} {:>11} {:>10} {:>6}",
            "entry", "step", "kernel", "calls", "chunks", "total ms", "mean us", "share"
        );
        for (e, i, t) in self.rows().into_iter().take(top) {
            let share = 100.0 * t.total_ns as f64 / totals[e].max(1) as f64;
            let _ = writeln!(
                out,
                "{e:<10} {i:>5} {:<28} {:>7} {:>6} {:>11.3} {:>10.1} {share:>5.1}%",
                t.kernel,
                t.calls,
                t.chunks,
                t.total_ns as f64 / 1e6,
                t.total_ns as f64 / 1e3 / t.calls.max(1) as f64
            );
        }
        out
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("artifact", &self.artifact).finish_non_exhaustive()
    }
}

impl Model {
    /// Loads (memory-maps) and validates the artifact at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::from_artifact(Artifact::open(path)?))
    }

    /// Loads and validates the artifact at `path` into the given placement
    /// ([`Placement::HugePages`]: a copy on huge pages, for faster weight streaming).
    pub fn load_with(path: impl AsRef<Path>, placement: Placement) -> Result<Self> {
        Ok(Self::from_artifact(Artifact::open_with(path, placement)?))
    }

    /// Validates artifact bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(Self::from_artifact(Artifact::from_bytes(bytes)?))
    }

    /// Wraps a validated artifact.
    pub fn from_artifact(artifact: Artifact) -> Self {
        Self {
            artifact,
            table: None,
            overrides: BTreeMap::new(),
            arenas: BTreeMap::new(),
            states: None,
            threads: 0,
            team: None,
            recycled: std::sync::Arc::default(),
            profile: std::env::var_os("FERRUMC_PROFILE")
                .is_some_and(|v| v != "0" && !v.is_empty())
                .then(|| Profile { print_on_drop: true, ..Profile::default() }),
        }
    }

    /// Collects the wall time of every schedule step (see [`Model::profile`]); off by default
    /// (or on with `FERRUMC_PROFILE=1`, which also prints the table to stderr when the model
    /// is dropped). When off, a run pays one branch per step.
    pub fn with_profiling(mut self, on: bool) -> Self {
        self.profile = on.then(Profile::default);
        self
    }

    /// The collected step times (`None` when profiling is off).
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    /// Forgets the collected step times (e.g. after warm-up runs).
    pub fn clear_profile(&mut self) {
        if let Some(p) = &mut self.profile {
            p.steps.clear();
        }
    }

    /// Supplies the runtime function table passed to every kernel (required before `run`).
    pub fn with_fn_table(mut self, table: RuntimeFnTable) -> Result<Self> {
        if table.version != FN_TABLE_VERSION {
            return Err(RuntimeError::FnTableVersion { found: table.version, supported: FN_TABLE_VERSION });
        }
        self.table = Some(Box::new(table));
        Ok(self)
    }

    /// Runs kernels on `threads` threads in all, the caller's included (default: the host's
    /// available parallelism). The workers start at `init` (or the first run).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self.team = None;
        self
    }

    /// Threads kernels run on (after `init`; the configured or default count before).
    pub fn threads(&self) -> usize {
        match &self.team {
            Some(t) => t.threads(),
            None if self.threads > 0 => self.threads,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Testing and debugging API: runs `f` instead of the artifact's kernel `index` (e.g. a
    /// Rust `extern "C"` reference implementation). Fails if `index` is out of range.
    pub fn with_kernel_override(mut self, index: u32, f: KernelFn) -> Result<Self> {
        if index as usize >= self.artifact.manifest().kernels.len() {
            return Err(RuntimeError::Malformed {
                section: "KERNELS",
                reason: format!("override of kernel {index}, which does not exist"),
            });
        }
        self.overrides.insert(index, f);
        Ok(self)
    }

    /// The artifact.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    /// Key/value metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.artifact.manifest().metadata
    }

    /// Entry points with their I/O signatures (sorted by name).
    pub fn entry_points(&self) -> &[EntryPoint] {
        &self.artifact.manifest().entry_points
    }

    /// Starts the worker threads, allocates the persistent state buffers (zeroed) and, for
    /// every entry point, an arena
    /// of the largest size its bounded buckets can need (buckets whose size has unbounded
    /// symbols are allocated lazily, at the first run that needs them). Idempotent.
    pub fn init(&mut self) -> Result<()> {
        if self.team.is_none() {
            self.team = Some(Team::new(self.threads())?);
        }
        if self.states.is_none() {
            let m = self.artifact.manifest();
            let mut states = Vec::new();
            for s in &m.states {
                let size = usize::try_from(s.size).map_err(|_| RuntimeError::BadSize {
                    entry: String::new(),
                    reason: format!("state `{}` of {} bytes does not fit in memory", s.name, s.size),
                })?;
                states.push(AlignedBuf::zeroed(size)?);
            }
            self.states = Some(states);
        }
        let m = self.artifact.manifest();
        for (entry, buckets) in &m.memory_plans {
            let mut max = 0i64;
            for b in buckets {
                let bound = |s: &str| b.bounds.iter().find(|(n, _)| n == s).map(|(_, v)| *v);
                if let Ok(v) = b.arena_size.eval_with(bound) {
                    max = max.max(v);
                }
            }
            let max = usize::try_from(max).unwrap_or(0);
            let arena = self.arenas.entry(entry.clone()).or_insert_with(AlignedBuf::empty);
            if arena.len() < max {
                *arena = AlignedBuf::zeroed(max)?;
            }
        }
        Ok(())
    }

    /// Resets state to the baseline: zeroes the persistent state buffers (KV caches).
    pub fn reset(&mut self) -> Result<()> {
        if let Some(states) = &mut self.states {
            states.iter_mut().for_each(AlignedBuf::clear);
        }
        Ok(())
    }

    /// Waits for outstanding work. Runs are synchronous on the CPU, so there never is any.
    pub fn drain(&mut self) -> Result<()> {
        Ok(())
    }

    /// Runs entry point `entry` on named inputs; returns the outputs in signature order.
    ///
    /// Inputs may come in any order; inputs not 64-byte aligned are copied. The arena is
    /// scratch: its contents are not cleared between runs (state buffers are what persists by
    /// design). Errors leave the model usable.
    pub fn run(&mut self, entry: &str, inputs: &[(&str, TensorView<'_>)]) -> Result<Vec<(String, Tensor)>> {
        self.init()?;
        let table: *const RuntimeFnTable = match &self.table {
            Some(t) => &**t,
            None => return Err(RuntimeError::NoFnTable),
        };
        let m = self.artifact.manifest();
        let ep = m
            .entry_points
            .iter()
            .find(|e| e.name == entry)
            .ok_or_else(|| RuntimeError::UnknownEntryPoint(entry.to_string()))?;
        let views = match_inputs(ep, inputs)?;
        let syms = bind_symbols(ep, &views)?;
        let bad = |reason: String| RuntimeError::BadSize { entry: entry.to_string(), reason };
        let eval = |p: &Poly| p.eval(&syms).map_err(|e| bad(e.to_string()));
        let eval_size = |p: &Poly, what: &str| -> Result<usize> {
            let v = eval(p)?;
            usize::try_from(v).map_err(|_| bad(format!("{what} `{p}` evaluates to {v}")))
        };

        // Outputs.
        let mut out_shapes = Vec::new();
        let mut outs = Vec::new();
        for o in &ep.outputs {
            let shape = o.dims.iter().map(|d| eval_size(d, "output dim")).collect::<Result<Vec<_>>>()?;
            let bytes = numel(&shape).and_then(|n| o.dtype.byte_len(n as u64)).and_then(|b| usize::try_from(b).ok());
            let bytes = bytes.ok_or_else(|| bad(format!("output `{}` of shape {shape:?} is too large", o.name)))?;
            outs.push(self.recycled.output(bytes)?);
            out_shapes.push((shape, bytes));
        }

        // Arena.
        let buckets = &m.memory_plans[&ep.name];
        let bucket = buckets
            .iter()
            .find(|b| b.bounds.iter().all(|(s, max)| syms.get(s).is_some_and(|v| v <= max)))
            .ok_or_else(|| bad(format!("no memory-plan bucket covers the bindings {syms:?}")))?;
        let arena_size = eval_size(&bucket.arena_size, "arena size")?;
        let arena = self.arenas.entry(ep.name.clone()).or_insert_with(AlignedBuf::empty);
        if arena.len() < arena_size {
            *arena = AlignedBuf::zeroed(arena_size)?;
        }
        let arena_ptr = arena.as_mut_ptr();

        // Inputs not 64-byte aligned are copied.
        let mut copies: Vec<Option<AlignedBuf>> = views
            .iter()
            .map(|v| {
                (!(v.data.as_ptr() as usize).is_multiple_of(64)).then(|| AlignedBuf::from_bytes(v.data)).transpose()
            })
            .collect::<Result<_>>()?;
        let in_ptrs: Vec<*mut u8> = views
            .iter()
            .zip(&mut copies)
            .map(|(v, c)| match c {
                Some(c) => c.as_mut_ptr(),
                None if v.data.is_empty() => empty_binding(),
                // Kernels never write inputs (compiler contract); the pointer type is the ABI's.
                None => v.data.as_ptr().cast_mut(),
            })
            .collect();
        let out_ptrs: Vec<*mut u8> =
            outs.iter_mut().map(|o| if o.len() == 0 { empty_binding() } else { o.as_mut_ptr() }).collect();
        let arena_ptr = if arena_size == 0 { empty_binding() } else { arena_ptr };
        let state_ptrs: Vec<*mut u8> =
            self.states.iter_mut().flat_map(|s| s.iter_mut().map(AlignedBuf::as_mut_ptr)).collect();

        for (si, step) in m.schedules[&ep.name].iter().enumerate() {
            let f = match self.overrides.get(&step.kernel) {
                Some(f) => *f,
                None => self.artifact.kernel_fn(step.kernel as usize).ok_or_else(|| RuntimeError::Malformed {
                    section: "KERNELS",
                    reason: format!("kernel {} has no code", step.kernel),
                })?,
            };
            let mut buffers = Vec::with_capacity(step.bindings.len());
            for b in &step.bindings {
                // Indices were validated at load.
                buffers.push(match b {
                    Binding::Arena { offset } => {
                        let off = eval_size(offset, "arena offset")?;
                        if off > arena_size {
                            return Err(bad(format!("step {si}: arena offset {off} beyond the arena ({arena_size})")));
                        }
                        arena_ptr.wrapping_add(off)
                    }
                    Binding::Weight { index } => {
                        // Weights are mapped read-only; kernels never write them.
                        self.artifact.weight_ptr(*index as usize).unwrap_or(std::ptr::null()).cast_mut()
                    }
                    Binding::Input { index } => in_ptrs[*index as usize],
                    Binding::Output { index } => out_ptrs[*index as usize],
                    Binding::State { index } => state_ptrs[*index as usize],
                });
            }
            let dims = step.dims.iter().map(eval).collect::<Result<Vec<_>>>()?;
            let extent = eval_size(&step.extent, "parallel extent")? as u64;
            let launch = Launch { f, buffers, dims, table };
            let team = self.team.as_ref().ok_or_else(|| RuntimeError::Io(std::io::Error::other("no worker team")))?;
            if extent > 0 {
                match &mut self.profile {
                    None => {
                        team.run(launch, extent, step.grain);
                    }
                    Some(p) => {
                        let start = std::time::Instant::now();
                        let used = team.run(launch, extent, step.grain);
                        let t = p.steps.entry((ep.name.clone(), si)).or_default();
                        if t.kernel.is_empty() {
                            t.kernel = m.kernels.get(step.kernel as usize).map(|k| k.name.clone()).unwrap_or_default();
                        }
                        t.calls += 1;
                        t.total_ns += start.elapsed().as_nanos();
                        t.chunks = used;
                    }
                }
            }
        }
        drop(copies);

        Ok(ep
            .outputs
            .iter()
            .zip(outs)
            .zip(out_shapes)
            .map(|((o, buf), (shape, bytes))| {
                let home = Some(std::sync::Arc::downgrade(&self.recycled));
                (o.name.clone(), Tensor { dtype: o.dtype, shape, data: buf, len: bytes, home })
            })
            .collect())
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if let Some(p) = self.profile.as_ref().filter(|p| p.print_on_drop && !p.steps.is_empty()) {
            eprint!("ferrumc profile (FERRUMC_PROFILE):\n{}", p.report(40));
        }
    }
}

/// Orders the supplied inputs as the signature declares them, checking names and dtypes.
fn match_inputs<'a>(ep: &EntryPoint, inputs: &[(&str, TensorView<'a>)]) -> Result<Vec<TensorView<'a>>> {
    let mut slots: Vec<Option<TensorView<'a>>> = vec![None; ep.inputs.len()];
    for (name, view) in inputs {
        let unexpected = || RuntimeError::UnexpectedInput { entry: ep.name.clone(), input: name.to_string() };
        let i = ep.inputs.iter().position(|s| s.name == *name).ok_or_else(unexpected)?;
        if slots[i].replace(*view).is_some() {
            return Err(unexpected());
        }
    }
    ep.inputs
        .iter()
        .zip(slots)
        .map(|(sig, v)| {
            let v = v.ok_or_else(|| RuntimeError::MissingInput { entry: ep.name.clone(), input: sig.name.clone() })?;
            if v.dtype != sig.dtype {
                return Err(RuntimeError::DTypeMismatch {
                    input: sig.name.clone(),
                    expected: sig.dtype,
                    found: v.dtype,
                });
            }
            check_len(&sig.name, v.dtype, v.shape, v.data.len())?;
            if let Some((lo, hi)) = sig.range {
                check_range(&sig.name, &v, lo, hi)?;
            }
            Ok(v)
        })
        .collect()
}

/// Every element of the integer tensor `v` lies in `lo..=hi`.
fn check_range(name: &str, v: &TensorView<'_>, lo: i64, hi: i64) -> Result<()> {
    let out =
        |index: usize, value: i64| RuntimeError::ValueOutOfRange { input: name.to_string(), index, value, lo, hi };
    let bad = match v.dtype {
        DType::I64 => v
            .data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .enumerate()
            .find(|(_, x)| !(lo..=hi).contains(x)),
        DType::I32 => v
            .data
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .enumerate()
            .find(|(_, x)| !(lo..=hi).contains(x)),
        _ => None,
    };
    match bad {
        Some((index, value)) => Err(out(index, value)),
        None => Ok(()),
    }
}

fn resolved_shape(sig: &TensorSig, syms: &BTreeMap<String, i64>) -> String {
    let dims: Vec<String> =
        sig.dims.iter().map(|d| d.eval(syms).map(|v| v.to_string()).unwrap_or_else(|_| d.to_string())).collect();
    format!("[{}]", dims.join(", "))
}

/// Binds every symbol from the first input dim that is exactly that symbol, then checks every
/// input dim against its expression.
fn bind_symbols(ep: &EntryPoint, views: &[TensorView<'_>]) -> Result<BTreeMap<String, i64>> {
    let mut syms = BTreeMap::new();
    let mismatch = |sig: &TensorSig, v: &TensorView<'_>, syms: &BTreeMap<String, i64>| RuntimeError::ShapeMismatch {
        input: sig.name.clone(),
        expected: resolved_shape(sig, syms),
        found: format!("{:?}", v.shape),
    };
    for (sig, v) in ep.inputs.iter().zip(views) {
        if sig.dims.len() != v.shape.len() {
            return Err(mismatch(sig, v, &syms));
        }
        for (d, &n) in sig.dims.iter().zip(v.shape) {
            if let Some(s) = d.as_symbol() {
                let n = i64::try_from(n).map_err(|_| mismatch(sig, v, &syms))?;
                syms.entry(s.to_string()).or_insert(n);
            }
        }
    }
    for (sig, v) in ep.inputs.iter().zip(views) {
        for (d, &n) in sig.dims.iter().zip(v.shape) {
            if d.eval(&syms).ok().and_then(|e| usize::try_from(e).ok()) != Some(n) {
                return Err(mismatch(sig, v, &syms));
            }
        }
    }
    Ok(syms)
}
