//! [`Artifact`]: validates artifact bytes and maps their machine code executable.
//!
//! Order of checks: magic → checksum over the whole file (nothing else is trusted before it
//! matches) → format version → function-table version → section table → sections → cross
//! references → target architecture → host CPU features. Only then is the code copied into
//! fresh page-aligned memory and made executable.

use super::format::{
    self, Dec, SectionKind, ALIGN, BLAKE3_VERSION, CHECKSUM_LEN, FORMAT_VERSION, LAST_SHA256_VERSION, MAGIC,
};
use super::{Binding, DType, Manifest};
use crate::abi::{KernelFn, FN_TABLE_VERSION};
use crate::error::{Result, RuntimeError};
use memmap2::{Mmap, MmapMut, MmapOptions};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

/// The result of the structural checks: the manifest and where the raw sections lie.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub manifest: Manifest,
    pub code: Range<usize>,
    pub weight_data: Range<usize>,
}

fn malformed(section: &'static str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Malformed { section, reason: reason.into() }
}

/// Magic, checksum, versions, sections and cross references; no host checks.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed> {
    parse_with_digest(bytes, None)
}

/// [`parse`], given the checksum of the body when the caller computed it while reading the
/// bytes (`None`: compute it here).
fn parse_with_digest(bytes: &[u8], computed: Option<[u8; CHECKSUM_LEN]>) -> Result<Parsed> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(RuntimeError::BadMagic);
    }
    let Some(body_len) = bytes.len().checked_sub(CHECKSUM_LEN).filter(|&n| n >= MAGIC.len()) else {
        return Err(RuntimeError::Tampered);
    };
    let (body, sum) = bytes.split_at(body_len);
    if computed.unwrap_or_else(|| format::checksum(body)) != sum {
        // An intact file of a version sealed with SHA-256 or BLAKE3 is old, not tampered: say so.
        // The version field is only a hint here; the old digest over the whole body must match.
        let old = body.get(MAGIC.len()..MAGIC.len() + 4).and_then(|v| v.try_into().ok()).map(u32::from_le_bytes);
        if let Some(found) = old.filter(|&v| v <= LAST_SHA256_VERSION) {
            if Sha256::digest(body).as_slice() == sum {
                return Err(RuntimeError::UnsupportedVersion { found, supported: FORMAT_VERSION });
            }
        }
        if let Some(found) = old.filter(|&v| v == BLAKE3_VERSION) {
            if blake3::hash(body).as_bytes() == sum {
                return Err(RuntimeError::UnsupportedVersion { found, supported: FORMAT_VERSION });
            }
        }
        return Err(RuntimeError::Tampered);
    }
    parse_body(body)
}

/// Everything [`parse`] checks after the checksum, on the bytes before it (`body`). Reads
/// the header, section table and every section except the contents of `CODE` and
/// `WEIGHT_DATA` (only their bounds).
pub(crate) fn parse_body(body: &[u8]) -> Result<Parsed> {
    if body.len() < MAGIC.len() || body[..MAGIC.len()] != MAGIC {
        return Err(RuntimeError::BadMagic);
    }
    let body_len = body.len();
    let mut h = Dec::new(&body[MAGIC.len()..], "header");
    let version = h.u32()?;
    if version != FORMAT_VERSION {
        return Err(RuntimeError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
    }
    let fn_table_version = h.u32()?;
    if fn_table_version != FN_TABLE_VERSION {
        return Err(RuntimeError::FnTableVersion { found: fn_table_version, supported: FN_TABLE_VERSION });
    }
    let ferrumc_version = h.str()?;
    let target = h.str()?;
    let cpu_features = h.list(4, Dec::str)?;
    if cpu_features.windows(2).any(|w| w[0] >= w[1]) {
        return Err(malformed("header", "CPU features not sorted and unique"));
    }

    let table = h.list(24, |d| {
        let kind = d.u32()?;
        let reserved = d.u32()?;
        let (offset, len) = (d.u64()?, d.u64()?);
        Ok((kind, reserved, offset, len))
    })?;
    let header_end = (MAGIC.len() + h.pos()) as u64;
    if table.len() != SectionKind::ALL.len() {
        return Err(malformed(
            "section table",
            format!("{} sections, expected {}", table.len(), SectionKind::ALL.len()),
        ));
    }
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut prev_end = header_end;
    for (&(kind, reserved, offset, len), expected) in table.iter().zip(SectionKind::ALL) {
        if kind != expected as u32 || reserved != 0 {
            return Err(malformed(
                "section table",
                format!("entry {kind} (reserved {reserved}) where {} expected", expected.name()),
            ));
        }
        let end = offset.checked_add(len).filter(|&e| e <= body_len as u64);
        let Some(end) = end else {
            return Err(malformed(expected.name(), format!("range {offset}+{len} exceeds the {body_len}-byte body")));
        };
        if offset % ALIGN != 0 || offset < prev_end {
            return Err(malformed(
                expected.name(),
                format!("offset {offset} is unaligned or overlaps what precedes it"),
            ));
        }
        prev_end = end;
        ranges.push(offset as usize..end as usize);
    }
    let sect = |k: SectionKind| Dec::new(&body[ranges[k as usize - 1].clone()], k.name());

    let mut d = sect(SectionKind::Kernels);
    let kernels = format::dec_kernels(&mut d)?;
    d.finish()?;
    let mut d = sect(SectionKind::Schedule);
    let schedules = format::dec_schedules(&mut d)?;
    d.finish()?;
    let mut d = sect(SectionKind::MemoryPlan);
    let (states, memory_plans) = format::dec_memory_plan(&mut d)?;
    d.finish()?;
    let mut d = sect(SectionKind::EntryPoints);
    let entry_points = format::dec_entry_points(&mut d)?;
    d.finish()?;
    let mut d = sect(SectionKind::Weights);
    let weights = format::dec_weights(&mut d)?;
    d.finish()?;
    let mut d = sect(SectionKind::Metadata);
    let metadata = format::dec_metadata(&mut d)?;
    d.finish()?;

    let manifest = Manifest {
        ferrumc_version,
        target,
        cpu_features,
        fn_table_version,
        kernels,
        schedules,
        states,
        memory_plans,
        entry_points,
        weights,
        metadata,
    };
    let code = ranges[SectionKind::Code as usize - 1].clone();
    let weight_data = ranges[SectionKind::WeightData as usize - 1].clone();
    validate(&manifest, code.len() as u64, weight_data.len() as u64)?;
    Ok(Parsed { manifest, code, weight_data })
}

/// Cross references: every index in range, every byte range in bounds, every symbol bindable.
fn validate(m: &Manifest, code_len: u64, weight_data_len: u64) -> Result<()> {
    for k in &m.kernels {
        if k.code_offset.checked_add(k.code_len).is_none_or(|e| e > code_len) {
            return Err(malformed("KERNELS", format!("kernel `{}` lies outside CODE", k.name)));
        }
    }
    for w in &m.weights {
        let numel = w.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| w.dtype.byte_len(n)) != Some(w.len) {
            return Err(malformed(
                "WEIGHTS",
                format!("weight `{}`: {} bytes for {} {:?}", w.name, w.len, w.dtype, w.shape),
            ));
        }
        if w.offset % ALIGN != 0 || w.offset.checked_add(w.len).is_none_or(|e| e > weight_data_len) {
            return Err(malformed("WEIGHTS", format!("weight `{}` is unaligned or outside WEIGHT_DATA", w.name)));
        }
    }
    let names: BTreeSet<&str> = m.entry_points.iter().map(|e| e.name.as_str()).collect();
    if !m.schedules.keys().map(String::as_str).eq(names.iter().copied()) {
        return Err(malformed("SCHEDULE", "schedules do not match the entry points one to one"));
    }
    if !m.memory_plans.keys().map(String::as_str).eq(names.iter().copied()) {
        return Err(malformed("MEMORY_PLAN", "memory plans do not match the entry points one to one"));
    }
    for ep in &m.entry_points {
        let mut seen = BTreeSet::new();
        for s in ep.inputs.iter().chain(&ep.outputs) {
            if !seen.insert(s.name.as_str()) {
                return Err(malformed("ENTRY_POINTS", format!("`{}`: tensor `{}` declared twice", ep.name, s.name)));
            }
            if !s.dtype.is_plain() {
                return Err(malformed(
                    "ENTRY_POINTS",
                    format!("`{}`: tensor `{}` has block dtype {}", ep.name, s.name, s.dtype),
                ));
            }
        }
        let bindable: BTreeSet<&str> = ep.inputs.iter().flat_map(|s| &s.dims).filter_map(|p| p.as_symbol()).collect();
        let check = |section: &'static str, p: &super::Poly| -> Result<()> {
            match p.symbols().find(|s| !bindable.contains(s)) {
                Some(s) => Err(malformed(section, format!("`{}`: symbol `{s}` is bound by no input dim", ep.name))),
                None => Ok(()),
            }
        };
        for s in ep.inputs.iter().chain(&ep.outputs) {
            s.dims.iter().try_for_each(|p| check("ENTRY_POINTS", p))?;
        }
        for st in &m.schedules[&ep.name] {
            if st.kernel as usize >= m.kernels.len() {
                return Err(malformed("SCHEDULE", format!("`{}`: kernel index {} out of range", ep.name, st.kernel)));
            }
            for b in &st.bindings {
                let (index, len, what) = match b {
                    Binding::Arena { offset } => {
                        check("SCHEDULE", offset)?;
                        continue;
                    }
                    Binding::Weight { index } => (index, m.weights.len(), "weight"),
                    Binding::Input { index } => (index, ep.inputs.len(), "input"),
                    Binding::Output { index } => (index, ep.outputs.len(), "output"),
                    Binding::State { index } => (index, m.states.len(), "state"),
                };
                if *index as usize >= len {
                    return Err(malformed("SCHEDULE", format!("`{}`: {what} index {index} out of range", ep.name)));
                }
            }
            st.dims.iter().try_for_each(|p| check("SCHEDULE", p))?;
            check("SCHEDULE", &st.extent)?;
        }
        let buckets = &m.memory_plans[&ep.name];
        if buckets.is_empty() {
            return Err(malformed("MEMORY_PLAN", format!("`{}` has no arena bucket", ep.name)));
        }
        for b in buckets {
            check("MEMORY_PLAN", &b.arena_size)?;
            if let Some((s, _)) = b.bounds.iter().find(|(s, _)| !bindable.contains(s.as_str())) {
                return Err(malformed("MEMORY_PLAN", format!("`{}`: bound on unbindable symbol `{s}`", ep.name)));
            }
        }
    }
    Ok(())
}

/// Whether the host CPU has `feature` (names as in `is_x86_feature_detected!`); unknown
/// names are reported missing.
pub fn host_has_cpu_feature(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($name:tt),*) => {
                match feature {
                    $($name => std::is_x86_feature_detected!($name),)*
                    _ => false,
                }
            };
        }
        detect!(
            "sse",
            "sse2",
            "sse3",
            "ssse3",
            "sse4.1",
            "sse4.2",
            "popcnt",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi1",
            "bmi2",
            "lzcnt",
            "avx512f",
            "avx512cd",
            "avx512bw",
            "avx512dq",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "avx512fp16",
            "avx512vbmi",
            "avx512bitalg",
            "avxvnni",
            "cmpxchg16b"
        )
    }
    #[cfg(target_arch = "aarch64")]
    {
        match feature {
            "neon" => std::arch::is_aarch64_feature_detected!("neon"),
            "dotprod" => std::arch::is_aarch64_feature_detected!("dotprod"),
            "fp16" => std::arch::is_aarch64_feature_detected!("fp16"),
            _ => false,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = feature;
        false
    }
}

/// A validated artifact with its code mapped executable.
pub struct Artifact {
    manifest: Manifest,
    /// The whole file, page-aligned (a file mapping or an anonymous copy, see [`Placement`]),
    /// read-only.
    storage: Mmap,
    code: Range<usize>,
    weight_data: Range<usize>,
    /// The code section copied into its own page-aligned, executable mapping (`None` when
    /// the section is empty).
    exec: Option<Mmap>,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("target", &self.manifest.target)
            .field("kernels", &self.manifest.kernels.len())
            .field("entry_points", &self.manifest.entry_points.len())
            .finish_non_exhaustive()
    }
}

/// Reads the file at `file` (`len` bytes) into anonymous memory backed by transparent huge
/// pages, hashing each checksum piece right after reading it while it is still in cache.
/// Returns the memory and the checksum of the body (everything before the trailing
/// checksum). `len` must be at least `CHECKSUM_LEN`.
#[cfg(target_os = "linux")]
fn read_resident(file: &std::fs::File, len: usize) -> Result<(Mmap, [u8; CHECKSUM_LEN])> {
    use rayon::prelude::*;
    use std::os::unix::fs::FileExt;
    let body_len = len - CHECKSUM_LEN;
    let piece = format::CHECKSUM_PIECE;
    let mut buf = MmapMut::map_anon(len)?;
    // Only advice: where it is refused, 4 KiB pages remain and only the speed-up is lost.
    let _ = buf.advise(memmap2::Advice::HugePage);
    let digests: Vec<Option<u128>> = buf
        .par_chunks_mut(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let start = i * piece;
            file.read_exact_at(chunk, start as u64)?;
            let body_part = &chunk[..body_len.saturating_sub(start).min(chunk.len())];
            Ok((!body_part.is_empty()).then(|| format::piece_digest(body_part)))
        })
        .collect::<std::io::Result<_>>()?;
    let digests: Vec<u128> = digests.into_iter().flatten().collect();
    Ok((buf.make_read_only()?, format::checksum_of_pieces(&digests, body_len as u64)))
}

/// Whether anonymous memory can get transparent huge pages on request (`madvise`): the
/// kernel's THP mode is `always` or `madvise`. Elsewhere a copy would cost its load time and
/// gain nothing over a file mapping.
#[cfg(target_os = "linux")]
fn huge_pages_on_request() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| mode.contains("[always]") || mode.contains("[madvise]"))
}

/// Where an artifact's bytes live once loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// A private read-only mapping of the file: the fastest load (no copy, no fresh memory),
    /// and processes that load the same artifact share its pages in the page cache.
    #[default]
    Mapped,
    /// Copied into anonymous memory on transparent huge pages where the kernel offers them
    /// on request (Linux, THP mode `always` or `madvise`; elsewhere a file mapping).
    /// Streaming the weights then misses the TLB once per 2 MiB instead of once per 4 KiB
    /// (up to 7–12% for a memory-bound pass such as an LLM at T = 1 in A/B runs here, within
    /// the noise in others), at the price of a load that copies the whole file into fresh
    /// memory: about 90 ms for 650 MB here, and up to a second on a VM whose hypervisor has
    /// taken freed memory back.
    HugePages,
}

impl Artifact {
    /// Validates `bytes` (copied into page-aligned memory so weights stay 64-byte aligned).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        // Cheap rejections before copying anything.
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(RuntimeError::BadMagic);
        }
        if bytes.len() < MAGIC.len() + CHECKSUM_LEN {
            return Err(RuntimeError::Tampered);
        }
        let mut copy = MmapMut::map_anon(bytes.len())?;
        copy.copy_from_slice(bytes);
        Self::from_storage(copy.make_read_only()?, None)
    }

    /// Maps the file at `path` and validates it ([`Placement::Mapped`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Placement::Mapped)
    }

    /// Loads the file at `path` into the given placement and validates it. A mapped file must
    /// not be modified while the artifact is alive (it is checksummed once, at load).
    pub fn open_with(path: impl AsRef<Path>, placement: Placement) -> Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        if len < (MAGIC.len() + CHECKSUM_LEN) as u64 {
            // Too short to map usefully (and empty files cannot be mapped).
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut bytes)?;
            return Self::from_bytes(&bytes);
        }
        #[cfg(target_os = "linux")]
        if placement == Placement::HugePages && huge_pages_on_request() {
            let len =
                usize::try_from(len).map_err(|_| std::io::Error::other("artifact larger than the address space"))?;
            let (storage, digest) = read_resident(&file, len)?;
            return Self::from_storage(storage, Some(digest));
        }
        let _ = placement;
        // Pre-faulted (`MAP_POPULATE`): the checksum reads every page anyway, and faulting them
        // in one kernel call is cheaper than one fault per page during hashing or the first run.
        // SAFETY: a read-only private mapping; the documented contract is that the file is not
        // modified while mapped. Everything read from it is bounds-checked, so a violation can
        // at worst yield wrong values, and code is copied out before it is made executable.
        let map = unsafe { MmapOptions::new().populate().map(&file)? };
        Self::from_storage(map, None)
    }

    /// Validates `storage`; `digest` is the checksum of its body when already computed.
    fn from_storage(storage: Mmap, digest: Option<[u8; CHECKSUM_LEN]>) -> Result<Self> {
        let Parsed { manifest, code, weight_data } = parse_with_digest(&storage, digest)?;
        // Architecture and calling convention (Windows' x64 ABI differs from System V).
        let arch = manifest.target.split('-').next().unwrap_or_default();
        let windows = manifest.target.contains("windows");
        if arch != std::env::consts::ARCH || windows != cfg!(windows) {
            return Err(RuntimeError::WrongTarget {
                artifact: manifest.target.clone(),
                host: std::env::consts::ARCH.to_string(),
            });
        }
        if let Some(f) = manifest.cpu_features.iter().find(|f| !host_has_cpu_feature(f)) {
            return Err(RuntimeError::MissingCpuFeature(f.clone()));
        }
        let exec = if code.is_empty() {
            None
        } else {
            let mut m = MmapMut::map_anon(code.len())?;
            m.copy_from_slice(&storage[code.clone()]);
            Some(m.make_exec()?)
        };
        Ok(Self { manifest, storage, code, weight_data, exec })
    }

    /// Everything but the code and weight bytes.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The `CODE` section's bytes.
    pub fn code(&self) -> &[u8] {
        &self.storage[self.code.clone()]
    }

    /// The bytes of weight `index` (64-byte aligned in memory), `None` if out of range.
    pub fn weight_bytes(&self, index: usize) -> Option<&[u8]> {
        let w = self.manifest.weights.get(index)?;
        let start = self.weight_data.start + w.offset as usize;
        self.storage.get(start..start + w.len as usize)
    }

    /// Looks a weight up by name: `(dtype, shape, bytes)`.
    pub fn weight(&self, name: &str) -> Option<(DType, &[u64], &[u8])> {
        let i = self.manifest.weights.iter().position(|w| w.name == name)?;
        let w = &self.manifest.weights[i];
        Some((w.dtype, &w.shape, self.weight_bytes(i)?))
    }

    /// The entry address of kernel `index` in the executable mapping, `None` if out of range.
    pub fn kernel_fn(&self, index: usize) -> Option<KernelFn> {
        let k = self.manifest.kernels.get(index)?;
        let exec = self.exec.as_ref()?;
        if k.code_len == 0 {
            return None;
        }
        let addr: *const u8 = exec.as_ptr().wrapping_add(k.code_offset as usize);
        // SAFETY: `addr` lies inside `exec` (validate() checked offset + len ≤ the code size),
        // a mapping with execute permission that lives as long as `self`; callers hold the
        // pointer no longer than the artifact. The bytes there are the kernel the compiler
        // emitted for the ABI of `KernelFn` on this architecture: the checksum matched, the
        // target architecture and every CPU feature the code needs were checked above. Code
        // is relocation-free, so copying it to another address keeps it valid. What the
        // kernel then does is the compiler's contract, which the runtime cannot check.
        Some(unsafe { std::mem::transmute::<*const u8, KernelFn>(addr) })
    }

    /// The address of the weight data (for binding weight buffers).
    pub(crate) fn weight_ptr(&self, index: usize) -> Option<*const u8> {
        self.weight_bytes(index).map(<[u8]>::as_ptr)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The resident read hashes piece by piece as it reads; its digest must be the one the
    /// whole-body checksum gives, for bodies that end inside, just before and just after a
    /// piece boundary, and for an empty body.
    #[test]
    fn resident_read_returns_the_bytes_and_the_whole_body_checksum() {
        let piece = format::CHECKSUM_PIECE;
        let dir = std::env::temp_dir();
        for body_len in [0, 1, piece - 1, piece, piece + 1, 2 * piece + 100] {
            let len = body_len + CHECKSUM_LEN;
            let bytes: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            let path = dir.join(format!("ferrumc-resident-{}-{body_len}.bin", std::process::id()));
            std::fs::write(&path, &bytes).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let read = read_resident(&file, len);
            std::fs::remove_file(&path).unwrap();
            let (storage, digest) = read.unwrap();
            assert!(storage[..] == bytes[..], "{body_len}");
            assert_eq!(digest, format::checksum(&bytes[..body_len]), "{body_len}");
        }
    }
}
