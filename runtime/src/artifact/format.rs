//! Constants of the artifact format and the little-endian encoding of its sections (the
//! layout is documented in the parent module and `docs/artifact-format.md`).
//!
//! Decoding never trusts a length: every count and byte length is checked against the bytes
//! left in the section before anything is read or allocated, and vectors grow only as items
//! are actually decoded.

use super::{Binding, Bucket, DType, EntryPoint, KernelInfo, Poly, StateInfo, Step, TensorSig, Term, WeightInfo};
use crate::error::RuntimeError;
use std::collections::BTreeMap;

/// The first 8 bytes of every artifact.
pub const MAGIC: [u8; 8] = *b"FERRUMC\0";
/// The format version this runtime writes and reads. Version 2 replaced version 1's trailing
/// SHA-256 with BLAKE3; version 3 replaced that with the XXH3 tree of [`checksum`] (same place,
/// same length) and added value ranges to input signatures.
pub const FORMAT_VERSION: u32 = 3;
/// The last format version sealed with SHA-256: such a file is recognized (its SHA-256
/// matches) and refused with `UnsupportedVersion` rather than reported as tampered.
pub const LAST_SHA256_VERSION: u32 = 1;
/// The format version sealed with BLAKE3, recognized the same way.
pub const BLAKE3_VERSION: u32 = 2;
/// Section alignment in the file (and of weights inside `WEIGHT_DATA`).
pub const ALIGN: u64 = 64;
/// Bytes of the trailing checksum (every version).
pub const CHECKSUM_LEN: usize = 32;
/// The checksum's leaves: the body is cut into pieces of this many bytes (the last may be
/// shorter), each hashed on its own so that a large body is hashed on all cores.
pub const CHECKSUM_PIECE: usize = 4 << 20;

/// The checksum of an artifact body (everything before the trailing checksum). Integrity
/// against corruption, not authentication (anyone who can rewrite the file can reseal it):
/// XXH3-128 of every [`CHECKSUM_PIECE`]-byte piece, then over those digests (16 bytes each,
/// little-endian) followed by the body length as a `u64`, XXH3-128 with seed 0 and with seed
/// 1 make the 32 bytes. Pieces are hashed in parallel; the digest does not depend on it.
pub fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut c = Checksum::default();
    c.update(body);
    c.finalize()
}

/// A running [`checksum`]: the digest does not depend on how the body is cut into updates.
#[derive(Debug, Default)]
pub struct Checksum {
    /// The start of a piece not yet complete.
    pending: Vec<u8>,
    /// The digests of the complete pieces so far.
    leaves: Vec<u8>,
    len: u64,
}

impl Checksum {
    /// Feeds the next bytes of the body.
    pub fn update(&mut self, mut bytes: &[u8]) {
        use rayon::prelude::*;
        self.len += bytes.len() as u64;
        if !self.pending.is_empty() {
            let take = (CHECKSUM_PIECE - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == CHECKSUM_PIECE {
                self.leaves.extend_from_slice(&piece_digest(&self.pending).to_le_bytes());
                self.pending.clear();
            }
        }
        let whole = bytes.len() / CHECKSUM_PIECE * CHECKSUM_PIECE;
        let digests: Vec<u128> = if whole >= 2 * CHECKSUM_PIECE {
            bytes[..whole].par_chunks_exact(CHECKSUM_PIECE).map(piece_digest).collect()
        } else {
            bytes[..whole].chunks_exact(CHECKSUM_PIECE).map(piece_digest).collect()
        };
        for d in digests {
            self.leaves.extend_from_slice(&d.to_le_bytes());
        }
        self.pending.extend_from_slice(&bytes[whole..]);
    }

    /// The 32-byte digest.
    pub fn finalize(mut self) -> [u8; CHECKSUM_LEN] {
        if !self.pending.is_empty() {
            self.leaves.extend_from_slice(&piece_digest(&self.pending).to_le_bytes());
        }
        seal(self.leaves, self.len)
    }
}

/// The digest of one piece of the body (a leaf of [`checksum`]'s tree).
pub fn piece_digest(piece: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(piece)
}

/// [`checksum`] from the digests of the body's pieces, in order, each taken by
/// [`piece_digest`] over [`CHECKSUM_PIECE`] bytes (the last piece may be shorter, and an empty
/// body has none), for readers that hash pieces as they arrive.
pub fn checksum_of_pieces(digests: &[u128], body_len: u64) -> [u8; CHECKSUM_LEN] {
    let mut leaves = Vec::with_capacity(digests.len() * 16 + 8);
    for d in digests {
        leaves.extend_from_slice(&d.to_le_bytes());
    }
    seal(leaves, body_len)
}

fn seal(mut leaves: Vec<u8>, body_len: u64) -> [u8; CHECKSUM_LEN] {
    use xxhash_rust::xxh3::xxh3_128_with_seed;
    leaves.extend_from_slice(&body_len.to_le_bytes());
    let mut out = [0u8; CHECKSUM_LEN];
    out[..16].copy_from_slice(&xxh3_128_with_seed(&leaves, 0).to_le_bytes());
    out[16..].copy_from_slice(&xxh3_128_with_seed(&leaves, 1).to_le_bytes());
    out
}

/// Section kinds (the `u32` in the section table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum SectionKind {
    /// Machine code.
    Code = 1,
    /// Kernel table.
    Kernels = 2,
    /// Schedules.
    Schedule = 3,
    /// States and arena sizes.
    MemoryPlan = 4,
    /// Entry point signatures.
    EntryPoints = 5,
    /// Weight table.
    Weights = 6,
    /// Weight bytes.
    WeightData = 7,
    /// Key/value strings.
    Metadata = 8,
}

impl SectionKind {
    /// All kinds, in file order.
    pub const ALL: [SectionKind; 8] = [
        SectionKind::Code,
        SectionKind::Kernels,
        SectionKind::Schedule,
        SectionKind::MemoryPlan,
        SectionKind::EntryPoints,
        SectionKind::Weights,
        SectionKind::WeightData,
        SectionKind::Metadata,
    ];

    /// Decodes the table's `u32`.
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u32 == v)
    }

    /// The name used in docs and errors.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Code => "CODE",
            SectionKind::Kernels => "KERNELS",
            SectionKind::Schedule => "SCHEDULE",
            SectionKind::MemoryPlan => "MEMORY_PLAN",
            SectionKind::EntryPoints => "ENTRY_POINTS",
            SectionKind::Weights => "WEIGHTS",
            SectionKind::WeightData => "WEIGHT_DATA",
            SectionKind::Metadata => "METADATA",
        }
    }
}

/// Rounds `n` up to a multiple of [`ALIGN`].
pub fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// Appends little-endian values.
#[derive(Debug, Default)]
pub struct Enc {
    /// The bytes so far.
    pub buf: Vec<u8>,
}

impl Enc {
    /// `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// `i64`.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A list count. Lists longer than `u32::MAX` cannot be represented; the builder's inputs
    /// are in-memory collections far below that, so this saturates rather than panics (the
    /// reader would then reject the file).
    pub fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    /// `str`.
    pub fn str(&mut self, s: &str) {
        self.count(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }
    /// `poly`.
    pub fn poly(&mut self, p: &Poly) {
        self.count(p.terms().len());
        for t in p.terms() {
            self.i64(t.coef);
            self.count(t.symbols.len());
            for s in &t.symbols {
                self.str(s);
            }
        }
    }
}

/// Reads little-endian values from one section, checking every length.
#[derive(Debug)]
pub struct Dec<'a> {
    bytes: &'a [u8],
    pos: usize,
    section: &'static str,
}

impl<'a> Dec<'a> {
    /// Reads `bytes`, naming `section` in errors.
    pub fn new(bytes: &'a [u8], section: &'static str) -> Self {
        Self { bytes, pos: 0, section }
    }

    /// A `Malformed` error for this section.
    pub fn err(&self, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::Malformed { section: self.section, reason: reason.into() }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Current position.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], RuntimeError> {
        if n > self.remaining() {
            return Err(self.err(format!("needs {n} bytes at offset {}, {} left", self.pos, self.remaining())));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RuntimeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// `u8`.
    pub fn u8(&mut self) -> Result<u8, RuntimeError> {
        Ok(self.array::<1>()?[0])
    }
    /// `u32`.
    pub fn u32(&mut self) -> Result<u32, RuntimeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// `u64`.
    pub fn u64(&mut self) -> Result<u64, RuntimeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// `i64`.
    pub fn i64(&mut self) -> Result<i64, RuntimeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A list count whose items take at least `min_item` bytes each: rejected if the items
    /// could not fit in what is left.
    pub fn count(&mut self, min_item: usize) -> Result<usize, RuntimeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(self.err(format!(
                "count {n} at offset {} exceeds the {} bytes left",
                self.pos,
                self.remaining()
            )));
        }
        Ok(n)
    }

    /// `str`.
    pub fn str(&mut self) -> Result<String, RuntimeError> {
        let n = self.count(1)?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }

    /// `list<T>` where every `T` takes at least `min_item` bytes.
    pub fn list<T>(
        &mut self,
        min_item: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, RuntimeError>,
    ) -> Result<Vec<T>, RuntimeError> {
        let n = self.count(min_item)?;
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }

    /// `poly`, which must be in canonical form.
    pub fn poly(&mut self) -> Result<Poly, RuntimeError> {
        let terms = self.list(12, |d| {
            let coef = d.i64()?;
            let symbols = d.list(4, Dec::str)?;
            Ok(Term { symbols, coef })
        })?;
        let p = Poly::from_terms(terms.clone());
        if p.terms() != terms.as_slice() {
            return Err(self.err("polynomial not in canonical form"));
        }
        Ok(p)
    }

    /// `dtype`.
    pub fn dtype(&mut self) -> Result<DType, RuntimeError> {
        let b = self.u8()?;
        DType::from_u8(b).ok_or_else(|| self.err(format!("unknown dtype {b}")))
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), RuntimeError> {
        if self.remaining() != 0 {
            return Err(self.err(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

fn check_sorted_unique<'k>(d: &Dec<'_>, keys: impl Iterator<Item = &'k str>, what: &str) -> Result<(), RuntimeError> {
    let keys: Vec<&str> = keys.collect();
    if keys.windows(2).any(|w| w[0] >= w[1]) {
        return Err(d.err(format!("{what} not sorted and unique")));
    }
    Ok(())
}

// ---- KERNELS ----

/// Encodes `KERNELS`.
pub fn enc_kernels(e: &mut Enc, ks: &[KernelInfo]) {
    e.count(ks.len());
    for k in ks {
        e.str(&k.name);
        e.u64(k.code_offset);
        e.u64(k.code_len);
    }
}

/// Decodes `KERNELS`.
pub fn dec_kernels(d: &mut Dec<'_>) -> Result<Vec<KernelInfo>, RuntimeError> {
    d.list(20, |d| Ok(KernelInfo { name: d.str()?, code_offset: d.u64()?, code_len: d.u64()? }))
}

// ---- SCHEDULE ----

fn enc_binding(e: &mut Enc, b: &Binding) {
    match b {
        Binding::Arena { offset } => {
            e.u8(0);
            e.poly(offset);
        }
        Binding::Weight { index } => {
            e.u8(1);
            e.u32(*index);
        }
        Binding::Input { index } => {
            e.u8(2);
            e.u32(*index);
        }
        Binding::Output { index } => {
            e.u8(3);
            e.u32(*index);
        }
        Binding::State { index } => {
            e.u8(4);
            e.u32(*index);
        }
    }
}

fn dec_binding(d: &mut Dec<'_>) -> Result<Binding, RuntimeError> {
    Ok(match d.u8()? {
        0 => Binding::Arena { offset: d.poly()? },
        1 => Binding::Weight { index: d.u32()? },
        2 => Binding::Input { index: d.u32()? },
        3 => Binding::Output { index: d.u32()? },
        4 => Binding::State { index: d.u32()? },
        t => return Err(d.err(format!("unknown binding tag {t}"))),
    })
}

/// Encodes `SCHEDULE`.
pub fn enc_schedules(e: &mut Enc, s: &BTreeMap<String, Vec<Step>>) {
    e.count(s.len());
    for (name, steps) in s {
        e.str(name);
        e.count(steps.len());
        for st in steps {
            e.u32(st.kernel);
            e.count(st.bindings.len());
            for b in &st.bindings {
                enc_binding(e, b);
            }
            e.count(st.dims.len());
            for p in &st.dims {
                e.poly(p);
            }
            e.poly(&st.extent);
            e.u64(st.grain);
        }
    }
}

/// Decodes `SCHEDULE`.
pub fn dec_schedules(d: &mut Dec<'_>) -> Result<BTreeMap<String, Vec<Step>>, RuntimeError> {
    let list = d.list(8, |d| {
        let name = d.str()?;
        let steps = d.list(24, |d| {
            Ok(Step {
                kernel: d.u32()?,
                bindings: d.list(5, dec_binding)?,
                dims: d.list(4, Dec::poly)?,
                extent: d.poly()?,
                grain: d.u64()?,
            })
        })?;
        Ok((name, steps))
    })?;
    check_sorted_unique(d, list.iter().map(|(n, _)| n.as_str()), "schedule entry points")?;
    Ok(list.into_iter().collect())
}

// ---- MEMORY_PLAN ----

/// Encodes `MEMORY_PLAN`.
pub fn enc_memory_plan(e: &mut Enc, states: &[StateInfo], plans: &BTreeMap<String, Vec<Bucket>>) {
    e.count(states.len());
    for s in states {
        e.str(&s.name);
        e.u64(s.size);
    }
    e.count(plans.len());
    for (name, buckets) in plans {
        e.str(name);
        e.count(buckets.len());
        for b in buckets {
            e.count(b.bounds.len());
            for (s, max) in &b.bounds {
                e.str(s);
                e.i64(*max);
            }
            e.poly(&b.arena_size);
        }
    }
}

/// Decodes `MEMORY_PLAN`.
#[allow(clippy::type_complexity)]
pub fn dec_memory_plan(d: &mut Dec<'_>) -> Result<(Vec<StateInfo>, BTreeMap<String, Vec<Bucket>>), RuntimeError> {
    let states = d.list(12, |d| Ok(StateInfo { name: d.str()?, size: d.u64()? }))?;
    let plans = d.list(8, |d| {
        let name = d.str()?;
        let buckets =
            d.list(8, |d| Ok(Bucket { bounds: d.list(12, |d| Ok((d.str()?, d.i64()?)))?, arena_size: d.poly()? }))?;
        Ok((name, buckets))
    })?;
    check_sorted_unique(d, plans.iter().map(|(n, _)| n.as_str()), "memory plan entry points")?;
    Ok((states, plans.into_iter().collect()))
}

// ---- ENTRY_POINTS ----

fn enc_sig(e: &mut Enc, s: &TensorSig) {
    e.str(&s.name);
    e.u8(s.dtype as u8);
    e.count(s.dims.len());
    for p in &s.dims {
        e.poly(p);
    }
    match s.range {
        None => e.u8(0),
        Some((lo, hi)) => {
            e.u8(1);
            e.i64(lo);
            e.i64(hi);
        }
    }
}

fn dec_sig(d: &mut Dec<'_>) -> Result<TensorSig, RuntimeError> {
    let (name, dtype, dims) = (d.str()?, d.dtype()?, d.list(4, Dec::poly)?);
    let range = match d.u8()? {
        0 => None,
        1 => {
            let (lo, hi) = (d.i64()?, d.i64()?);
            if lo > hi || !matches!(dtype, DType::I64 | DType::I32) {
                return Err(d.err(format!("input `{name}`: value range {lo}..={hi} on a {dtype} tensor")));
            }
            Some((lo, hi))
        }
        other => return Err(d.err(format!("input `{name}`: value-range flag {other}"))),
    };
    Ok(TensorSig { name, dtype, dims, range })
}

/// Encodes `ENTRY_POINTS`.
pub fn enc_entry_points(e: &mut Enc, eps: &[EntryPoint]) {
    e.count(eps.len());
    for ep in eps {
        e.str(&ep.name);
        e.count(ep.inputs.len());
        for s in &ep.inputs {
            enc_sig(e, s);
        }
        e.count(ep.outputs.len());
        for s in &ep.outputs {
            enc_sig(e, s);
        }
    }
}

/// Decodes `ENTRY_POINTS`.
pub fn dec_entry_points(d: &mut Dec<'_>) -> Result<Vec<EntryPoint>, RuntimeError> {
    let eps =
        d.list(12, |d| Ok(EntryPoint { name: d.str()?, inputs: d.list(9, dec_sig)?, outputs: d.list(9, dec_sig)? }))?;
    check_sorted_unique(d, eps.iter().map(|e| e.name.as_str()), "entry points")?;
    Ok(eps)
}

// ---- WEIGHTS ----

/// Encodes `WEIGHTS`.
pub fn enc_weights(e: &mut Enc, ws: &[WeightInfo]) {
    e.count(ws.len());
    for w in ws {
        e.str(&w.name);
        e.u8(w.dtype as u8);
        e.count(w.shape.len());
        for &x in &w.shape {
            e.u64(x);
        }
        e.u64(w.offset);
        e.u64(w.len);
    }
}

/// Decodes `WEIGHTS`.
pub fn dec_weights(d: &mut Dec<'_>) -> Result<Vec<WeightInfo>, RuntimeError> {
    d.list(25, |d| {
        Ok(WeightInfo {
            name: d.str()?,
            dtype: d.dtype()?,
            shape: d.list(8, Dec::u64)?,
            offset: d.u64()?,
            len: d.u64()?,
        })
    })
}

// ---- METADATA ----

/// Encodes `METADATA`.
pub fn enc_metadata(e: &mut Enc, m: &BTreeMap<String, String>) {
    e.count(m.len());
    for (k, v) in m {
        e.str(k);
        e.str(v);
    }
}

/// Decodes `METADATA`.
pub fn dec_metadata(d: &mut Dec<'_>) -> Result<BTreeMap<String, String>, RuntimeError> {
    let list = d.list(8, |d| Ok((d.str()?, d.str()?)))?;
    check_sorted_unique(d, list.iter().map(|(k, _)| k.as_str()), "metadata keys")?;
    Ok(list.into_iter().collect())
}
