//! The artifact: one versioned, checksummed file holding a compiled model.
//!
//! * [`format`]: constants and the little-endian encoding of every section.
//! * [`writer`]: [`ArtifactBuilder`], which produces the bytes (deterministically).
//! * [`reader`]: [`Artifact`], which validates bytes (checksum first) and maps the code
//!   executable.
//! * [`expr`]: [`Poly`], the symbolic size expressions.
//!
//! # Layout (format version 2)
//!
//! All integers are little-endian. `str` = `u32` byte length + UTF-8 bytes; `list<T>` =
//! `u32` count + that many `T`; `poly` = `list<term>`, `term` = `i64` coefficient +
//! `list<str>` sorted symbol names (canonical form, see [`Poly`]); `dtype` = one `u8` (see
//! [`DType`]). The same text, with tables, is in `docs/artifact-format.md`.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "FERRUMC\0"
//! 8       4     u32 format version (2)
//! 12      4     u32 runtime function-table version (abi::FN_TABLE_VERSION)
//! 16      ...   str ferrumc version, str target triple, list<str> required CPU features
//!               (sorted, deduplicated; e.g. "avx2", "avx512f", "fma")
//! ...     ...   section table: list<(u32 kind, u32 reserved = 0, u64 offset, u64 length)>,
//!               sorted by kind, each kind exactly once
//! ...     ...   zero padding, then the sections, each at a 64-byte aligned offset, in
//!               table order, zero padding between them
//! N-32    32    checksum of bytes [0, N-32): the XXH3 tree of `format::checksum` (v2: BLAKE3, v1: SHA-256)
//! ```
//!
//! Sections (kind number, name, payload):
//! 1. `CODE`: raw, relocation-free machine code; kernels are byte ranges of it.
//! 2. `KERNELS`: `list<(str name, u64 code offset, u64 code length)>`.
//! 3. `SCHEDULE`: `list<(str entry point, list<step>)>`, sorted by entry point name;
//!    `step` = `u32 kernel index, list<binding>, list<poly> dims, poly parallel extent,
//!    u64 grain` (the minimum iterations per chunk, 0 = runtime's choice); `binding` = `u8`
//!    tag + payload: 0 Arena (`poly` byte offset), 1 Weight (`u32` index), 2 Input (`u32`),
//!    3 Output (`u32`), 4 State (`u32`).
//! 4. `MEMORY_PLAN`: `list<(str name, u64 byte size)>` persistent state buffers (KV caches;
//!    zeroed at init and reset), then `list<(str entry point, list<bucket>)>` sorted by entry
//!    point name; `bucket` = `list<(str symbol, i64 max)>` bounds + `poly` arena byte size.
//!    A run uses the first bucket whose bounds all hold.
//! 5. `ENTRY_POINTS`: `list<(str name, list<sig> inputs, list<sig> outputs)>`, sorted by
//!    name; `sig` = `str name, dtype, list<poly> dims` (a static dim is a constant poly).
//!    Every symbol used by an entry point must appear as a plain dim of one of its inputs.
//! 6. `WEIGHTS`: `list<(str name, dtype, list<u64> shape, u64 offset, u64 length)>`; the
//!    offset is into `WEIGHT_DATA` and 64-byte aligned.
//! 7. `WEIGHT_DATA`: the weight bytes (starts 64-byte aligned in the file, so an mmap keeps
//!    them aligned).
//! 8. `METADATA`: `list<(str key, str value)>`, sorted by key, keys unique.
//!
//! Reading checks, in order: the magic, the checksum (nothing else is trusted before it
//! matches), the format version, the function-table version, the section table (bounds,
//! alignment, no overlap), every section's structure (every count and length checked against
//! the bytes left before anything is allocated), cross references, then the target
//! architecture and the host CPU's features.

pub mod expr;
pub mod format;
pub mod reader;
pub mod writer;

pub use expr::{EvalError, Poly, Term};
pub use reader::{Artifact, Placement};
pub use writer::ArtifactBuilder;

use std::collections::BTreeMap;
use std::fmt;

/// Element types of weights and tensors. The discriminant is the byte in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DType {
    /// IEEE f32.
    F32 = 1,
    /// IEEE f16.
    F16 = 2,
    /// bfloat16.
    BF16 = 3,
    /// i64.
    I64 = 4,
    /// i32.
    I32 = 5,
    /// u8.
    U8 = 6,
    /// i8.
    I8 = 7,
    /// One byte, 0 or 1.
    Bool = 8,
    /// GGML Q8_0: blocks of 32 values, 34 bytes each (f16 scale + 32 i8).
    Q8_0 = 9,
    /// GGML Q4_0: blocks of 32 values, 18 bytes each (f16 scale + 16 nibble bytes).
    Q4_0 = 10,
    /// IEEE f64 (added with function-table version 4).
    F64 = 11,
}

impl DType {
    /// Decodes the file byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        use DType::*;
        Some(match b {
            1 => F32,
            2 => F16,
            3 => BF16,
            4 => I64,
            5 => I32,
            6 => U8,
            7 => I8,
            8 => Bool,
            9 => Q8_0,
            10 => Q4_0,
            11 => F64,
            _ => return None,
        })
    }

    /// `(values per block, bytes per block)`; `(1, size)` for plain types.
    pub fn block(self) -> (u64, u64) {
        use DType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 => (1, 2),
            I64 | F64 => (1, 8),
            U8 | I8 | Bool => (1, 1),
            Q8_0 => (32, 34),
            Q4_0 => (32, 18),
        }
    }

    /// Whether values are stored one per element (not in quantized blocks).
    pub fn is_plain(self) -> bool {
        self.block().0 == 1
    }

    /// Bytes needed for `numel` values, `None` if `numel` is not a whole number of blocks or
    /// the size overflows.
    pub fn byte_len(self, numel: u64) -> Option<u64> {
        let (per, bytes) = self.block();
        if !numel.is_multiple_of(per) {
            return None;
        }
        (numel / per).checked_mul(bytes)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DType::*;
        f.write_str(match self {
            F32 => "f32",
            F16 => "f16",
            BF16 => "bf16",
            I64 => "i64",
            I32 => "i32",
            U8 => "u8",
            I8 => "i8",
            Bool => "bool",
            Q8_0 => "q8_0",
            Q4_0 => "q4_0",
            F64 => "f64",
        })
    }
}

/// A kernel: a byte range of the `CODE` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    /// Name (for diagnostics).
    pub name: String,
    /// Offset into `CODE`.
    pub code_offset: u64,
    /// Length in bytes.
    pub code_len: u64,
}

/// What a kernel's `buffers[i]` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The entry point's arena at this byte offset.
    Arena {
        /// Byte offset (symbolic).
        offset: Poly,
    },
    /// A weight (index into `WEIGHTS`).
    Weight {
        /// Index into the weight table.
        index: u32,
    },
    /// An input of the entry point (index into its inputs).
    Input {
        /// Index into the inputs.
        index: u32,
    },
    /// An output of the entry point (index into its outputs).
    Output {
        /// Index into the outputs.
        index: u32,
    },
    /// A persistent state buffer (index into the memory plan's states).
    State {
        /// Index into the states.
        index: u32,
    },
}

/// One kernel launch of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Index into the kernel table.
    pub kernel: u32,
    /// The kernel's `buffers` array.
    pub bindings: Vec<Binding>,
    /// The kernel's `dims` array (evaluated per run).
    pub dims: Vec<Poly>,
    /// Iterations of the parallel loop: the kernel runs `[0, extent)` in chunks.
    pub extent: Poly,
    /// Minimum iterations per chunk (0: the runtime chooses).
    pub grain: u64,
}

/// An arena size valid while every bound `symbol ≤ max` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// `(symbol, max)` conditions; empty = always applies.
    pub bounds: Vec<(String, i64)>,
    /// Arena size in bytes.
    pub arena_size: Poly,
}

/// A persistent buffer kept across runs (a KV cache), zeroed by init and reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// A named tensor in an entry point's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSig {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Dims: constant polys are static, others symbolic.
    pub dims: Vec<Poly>,
    /// For an integer input: the inclusive range `(lo, hi)` every element must lie in, which
    /// [`crate::model::Model::run`] checks before any kernel runs. The compiler records it
    /// for inputs used as gather indices (token and position ids), so an id past the table
    /// is an error naming the input, not a clamped read.
    pub range: Option<(i64, i64)>,
}

impl TensorSig {
    /// The shape as text, e.g. `[b, n, 64]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self.dims.iter().map(Poly::to_string).collect();
        format!("[{}]", dims.join(", "))
    }
}

/// An entry point's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    /// Name.
    pub name: String,
    /// Inputs, in binding order.
    pub inputs: Vec<TensorSig>,
    /// Outputs, in binding order.
    pub outputs: Vec<TensorSig>,
}

/// A weight: a byte range of `WEIGHT_DATA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightInfo {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<u64>,
    /// Offset into `WEIGHT_DATA` (64-byte aligned).
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Everything in an artifact except the code and weight bytes: what the builder declares and
/// the reader recovers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The compiler's version.
    pub ferrumc_version: String,
    /// Target triple of the machine code.
    pub target: String,
    /// Required CPU features (sorted, unique).
    pub cpu_features: Vec<String>,
    /// The function-table version the kernels were compiled against.
    pub fn_table_version: u32,
    /// Kernels.
    pub kernels: Vec<KernelInfo>,
    /// Schedules by entry point.
    pub schedules: BTreeMap<String, Vec<Step>>,
    /// Persistent state buffers.
    pub states: Vec<StateInfo>,
    /// Arena buckets by entry point.
    pub memory_plans: BTreeMap<String, Vec<Bucket>>,
    /// Entry points (sorted by name).
    pub entry_points: Vec<EntryPoint>,
    /// Weights.
    pub weights: Vec<WeightInfo>,
    /// Key/value metadata.
    pub metadata: BTreeMap<String, String>,
}
