//! [`ArtifactBuilder`]: declares kernels, weights, entry points, schedules, the memory plan
//! and metadata, and serializes them into artifact bytes.
//!
//! Output is deterministic: the same calls give the same bytes. Where order carries no
//! meaning it is fixed by sorting (metadata keys, CPU features, entry points, schedules and
//! memory plans by entry name); kernels, weights and states keep their insertion order
//! because schedules refer to them by index. Padding is zeros. `build` validates its own
//! output with the reader's structural checks, so a builder never emits a file the runtime
//! would reject as malformed.
//!
//! Weight bytes are stored once by content: a weight whose bytes equal an earlier weight's
//! (found by a BLAKE3 hash, confirmed by comparing the bytes) gets its own table entry (name,
//! dtype, shape) pointing at the earlier bytes. Each weight's bytes are kept in their own
//! buffer until `build`, which copies them into the output once.

use super::format::{self, align_up, Enc, SectionKind, ALIGN, CHECKSUM_LEN, FORMAT_VERSION, MAGIC};
use super::{Bucket, DType, EntryPoint, KernelInfo, Manifest, StateInfo, Step, WeightInfo};
use crate::abi::FN_TABLE_VERSION;
use crate::error::{Result, RuntimeError};
use std::collections::HashMap;
use std::io::Write;

/// Byte alignment of each kernel inside `CODE`.
const KERNEL_ALIGN: usize = 16;

/// Builds artifact bytes (see the module doc).
#[derive(Debug, Clone)]
pub struct ArtifactBuilder {
    manifest: Manifest,
    code: Vec<u8>,
    /// Distinct weight contents in `WEIGHT_DATA` order: `(offset, bytes)`.
    weight_blobs: Vec<(u64, Vec<u8>)>,
    /// `WEIGHT_DATA` length so far.
    weight_data_len: u64,
    /// Indices into `weight_blobs` by the BLAKE3 hash of their bytes (candidates for sharing).
    blobs_by_hash: HashMap<[u8; CHECKSUM_LEN], Vec<usize>>,
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
            weight_blobs: Vec::new(),
            weight_data_len: 0,
            blobs_by_hash: HashMap::new(),
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
    /// `bytes` does not hold exactly `shape`'s elements of `dtype`. Bytes equal to an earlier
    /// weight's are not stored again: the new entry points at the earlier bytes.
    pub fn add_weight(&mut self, name: &str, dtype: DType, shape: &[u64], bytes: &[u8]) -> Result<u32> {
        self.add_weight_vec(name, dtype, shape, bytes.to_vec())
    }

    /// [`ArtifactBuilder::add_weight`] taking ownership of the bytes (no copy).
    pub fn add_weight_vec(&mut self, name: &str, dtype: DType, shape: &[u64], bytes: Vec<u8>) -> Result<u32> {
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| dtype.byte_len(n)) != Some(bytes.len() as u64) {
            return Err(RuntimeError::InvalidTensor {
                name: name.to_string(),
                reason: format!("{} bytes do not hold a {dtype} tensor of shape {shape:?}", bytes.len()),
            });
        }
        let len = bytes.len() as u64;
        let hash = format::checksum(&bytes);
        let candidates = self.blobs_by_hash.entry(hash).or_default();
        let offset = match candidates.iter().map(|&i| &self.weight_blobs[i]).find(|(_, b)| *b == bytes) {
            Some((offset, _)) => *offset,
            None => {
                let offset = align_up(self.weight_data_len);
                candidates.push(self.weight_blobs.len());
                self.weight_blobs.push((offset, bytes));
                self.weight_data_len = offset + len;
                offset
            }
        };
        let index = self.manifest.weights.len() as u32;
        self.manifest.weights.push(WeightInfo { name: name.to_string(), dtype, shape: shape.to_vec(), offset, len });
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
        let layout = self.layout();
        let mut out = Vec::with_capacity(layout.body_len as usize + CHECKSUM_LEN);
        let written: std::io::Result<()> = self.write_body(&layout, &mut |chunk| {
            out.extend_from_slice(chunk);
            Ok(())
        });
        debug_assert!(written.is_ok(), "writing to a vector cannot fail");
        let digest = format::checksum(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Validates like [`ArtifactBuilder::build`] and writes the same bytes to `w` without
    /// assembling the file in memory (the weights are not copied again): for artifacts of
    /// hundreds of megabytes. Returns the number of bytes written.
    pub fn write_to(&self, w: &mut dyn Write) -> Result<u64> {
        let layout = self.layout();
        // The reader's structural checks read every section except the contents of CODE and
        // WEIGHT_DATA, so they run on a copy whose WEIGHT_DATA stays zero: `vec![0; n]` is
        // allocated zeroed by the OS, and pages never written take no memory.
        let mut shadow = vec![0u8; layout.body_len as usize];
        let mut at = 0usize;
        let weight_data = layout.offset_of(SectionKind::WeightData);
        let weight_data = weight_data..weight_data + self.weight_data_len;
        self.write_body(&layout, &mut |chunk| {
            // Pieces never straddle the section's bounds (padding stops at them).
            if !weight_data.contains(&(at as u64)) {
                shadow[at..at + chunk.len()].copy_from_slice(chunk);
            }
            at += chunk.len();
            Ok(())
        })?;
        super::reader::parse_body(&shadow)?;
        drop(shadow);

        let mut hasher = format::Checksum::default();
        let mut written = 0u64;
        self.write_body(&layout, &mut |chunk| {
            hasher.update(chunk);
            written += chunk.len() as u64;
            w.write_all(chunk)
        })?;
        w.write_all(&hasher.finalize())?;
        Ok(written + CHECKSUM_LEN as u64)
    }

    /// Encodes the small sections and the header and places every section.
    fn layout(&self) -> Layout {
        let m = &self.manifest;
        let mut sections: Vec<(SectionKind, Option<Vec<u8>>, u64, u64)> = Vec::new();
        for kind in SectionKind::ALL {
            let mut e = Enc::default();
            match kind {
                // Copied straight from the builder when written.
                SectionKind::Code => {
                    sections.push((kind, None, self.code.len() as u64, 0));
                    continue;
                }
                SectionKind::WeightData => {
                    sections.push((kind, None, self.weight_data_len, 0));
                    continue;
                }
                SectionKind::Kernels => format::enc_kernels(&mut e, &m.kernels),
                SectionKind::Schedule => format::enc_schedules(&mut e, &m.schedules),
                SectionKind::MemoryPlan => format::enc_memory_plan(&mut e, &m.states, &m.memory_plans),
                SectionKind::EntryPoints => format::enc_entry_points(&mut e, &m.entry_points),
                SectionKind::Weights => format::enc_weights(&mut e, &m.weights),
                SectionKind::Metadata => format::enc_metadata(&mut e, &m.metadata),
            }
            let len = e.buf.len() as u64;
            sections.push((kind, Some(e.buf), len, 0));
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
        let mut body_len = table_end;
        h.count(sections.len());
        for (kind, _, len, at) in &mut sections {
            h.u32(*kind as u32);
            h.u32(0);
            h.u64(offset);
            h.u64(*len);
            *at = offset;
            body_len = offset + *len;
            offset = align_up(offset + *len);
        }
        Layout { header: h.buf, sections, body_len }
    }

    /// Emits the body (everything before the checksum) in order, in pieces.
    fn write_body(&self, layout: &Layout, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        const ZEROS: [u8; ALIGN as usize] = [0; ALIGN as usize];
        let mut pos = 0u64;
        let pad_to = |pos: &mut u64, to: u64, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>| {
            while *pos < to {
                let n = (to - *pos).min(ALIGN) as usize;
                sink(&ZEROS[..n])?;
                *pos += n as u64;
            }
            Ok::<(), std::io::Error>(())
        };
        sink(&layout.header)?;
        pos += layout.header.len() as u64;
        for (kind, payload, len, at) in &layout.sections {
            pad_to(&mut pos, *at, sink)?;
            match (kind, payload) {
                (_, Some(p)) => sink(p)?,
                (SectionKind::Code, None) => sink(&self.code)?,
                (_, None) => {
                    for (blob_offset, blob) in &self.weight_blobs {
                        pad_to(&mut pos, at + blob_offset, sink)?;
                        sink(blob)?;
                        pos += blob.len() as u64;
                    }
                    pad_to(&mut pos, at + len, sink)?;
                    continue;
                }
            }
            pos += len;
        }
        Ok(())
    }
}

/// Where everything goes in the file: the encoded header, each section as `(kind, encoded
/// payload or None for CODE / WEIGHT_DATA, length, file offset)`, and the body length.
#[derive(Debug)]
struct Layout {
    header: Vec<u8>,
    sections: Vec<(SectionKind, Option<Vec<u8>>, u64, u64)>,
    body_len: u64,
}

impl Layout {
    fn offset_of(&self, kind: SectionKind) -> u64 {
        self.sections.iter().find(|s| s.0 == kind).map_or(0, |s| s.3)
    }
}

/// Recomputes the trailing checksum of `bytes` after a deliberate edit (tests and tools that
/// patch headers). Does nothing if `bytes` is shorter than a checksum.
pub fn reseal(bytes: &mut [u8]) {
    let Some(body_len) = bytes.len().checked_sub(format::CHECKSUM_LEN) else { return };
    let digest = format::checksum(&bytes[..body_len]);
    bytes[body_len..].copy_from_slice(&digest);
}
