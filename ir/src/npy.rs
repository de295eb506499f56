//! Reading and writing NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
//!
//! Supported element types (the `descr` of the header):
//!
//! | descr                  | dtype  |
//! |------------------------|--------|
//! | `<f4`                  | `f32`  |
//! | `<f8`                  | `f64`  |
//! | `<f2`                  | `f16`  |
//! | `<i8`                  | `i64`  |
//! | `<i4`                  | `i32`  |
//! | `\|i1`, `<i1`          | `i8`   |
//! | `\|u1`, `<u1`          | `u8`   |
//! | `\|b1`, `<b1`          | `bool` |
//!
//! Big-endian (`>`) descrs, Fortran-ordered arrays and every other dtype are refused
//! with an error that says so. NumPy has no `bfloat16` and no block-quantized types:
//! [`write_npy`] writes `bf16`, `q8_0`, `q4_0` and `int4<G>` tensors as `<f4` (their
//! values, dequantized, are exactly representable in f32), so such a file reads back
//! as an `f32` tensor.
//!
//! The header dictionary is parsed by a small hand-written parser (never evaluated): it
//! accepts exactly the Python literal subset NumPy writes (a dict with string keys
//! `descr`, `fortran_order` and `shape`; string, `True`/`False` and tuple-of-integer
//! values). The header length is bounded, and the element count the shape claims is
//! computed with checked arithmetic and compared with the data length *before* any
//! element buffer is allocated.

use crate::dtype::DType;
use crate::tensor::{checked_numel, Tensor, TensorData, TensorError};
use std::path::{Path, PathBuf};

/// The magic string every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The longest header accepted (NumPy itself refuses headers over 10 000 bytes by default).
pub const MAX_HEADER_LEN: usize = 1 << 16;

/// Why a `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("`{path}`: {source}")]
    InFile { path: PathBuf, source: Box<NpyError> },
    #[error("not a .npy file: the first 6 bytes are {found:02x?}, expected \\x93NUMPY")]
    BadMagic { found: Vec<u8> },
    #[error("truncated .npy file: {what} needs {needed} bytes but only {available} are present")]
    Truncated { what: &'static str, needed: u64, available: u64 },
    #[error("unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)")]
    Version { major: u8, minor: u8 },
    #[error(".npy header length {0} exceeds the limit of {MAX_HEADER_LEN} bytes")]
    HeaderTooLong(u64),
    #[error("malformed .npy header: {0}")]
    Header(String),
    #[error("big-endian .npy data (`{0}`) is not supported; re-save it little-endian")]
    BigEndian(String),
    #[error("unsupported .npy dtype `{0}` (supported: <f4, <f8, <f2, <i8, <i4, |i1, |u1, |b1)")]
    Dtype(String),
    #[error("Fortran-ordered .npy arrays are not supported; re-save in C order")]
    FortranOrder,
    #[error(".npy shape {shape:?} overflows the element or byte count")]
    ShapeOverflow { shape: Vec<u64> },
    #[error(
        ".npy data length mismatch: shape {shape:?} of `{descr}` needs {expected} data bytes, the file has {actual}"
    )]
    DataLength { descr: String, shape: Vec<usize>, expected: u64, actual: u64 },
    #[error("cannot write tensor as .npy: {0}")]
    BadTensor(String),
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

fn descr_dtype(descr: &str) -> Result<DType, NpyError> {
    if descr.starts_with('>') {
        // `>i1` and friends are byte-order neutral, but NumPy never writes them; refuse
        // every big-endian spelling with the same clear message.
        return Err(NpyError::BigEndian(descr.to_string()));
    }
    Ok(match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<f2" => DType::F16,
        "<i8" => DType::I64,
        "<i4" => DType::I32,
        "|i1" | "<i1" => DType::I8,
        "|u1" | "<u1" => DType::U8,
        "|b1" | "<b1" => DType::Bool,
        other => return Err(NpyError::Dtype(other.to_string())),
    })
}

/// The header value kinds NumPy writes.
#[derive(Debug, Clone, PartialEq)]
enum HeaderValue {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// A tiny parser for the Python dict literal in a `.npy` header.
struct HeaderParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl HeaderParser<'_> {
    fn err(&self, msg: &str) -> NpyError {
        NpyError::Header(format!("{msg} at byte {} of the header", self.pos))
    }

    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), NpyError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected `{}`", c as char)))
        }
    }

    fn string(&mut self) -> Result<String, NpyError> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.err("expected a quoted string")),
        };
        self.pos += 1;
        let start = self.pos;
        while let Some(&c) = self.s.get(self.pos) {
            if c == quote {
                let text = std::str::from_utf8(self.s.get(start..self.pos).unwrap_or_default())
                    .map_err(|_| self.err("string is not valid UTF-8"))?;
                self.pos += 1;
                return Ok(text.to_string());
            }
            if c == b'\\' {
                return Err(self.err("escape sequences are not supported in header strings"));
            }
            self.pos += 1;
        }
        Err(self.err("unterminated string"))
    }

    fn word(&mut self) -> &[u8] {
        self.skip_ws();
        let start = self.pos;
        while matches!(self.s.get(self.pos), Some(c) if c.is_ascii_alphanumeric() || *c == b'_') {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or_default()
    }

    fn tuple(&mut self) -> Result<Vec<u64>, NpyError> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.peek() == Some(b')') {
                self.pos += 1;
                return Ok(dims);
            }
            let w = self.word().to_vec();
            if w.is_empty() {
                return Err(self.err("expected a non-negative integer dimension"));
            }
            let text = std::str::from_utf8(&w).unwrap_or_default();
            let text = text.strip_suffix('L').unwrap_or(text); // Python 2 longs
            let d: u64 =
                text.parse().map_err(|_| self.err(&format!("dimension `{text}` is not a non-negative integer")))?;
            if dims.len() >= crate::types::MAX_RANK {
                return Err(self.err(&format!("shape has more than {} dims", crate::types::MAX_RANK)));
            }
            dims.push(d);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {}
                _ => return Err(self.err("expected `,` or `)` in the shape tuple")),
            }
        }
    }

    fn value(&mut self) -> Result<HeaderValue, NpyError> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(HeaderValue::Str(self.string()?)),
            Some(b'(') => Ok(HeaderValue::Tuple(self.tuple()?)),
            _ => match self.word() {
                b"True" => Ok(HeaderValue::Bool(true)),
                b"False" => Ok(HeaderValue::Bool(false)),
                _ => Err(self.err("expected a string, True, False or a tuple")),
            },
        }
    }

    fn dict(&mut self) -> Result<Vec<(String, HeaderValue)>, NpyError> {
        self.expect(b'{')?;
        let mut entries: Vec<(String, HeaderValue)> = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(NpyError::Header(format!("key `{key}` appears twice")));
            }
            entries.push((key, value));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.err("expected `,` or `}` in the header dict")),
            }
        }
        if self.peek().is_some() {
            return Err(self.err("unexpected text after the header dict"));
        }
        Ok(entries)
    }
}

/// The parsed header: dtype descr, and shape.
struct Header {
    descr: String,
    dtype: DType,
    shape: Vec<u64>,
}

fn parse_header(text: &[u8]) -> Result<Header, NpyError> {
    let entries = HeaderParser { s: text, pos: 0 }.dict()?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (key, value) in entries {
        match (key.as_str(), value) {
            ("descr", HeaderValue::Str(s)) => descr = Some(s),
            ("fortran_order", HeaderValue::Bool(b)) => fortran = Some(b),
            ("shape", HeaderValue::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", v) => {
                return Err(NpyError::Header(format!("key `{key}` has a value of the wrong kind: {v:?}")))
            }
            (other, _) => return Err(NpyError::Header(format!("unexpected key `{other}`"))),
        }
    }
    let descr = descr.ok_or_else(|| NpyError::Header("missing key `descr`".into()))?;
    let fortran = fortran.ok_or_else(|| NpyError::Header("missing key `fortran_order`".into()))?;
    let shape = shape.ok_or_else(|| NpyError::Header("missing key `shape`".into()))?;
    let dtype = descr_dtype(&descr)?;
    if fortran {
        return Err(NpyError::FortranOrder);
    }
    Ok(Header { descr, dtype, shape })
}

/// Parse a `.npy` file held in memory.
pub fn read_npy(bytes: &[u8]) -> Result<Tensor, NpyError> {
    let magic = bytes.get(..6).ok_or(NpyError::Truncated {
        what: "the magic string",
        needed: 6,
        available: bytes.len() as u64,
    })?;
    if magic != MAGIC {
        return Err(NpyError::BadMagic { found: magic.to_vec() });
    }
    let available = bytes.len() as u64;
    let (major, minor) = match (bytes.get(6), bytes.get(7)) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return Err(NpyError::Truncated { what: "the version", needed: 8, available }),
    };
    let (len_bytes, header_len) = match major {
        1 => {
            let b = bytes.get(8..10).ok_or(NpyError::Truncated { what: "the header length", needed: 10, available })?;
            (2usize, u64::from(u16::from_le_bytes([b[0], b[1]])))
        }
        2 | 3 => {
            let b = bytes.get(8..12).ok_or(NpyError::Truncated { what: "the header length", needed: 12, available })?;
            (4usize, u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        }
        _ => return Err(NpyError::Version { major, minor }),
    };
    if minor != 0 {
        return Err(NpyError::Version { major, minor });
    }
    if header_len > MAX_HEADER_LEN as u64 {
        return Err(NpyError::HeaderTooLong(header_len));
    }
    let header_start = 8 + len_bytes;
    let data_start = header_start + header_len as usize; // bounded by MAX_HEADER_LEN
    let header = bytes.get(header_start..data_start).ok_or(NpyError::Truncated {
        what: "the header",
        needed: data_start as u64,
        available,
    })?;
    if major < 3 && !header.is_ascii() {
        return Err(NpyError::Header("a version 1.0/2.0 header must be ASCII".into()));
    }
    let header = parse_header(header)?;
    let data = bytes.get(data_start..).unwrap_or_default();

    // Check the shape's claim against the data length before allocating anything.
    let overflow = || NpyError::ShapeOverflow { shape: header.shape.clone() };
    let numel = header.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)?;
    let expected = numel.checked_mul(header.dtype.block_bytes()).ok_or_else(overflow)?;
    let shape: Vec<usize> =
        header.shape.iter().map(|&d| usize::try_from(d)).collect::<Result<_, _>>().map_err(|_| overflow())?;
    if expected != data.len() as u64 {
        return Err(NpyError::DataLength { descr: header.descr, shape, expected, actual: data.len() as u64 });
    }
    Ok(Tensor::from_le_bytes(header.dtype, shape, data)?)
}

/// Read and parse a `.npy` file.
pub fn read_npy_file(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Read { path: path.to_path_buf(), source })?;
    read_npy(&bytes).map_err(|e| NpyError::InFile { path: path.to_path_buf(), source: Box::new(e) })
}

/// Encode a tensor as a `.npy` file (version 1.0, or 2.0 when the header needs it).
/// `bf16` and block-quantized tensors are written as `<f4` (see the module docs).
pub fn write_npy(t: &Tensor) -> Result<Vec<u8>, NpyError> {
    let numel = checked_numel(&t.shape).ok_or_else(|| NpyError::BadTensor(format!("shape {:?} overflows", t.shape)))?;
    if numel != t.numel() {
        return Err(NpyError::BadTensor(format!(
            "shape {:?} has {numel} elements but the tensor holds {}",
            t.shape,
            t.numel()
        )));
    }
    let (descr, data): (&str, Vec<u8>) = match (&t.data, t.dtype) {
        (TensorData::Float(v), DType::F32 | DType::BF16 | DType::Q8_0 | DType::Q4_0 | DType::Int4 { .. }) => {
            ("<f4", v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect())
        }
        (TensorData::Float(_), DType::F64) => ("<f8", t.to_le_bytes()?),
        (TensorData::Float(_), DType::F16) => ("<f2", t.to_le_bytes()?),
        (TensorData::Int(_), DType::I64) => ("<i8", t.to_le_bytes()?),
        (TensorData::Int(_), DType::I32) => ("<i4", t.to_le_bytes()?),
        (TensorData::Int(_), DType::I8) => ("|i1", t.to_le_bytes()?),
        (TensorData::Int(_), DType::U8) => ("|u1", t.to_le_bytes()?),
        (TensorData::Int(_), DType::Bool) => ("|b1", t.to_le_bytes()?),
        (_, d) => return Err(NpyError::BadTensor(format!("a {d} tensor holds data of the wrong kind"))),
    };
    let shape = match t.shape.as_slice() {
        [d] => format!("({d},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so the data starts at a multiple of 64 bytes, then end with '\n'.
    let (version, len_bytes) =
        if header.len() + 1 + 10 + 64 <= usize::from(u16::MAX) { (1u8, 2usize) } else { (2u8, 4usize) };
    let unpadded = 8 + len_bytes + header.len() + 1;
    header.extend(std::iter::repeat_n(' ', (64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(8 + len_bytes + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        let len = u16::try_from(header.len()).map_err(|_| NpyError::BadTensor("header too long".into()))?;
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        let len = u32::try_from(header.len()).map_err(|_| NpyError::BadTensor("header too long".into()))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

/// Encode a tensor and write it to `path`.
pub fn write_npy_file(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    let bytes = write_npy(t)?;
    std::fs::write(path, bytes).map_err(|source| NpyError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn round_trips_every_dtype() {
        let cases = vec![
            Tensor::from_f64(DType::F32, vec![2, 3], vec![1.0, -2.5, 3.25, 0.0, 1e-3, 7.0]).unwrap(),
            Tensor::from_f64(DType::F64, vec![3], vec![0.1, 0.2, f64::NAN]).unwrap(),
            Tensor::from_f64(DType::F16, vec![1, 2], vec![0.5, 65504.0]).unwrap(),
            Tensor::from_i64(DType::I64, vec![2], vec![i64::MIN, i64::MAX]).unwrap(),
            Tensor::from_i64(DType::I32, vec![2, 1], vec![-7, 9]).unwrap(),
            Tensor::from_i64(DType::I8, vec![3], vec![-128, 0, 127]).unwrap(),
            Tensor::from_i64(DType::U8, vec![3], vec![0, 1, 255]).unwrap(),
            Tensor::from_i64(DType::Bool, vec![2, 2], vec![1, 0, 0, 1]).unwrap(),
            Tensor::scalar_f64(DType::F32, 4.5),
            Tensor::from_f64(DType::F32, vec![0, 4], vec![]).unwrap(),
        ];
        for t in cases {
            let bytes = write_npy(&t).unwrap();
            assert_eq!(bytes.len() % 64, (t.to_le_bytes().unwrap().len()) % 64, "data is 64-aligned");
            let back = read_npy(&bytes).unwrap();
            assert!(back.bit_eq(&t), "{t:?} vs {back:?}");
        }
    }

    #[test]
    fn bf16_and_quantized_write_as_f32() {
        let t = Tensor::from_f64(DType::BF16, vec![2], vec![1.5, -3.0]).unwrap();
        let back = read_npy(&write_npy(&t).unwrap()).unwrap();
        assert_eq!(back.dtype, DType::F32);
        assert_eq!(back.to_f64_vec(), vec![1.5, -3.0]);
    }

    #[test]
    fn reads_versions_and_spellings() {
        let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        for v in [1, 2, 3] {
            let t = read_npy(&npy(v, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", &data)).unwrap();
            assert_eq!(t.to_f64_vec(), vec![1.0, 2.0]);
        }
        let t =
            read_npy(&npy(1, "{\"shape\": (1, 2), \"descr\": \"<i1\", \"fortran_order\": False}", &[255, 3])).unwrap();
        assert_eq!((t.dtype, t.shape.clone(), t.to_i64_vec()), (DType::I8, vec![1, 2], vec![-1, 3]));
        let t = read_npy(&npy(1, "{'descr': '|b1', 'fortran_order': False, 'shape': ()}", &[1])).unwrap();
        assert_eq!((t.dtype, t.shape.len(), t.to_i64_vec()), (DType::Bool, 0, vec![1]));
    }

    #[test]
    fn hostile_files_are_refused_with_named_errors() {
        let msg = |b: &[u8]| read_npy(b).unwrap_err().to_string();
        assert!(msg(b"\x93NUM").contains("truncated"));
        assert!(msg(b"PK\x03\x04zzzzzzzz").contains("not a .npy file"));
        assert!(msg(b"\x93NUMPY\x01").contains("version"));
        assert!(msg(b"\x93NUMPY\x09\x00\x00\x00").contains("version 9.0"));
        assert!(msg(b"\x93NUMPY\x01\x00\xff\x00{").contains("truncated"));
        assert!(msg(&npy(2, &" ".repeat(MAX_HEADER_LEN + 1), &[])).contains("exceeds the limit"));
        let h = |s: &str| msg(&npy(1, s, &[0; 8]));
        assert!(h("{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}").contains("big-endian"));
        assert!(h("{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}").contains("unsupported .npy dtype `<c8`"));
        assert!(h("{'descr': '<f4', 'fortran_order': True, 'shape': (2,)}").contains("Fortran"));
        assert!(h("{'descr': '<f4', 'fortran_order': False}").contains("missing key `shape`"));
        assert!(h("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': True}").contains("unexpected key `x`"));
        assert!(h("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}").contains("non-negative integer"));
        assert!(h("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)").contains("expected"));
        assert!(h("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} trailing").contains("unexpected text"));
        assert!(h("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}").contains("twice"));
        assert!(h("{'descr': __import__('os'), 'fortran_order': False, 'shape': (2,)}").contains("malformed"));
        assert!(h("{'descr': '<f4\\x', 'fortran_order': False, 'shape': (2,)}").contains("escape"));
        // Data length claims: too short, too long, and shapes whose byte count overflows.
        assert!(h("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}")
            .contains("needs 12 data bytes, the file has 8"));
        assert!(
            h("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}").contains("needs 4 data bytes, the file has 8")
        );
        assert!(h("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}").contains("overflows"));
        assert!(h("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}")
            .contains("not a non-negative integer"));
        assert!(
            h("{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 0)}").contains("needs 0 data bytes")
        );
    }

    #[test]
    fn files_round_trip_and_name_the_path() {
        let dir = std::env::temp_dir().join(format!("ferrumc-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.npy");
        let t = Tensor::from_i64(DType::I32, vec![2], vec![5, -5]).unwrap();
        write_npy_file(&path, &t).unwrap();
        assert!(read_npy_file(&path).unwrap().bit_eq(&t));
        std::fs::write(&path, b"garbage!").unwrap();
        assert!(read_npy_file(&path).unwrap_err().to_string().contains("x.npy"));
        assert!(read_npy_file(&dir.join("missing.npy")).unwrap_err().to_string().contains("missing.npy"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
