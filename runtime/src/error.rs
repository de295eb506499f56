//! The runtime's typed errors: everything loading an artifact or running a model can report.
//!
//! Nothing a file or a caller supplies can make the runtime panic; it returns one of these.

use crate::artifact::DType;

/// An error loading an artifact or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The file does not start with `FERRUMC\0` (or is shorter than the magic).
    #[error("not a ferrumc artifact (bad magic)")]
    BadMagic,
    /// The checksum over the file does not match: truncated, corrupted or modified.
    #[error("artifact checksum mismatch: the file is truncated, corrupted or was modified")]
    Tampered,
    /// The artifact's format version is not the one this runtime reads.
    #[error("unsupported artifact format version {found} (this runtime reads version {supported})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this runtime reads.
        supported: u32,
    },
    /// The artifact was compiled against another runtime function-table layout.
    #[error("artifact needs runtime function table version {found} (this runtime has {supported})")]
    FnTableVersion {
        /// Version in the file (or in a caller-supplied table).
        found: u32,
        /// Version this runtime has.
        supported: u32,
    },
    /// The artifact's machine code is for another architecture.
    #[error("artifact targets `{artifact}` but this host is `{host}`")]
    WrongTarget {
        /// The artifact's target triple.
        artifact: String,
        /// The host architecture.
        host: String,
    },
    /// The host CPU lacks a feature the artifact's code needs.
    #[error("the host CPU lacks the `{0}` feature this artifact was compiled for")]
    MissingCpuFeature(String),
    /// A structurally invalid artifact (the checksum matched, so it was written wrong).
    #[error("malformed artifact ({section}): {reason}")]
    Malformed {
        /// The header or section concerned.
        section: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An input's shape disagrees with the entry point's signature or with other inputs.
    #[error("input `{input}`: expected shape {expected}, found {found}")]
    ShapeMismatch {
        /// The input's name.
        input: String,
        /// The expected shape (symbols resolved where known).
        expected: String,
        /// The supplied shape.
        found: String,
    },
    /// An element of an integer input lies outside the range its entry point accepts (a
    /// token id past the embedding table, say).
    #[error("input `{input}`: element {index} is {value}, outside the accepted range {lo}..={hi}")]
    ValueOutOfRange {
        /// The input's name.
        input: String,
        /// Flat index of the first offending element.
        index: usize,
        /// Its value.
        value: i64,
        /// Smallest accepted value.
        lo: i64,
        /// Largest accepted value.
        hi: i64,
    },
    /// An input has the wrong element type.
    #[error("input `{input}`: expected dtype {expected}, found {found}")]
    DTypeMismatch {
        /// The input's name.
        input: String,
        /// The declared dtype.
        expected: DType,
        /// The supplied dtype.
        found: DType,
    },
    /// The tensor's byte length does not match its shape and dtype.
    #[error("tensor `{name}`: {reason}")]
    InvalidTensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No entry point has this name.
    #[error("unknown entry point `{0}`")]
    UnknownEntryPoint(String),
    /// A declared input was not supplied.
    #[error("entry point `{entry}`: missing input `{input}`")]
    MissingInput {
        /// The entry point.
        entry: String,
        /// The missing input.
        input: String,
    },
    /// A supplied input is not declared (or supplied twice).
    #[error("entry point `{entry}`: unexpected input `{input}`")]
    UnexpectedInput {
        /// The entry point.
        entry: String,
        /// The unexpected input.
        input: String,
    },
    /// A symbolic size could not be evaluated (unbound symbol, overflow, negative size).
    #[error("entry point `{entry}`: {reason}")]
    BadSize {
        /// The entry point.
        entry: String,
        /// What went wrong.
        reason: String,
    },
    /// `run` was called without a runtime function table (see `Model::with_fn_table`).
    #[error("no runtime function table: call Model::with_fn_table before run")]
    NoFnTable,
    /// Reading the file or mapping memory failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
