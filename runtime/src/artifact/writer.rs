//! [`ArtifactBuilder`]: declares kernels, weights, entry points, schedules, the memory plan
//! and metadata, and serializes them into artifact bytes.
//!
//! Output is deterministic: the same calls give the same bytes. Where order carries no
//! meaning it is fixed by sorting (metadata keys, CPU features, entry points, schedules and
//! memory plans by entry name); kernels, weights and states keep their insertion order
//! because schedules refer to them by index. Padding is zeros. `build` validates its own
//! output with the reader's structural checks, so a builder never emits a file the runtime
//! would reject as malformed.

use super::format::{self, align_up, Enc, SectionKind, ALIGN, FORMAT_VERSION, MAGIC};
use super::{Bucket, DType, EntryPoint, KernelInfo, Manifest, StateInfo, Step, WeightInfo};
use crate::abi::FN_TABLE_VERSION;
use crate::error::{Result, RuntimeError};

/// Byte alignment of each kernel inside `CODE`.
const KERNEL_ALIGN: usize = 16;

/// Builds artifact bytes (see the module doc).
#[derive(Debug, Clone)]
pub struct ArtifactBuilder {
    manifest: Manifest,
    code: Vec<u8>,
    weight_data: Vec<u8>,
    format_version: u32,
}

impl ArtifactBuilder {
    /// An empty artifact for `target` (a target triple such as `x86_64-unknown-linux-gnu`),
    /// recording this crate's version as the ferrumc version.
    pub fn new(target: &str) -> Self {
        Self {
            manifest: Manifest {
                ferrumc_version: env!("CARGO_PKG_VERSION").to_string(),
                target: target.to_string(),
                fn_table_version: FN_TABLE_VERSION,
                ..Manifest::default()
            },
            code: Vec::new(),
            weight_data: Vec::new(),
            format_version: FORMAT_VERSION,
        }
    }

    /// Overrides the recorded ferrumc version (the compiler passes its own).
    pub fn ferrumc_version(&mut self, v: &str) -> &mut Self {
        self.manifest.ferrumc_version = v.to_string();
        self
    }

    /// Overrides the recorded function-table version (tests of version checks).
    pub fn fn_table_version(&mut self, v: u32) -> &mut Self {
        self.manifest.fn_table_version = v;
        self
    }

    /// Overrides the format version written in the header (tests of version checks; the
    /// result fails this runtime's own validation, so use [`ArtifactBuilder::build_unchecked`]).
    pub fn format_version(&mut self, v: u32) -> &mut Self {
        self.format_version = v;
        self
    }

    /// Requires a CPU feature (`"avx2"`, `"avx512f"`, `"fma"`, …) of the host.
    pub fn require_cpu_feature(&mut self, feature: &str) -> &mut Self {
        let f = &mut self.manifest.cpu_features;
        if let Err(i) = f.binary_search_by(|x| x.as_str().cmp(feature)) {
            f.insert(i, feature.to_string());
        }
        self
    }

    /// Sets a metadata key.
    pub fn metadata(&mut self, key: &str, value: &str) -> &mut Self {
        self.manifest.metadata.insert(key.to_string(), value.to_string());
        self
    }

    /// Appends a kernel's machine code; returns its index.
    pub fn add_kernel(&mut self, name: &str, code: &[u8]) -> u32 {
        self.code.resize(self.code.len().next_multiple_of(KERNEL_ALIGN), 0);
        let index = self.manifest.kernels.len() as u32;
        self.manifest.kernels.push(KernelInfo {
            name: name.to_string(),
            code_offset: self.code.len() as u64,
            code_len: code.len() as u64,
        });
        self.code.extend_from_slice(code);
        index
    }

    /// Appends a weight (bytes in the layout the kernels expect); returns its index. Fails if
    /// `bytes` does not hold exactly `shape`'s elements of `dtype`.
    pub fn add_weight(&mut self, name: &str, dtype: DType, shape: &[u64], bytes: &[u8]) -> Result<u32> {
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| dtype.byte_len(n)) != Some(bytes.len() as u64) {
            return Err(RuntimeError::InvalidTensor {
                name: name.to_string(),
                reason: format!("{} bytes do not hold a {dtype} tensor of shape {shape:?}", bytes.len()),
            });
        }
        self.weight_data.resize(self.weight_data.len().next_multiple_of(ALIGN as usize), 0);
        let index = self.manifest.weights.len() as u32;
        self.manifest.weights.push(WeightInfo {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            offset: self.weight_data.len() as u64,
            len: bytes.len() as u64,
        });
        self.weight_data.extend_from_slice(bytes);
        Ok(index)
    }

    /// Declares a persistent state buffer (KV cache) of `size` bytes; returns its index.
    pub fn add_state(&mut self, name: &str, size: u64) -> u32 {
        self.manifest.states.push(StateInfo { name: name.to_string(), size });
        (self.manifest.states.len() - 1) as u32
    }

    /// Declares (or replaces) an entry point, with its schedule and arena buckets.
    pub fn add_entry_point(&mut self, entry: EntryPoint, steps: Vec<Step>, buckets: Vec<Bucket>) -> &mut Self {
        let eps = &mut self.manifest.entry_points;
        self.manifest.schedules.insert(entry.name.clone(), steps);
        self.manifest.memory_plans.insert(entry.name.clone(), buckets);
        match eps.binary_search_by(|e| e.name.cmp(&entry.name)) {
            Ok(i) => eps[i] = entry,
            Err(i) => eps.insert(i, entry),
        }
        self
    }

    /// What has been declared so far.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Serializes and validates (structurally: everything but the host checks).
    pub fn build(&self) -> Result<Vec<u8>> {
        let bytes = self.build_unchecked();
        super::reader::parse(&bytes)?;
        Ok(bytes)
    }

    /// Serializes without validating (tests that need an invalid file).
    pub fn build_unchecked(&self) -> Vec<u8> {
        let m = &self.manifest;
        let mut sections: Vec<(SectionKind, Vec<u8>)> = Vec::new();
        for kind in SectionKind::ALL {
            let mut e = Enc::default();
            match kind {
                SectionKind::Code => e.buf.extend_from_slice(&self.code),
                SectionKind::Kernels => format::enc_kernels(&mut e, &m.kernels),
                SectionKind::Schedule => format::enc_schedules(&mut e, &m.schedules),
                SectionKind::MemoryPlan => format::enc_memory_plan(&mut e, &m.states, &m.memory_plans),
                SectionKind::EntryPoints => format::enc_entry_points(&mut e, &m.entry_points),
                SectionKind::Weights => format::enc_weights(&mut e, &m.weights),
                SectionKind::WeightData => e.buf.extend_from_slice(&self.weight_data),
                SectionKind::Metadata => format::enc_metadata(&mut e, &m.metadata),
            }
            sections.push((kind, e.buf));
        }

        let mut h = Enc::default();
        h.buf.extend_from_slice(&MAGIC);
        h.u32(self.format_version);
        h.u32(m.fn_table_version);
        h.str(&m.ferrumc_version);
        h.str(&m.target);
        h.count(m.cpu_features.len());
        for f in &m.cpu_features {
            h.str(f);
        }
        // Section table: 4 + 24 per entry.
        let table_end = h.buf.len() as u64 + 4 + 24 * sections.len() as u64;
        let mut offset = align_up(table_end);
        h.count(sections.len());
        let mut offsets = Vec::new();
        for (kind, payload) in &sections {
            h.u32(*kind as u32);
            h.u32(0);
            h.u64(offset);
            h.u64(payload.len() as u64);
            offsets.push(offset);
            offset = align_up(offset + payload.len() as u64);
        }
        let mut out = h.buf;
        for ((_, payload), off) in sections.iter().zip(offsets) {
            out.resize(off as usize, 0);
            out.extend_from_slice(payload);
        }
        let digest = format::checksum(&out);
        out.extend_from_slice(&digest);
        out
    }
}

/// Recomputes the trailing checksum of `bytes` after a deliberate edit (tests and tools that
/// patch headers). Does nothing if `bytes` is shorter than a checksum.
pub fn reseal(bytes: &mut [u8]) {
    let Some(body_len) = bytes.len().checked_sub(format::CHECKSUM_LEN) else { return };
    let digest = format::checksum(&bytes[..body_len]);
    bytes[body_len..].copy_from_slice(&digest);
}
