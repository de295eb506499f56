//! Loading module weights: the [`WeightProvider`] trait the interpreter (and every other
//! consumer of weight data) goes through, and [`FileWeights`], which reads the sources a
//! [`WeightDecl`] names relative to a base directory.
//!
//! * `Inline(tensor)`: the literal, cloned (its dtype and shape must equal the decl's).
//! * `Safetensors { file, tensor }`: the named tensor of a memory-mapped safetensors
//!   file. Its dtype and shape must equal the decl's type, except that a decl with a
//!   block-quantized dtype (`q8_0`, `q4_0`, `int4<G>`) reads a `U8` tensor (of any shape)
//!   whose byte length equals the decl type's storage size; the blocks are dequantized.
//! * `Raw { file, offset }`: the storage bytes of the decl's type (little-endian,
//!   `dtype.storage_bytes` long) starting at `offset`.
//!
//! Paths are confined to the base directory: absolute paths and `..` components are
//! refused outright, and the canonicalized file (symlinks resolved) must lie inside the
//! canonicalized base directory. Weight shapes must be static. Every error names the
//! weight, the file and the problem.

use crate::dtype::DType;
use crate::graph::{WeightDecl, WeightSource};
use crate::tensor::{checked_numel, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::tensor::Metadata;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Something that can produce the data of a declared weight.
pub trait WeightProvider {
    /// The weight's tensor. Its dtype and shape must equal `decl.ty`.
    fn load(&self, decl: &WeightDecl) -> Result<Tensor, WeightError>;

    /// The weight's little-endian storage bytes: always exactly `load(decl)?.to_le_bytes()`.
    /// Providers that hold the bytes override this to skip the `f64` tensor (the compiler
    /// reads every weight of an LLM this way).
    fn load_le_bytes(&self, decl: &WeightDecl) -> Result<Vec<u8>, WeightError> {
        self.load(decl)?
            .to_le_bytes()
            .map_err(|e| WeightError::Other { weight: decl.name.clone(), message: e.to_string() })
    }
}

/// Whether `bytes` of a plain `dtype` survive decoding to `f64` values and encoding back
/// unchanged: integers always; floats unless a NaN could change its payload; booleans if
/// every byte is 0 or 1. Quantized blocks never (they are dequantized).
fn round_trips_exactly(dtype: DType, bytes: &[u8]) -> bool {
    match dtype {
        DType::I64 | DType::I32 | DType::I8 | DType::U8 => true,
        DType::Bool => bytes.iter().all(|&b| b <= 1),
        DType::F32 => {
            bytes.chunks_exact(4).all(|c| (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7f80_0000) != 0x7f80_0000)
        }
        DType::F64 => bytes.chunks_exact(8).all(|c| {
            let bits = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            bits & 0x7ff0_0000_0000_0000 != 0x7ff0_0000_0000_0000
        }),
        DType::F16 => bytes.chunks_exact(2).all(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 != 0x7c00),
        DType::BF16 => bytes.chunks_exact(2).all(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7f80 != 0x7f80),
        _ => false,
    }
}

/// Why a weight could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("weight `{weight}`: type {ty} is not static (weights need static shapes)")]
    NotStatic { weight: String, ty: String },
    #[error("weight `{weight}`: file `{file}`: {reason}")]
    Path { weight: String, file: String, reason: String },
    #[error("weight `{weight}`: file `{file}`: {source}")]
    Io { weight: String, file: String, source: std::io::Error },
    #[error("weight `{weight}`: file `{file}`: not a valid safetensors file: {message}")]
    Safetensors { weight: String, file: String, message: String },
    #[error("weight `{weight}`: file `{file}` has no tensor `{tensor}`")]
    MissingTensor { weight: String, file: String, tensor: String },
    #[error("weight `{weight}`: tensor `{tensor}` of file `{file}`: expected {expected}, found {found}")]
    Mismatch { weight: String, file: String, tensor: String, expected: String, found: String },
    #[error("weight `{weight}`: file `{file}`: {len} bytes at offset {offset} reach past the end of the file ({size} bytes)")]
    OutOfBounds { weight: String, file: String, offset: u64, len: u64, size: u64 },
    #[error("weight `{weight}`: file `{file}`: {message}")]
    Decode { weight: String, file: String, message: String },
    #[error("weight `{weight}`: inline literal: {message}")]
    Inline { weight: String, message: String },
    #[error("weight `{weight}`: {message}")]
    Other { weight: String, message: String },
}

/// A provider that only serves `Inline` weights (tests, constant-only modules); any file
/// source is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct InlineWeights;

impl WeightProvider for InlineWeights {
    fn load(&self, decl: &WeightDecl) -> Result<Tensor, WeightError> {
        match &decl.source {
            WeightSource::Inline(t) => load_inline(decl, t),
            WeightSource::Safetensors { file, .. } | WeightSource::Raw { file, .. } => Err(WeightError::Path {
                weight: decl.name.clone(),
                file: file.clone(),
                reason: "this provider only serves inline weights".into(),
            }),
        }
    }
}

/// Reads weight files below a base directory, memory-mapping each file once.
#[derive(Debug)]
pub struct FileWeights {
    base: PathBuf,
    files: Mutex<HashMap<PathBuf, Arc<Mmap>>>,
    headers: Mutex<HashMap<PathBuf, Arc<(usize, Metadata)>>>,
}

impl FileWeights {
    /// A provider resolving relative weight paths against `base_dir` (usually the
    /// directory of the module file).
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        FileWeights { base: base_dir.into(), files: Mutex::new(HashMap::new()), headers: Mutex::new(HashMap::new()) }
    }

    /// The base directory.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// Confine `file` to the base directory and return its canonical path.
    fn resolve(&self, weight: &str, file: &str) -> Result<PathBuf, WeightError> {
        let path_err =
            |reason: String| WeightError::Path { weight: weight.to_string(), file: file.to_string(), reason };
        let rel = Path::new(file);
        if file.is_empty() {
            return Err(path_err("the path is empty".into()));
        }
        for c in rel.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(path_err("`..` components may not leave the module directory".into()))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(path_err(
                        "absolute paths are not allowed; weight paths are relative to the module directory".into(),
                    ))
                }
            }
        }
        let base = self
            .base
            .canonicalize()
            .map_err(|e| path_err(format!("cannot resolve the base directory `{}`: {e}", self.base.display())))?;
        let full = base.join(rel).canonicalize().map_err(|source| WeightError::Io {
            weight: weight.to_string(),
            file: file.to_string(),
            source,
        })?;
        if !full.starts_with(&base) {
            return Err(path_err(format!(
                "resolves to `{}`, outside the base directory `{}` (symlink escape)",
                full.display(),
                base.display()
            )));
        }
        Ok(full)
    }

    fn map(&self, weight: &str, file: &str) -> Result<(PathBuf, Arc<Mmap>), WeightError> {
        let path = self.resolve(weight, file)?;
        let io = |source| WeightError::Io { weight: weight.to_string(), file: file.to_string(), source };
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = files.get(&path) {
            return Ok((path, Arc::clone(m)));
        }
        let f = std::fs::File::open(&path).map_err(io)?;
        if !f.metadata().map_err(io)?.is_file() {
            return Err(WeightError::Path {
                weight: weight.into(),
                file: file.into(),
                reason: "not a regular file".into(),
            });
        }
        // SAFETY: the map is read-only. As with every memory-mapped file, another process
        // truncating or rewriting the file while it is mapped is outside our control; weight
        // files are treated as immutable for the lifetime of the provider.
        let m = Arc::new(unsafe { Mmap::map(&f) }.map_err(io)?);
        files.insert(path.clone(), Arc::clone(&m));
        Ok((path, m))
    }

    fn load_safetensors(
        &self,
        decl: &WeightDecl,
        shape: &[usize],
        file: &str,
        tensor: &str,
    ) -> Result<Tensor, WeightError> {
        let (bytes, range) = self.safetensors_bytes(decl, shape, file, tensor)?;
        Tensor::from_le_bytes(decl.ty.dtype, shape.to_vec(), &bytes[range]).map_err(|e| WeightError::Decode {
            weight: decl.name.clone(),
            file: file.into(),
            message: format!("tensor `{tensor}`: {e}"),
        })
    }

    /// The mapped file and the byte range of `tensor`, checked against `decl`.
    fn safetensors_bytes(
        &self,
        decl: &WeightDecl,
        shape: &[usize],
        file: &str,
        tensor: &str,
    ) -> Result<(Arc<Mmap>, std::ops::Range<usize>), WeightError> {
        let weight = decl.name.as_str();
        let (path, bytes) = self.map(weight, file)?;
        let header = {
            let mut headers = self.headers.lock().unwrap_or_else(|p| p.into_inner());
            match headers.get(&path) {
                Some(h) => Arc::clone(h),
                None => {
                    let parsed = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
                        WeightError::Safetensors { weight: weight.into(), file: file.into(), message: e.to_string() }
                    })?;
                    let h = Arc::new(parsed);
                    headers.insert(path, Arc::clone(&h));
                    h
                }
            }
        };
        let (header_len, metadata) = (&header.0, &header.1);
        let info = metadata.info(tensor).ok_or_else(|| WeightError::MissingTensor {
            weight: weight.into(),
            file: file.into(),
            tensor: tensor.into(),
        })?;
        let mismatch = |expected: String, found: String| WeightError::Mismatch {
            weight: weight.into(),
            file: file.into(),
            tensor: tensor.into(),
            expected,
            found,
        };
        let found_dtype = safetensors_dtype(info.dtype);
        let found_desc = format!(
            "{}{:?}",
            found_dtype.map(|d| d.to_string()).unwrap_or_else(|| format!("{:?}", info.dtype)),
            info.shape
        );
        let (start, end) = info.data_offsets;
        // read_metadata validated that the offsets are contiguous and fit the buffer.
        let data_start = 8usize.checked_add(*header_len).and_then(|s| s.checked_add(start));
        let data_end = 8usize.checked_add(*header_len).and_then(|s| s.checked_add(end));
        let range = match (data_start, data_end) {
            (Some(s), Some(e)) if e >= s && e <= bytes.len() => Some(s..e),
            _ => None,
        }
        .ok_or_else(|| WeightError::Safetensors {
            weight: weight.into(),
            file: file.into(),
            message: format!("data offsets of tensor `{tensor}` lie outside the file"),
        })?;
        if decl.ty.dtype.is_quantized() {
            let numel = checked_numel(shape).unwrap_or(usize::MAX) as u64;
            let need = decl.ty.dtype.storage_bytes(numel, shape.last().copied().unwrap_or(1) as u64);
            if found_dtype != Some(DType::U8) || need != Some(range.len() as u64) {
                let expected = match need {
                    Some(n) => format!("a u8 tensor of {n} bytes holding {} storage", decl.ty),
                    None => format!("{} (whose storage size is invalid)", decl.ty),
                };
                return Err(mismatch(expected, format!("{found_desc} ({} bytes)", range.len())));
            }
        } else if found_dtype != Some(decl.ty.dtype) || info.shape != shape {
            return Err(mismatch(decl.ty.to_string(), found_desc));
        }
        Ok((bytes, range))
    }

    fn load_raw(&self, decl: &WeightDecl, shape: &[usize], file: &str, offset: u64) -> Result<Tensor, WeightError> {
        let weight = decl.name.as_str();
        let numel = checked_numel(shape)
            .ok_or_else(|| WeightError::NotStatic { weight: weight.into(), ty: decl.ty.to_string() })?;
        let len =
            decl.ty.dtype.storage_bytes(numel as u64, shape.last().copied().unwrap_or(1) as u64).ok_or_else(|| {
                WeightError::Decode {
                    weight: weight.into(),
                    file: file.into(),
                    message: format!(
                        "type {} has no valid storage size (overflow or a last dim not a multiple of the block)",
                        decl.ty
                    ),
                }
            })?;
        let (_, bytes) = self.map(weight, file)?;
        let size = bytes.len() as u64;
        let oob = || WeightError::OutOfBounds { weight: weight.into(), file: file.into(), offset, len, size };
        let end = offset.checked_add(len).ok_or_else(oob)?;
        if end > size {
            return Err(oob());
        }
        let slice = bytes.get(offset as usize..end as usize).ok_or_else(oob)?;
        Tensor::from_le_bytes(decl.ty.dtype, shape.to_vec(), slice).map_err(|e| WeightError::Decode {
            weight: weight.into(),
            file: file.into(),
            message: e.to_string(),
        })
    }
}

/// The static shape of a decl, or an error naming the weight.
pub fn static_shape(decl: &WeightDecl) -> Result<Vec<usize>, WeightError> {
    let not_static = || WeightError::NotStatic { weight: decl.name.clone(), ty: decl.ty.to_string() };
    let dims = decl.ty.fixed_shape().ok_or_else(not_static)?;
    let shape: Vec<usize> =
        dims.iter().map(|&d| usize::try_from(d)).collect::<Result<_, _>>().map_err(|_| not_static())?;
    checked_numel(&shape).ok_or_else(not_static)?;
    Ok(shape)
}

fn load_inline(decl: &WeightDecl, t: &Tensor) -> Result<Tensor, WeightError> {
    let shape = static_shape(decl)?;
    if t.dtype != decl.ty.dtype || t.shape != shape {
        return Err(WeightError::Inline {
            weight: decl.name.clone(),
            message: format!("expected {}, found {}{:?}", decl.ty, t.dtype, t.shape),
        });
    }
    let kind_ok = match &t.data {
        TensorData::Float(_) => t.dtype.is_float() || t.dtype.is_quantized(),
        TensorData::Int(_) => t.dtype.is_int() || t.dtype.is_bool(),
    };
    if !kind_ok || checked_numel(&t.shape) != Some(t.numel()) {
        return Err(WeightError::Inline {
            weight: decl.name.clone(),
            message: format!("the literal's data does not match its type {}{:?}", t.dtype, t.shape),
        });
    }
    Ok(t.clone())
}

fn safetensors_dtype(d: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match d {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::F64 => DType::F64,
        S::I64 => DType::I64,
        S::I32 => DType::I32,
        S::I8 => DType::I8,
        S::U8 => DType::U8,
        S::BOOL => DType::Bool,
        _ => return None,
    })
}

impl WeightProvider for FileWeights {
    fn load(&self, decl: &WeightDecl) -> Result<Tensor, WeightError> {
        match &decl.source {
            WeightSource::Inline(t) => load_inline(decl, t),
            WeightSource::Safetensors { file, tensor } => {
                let shape = static_shape(decl)?;
                self.load_safetensors(decl, &shape, file, tensor)
            }
            WeightSource::Raw { file, offset } => {
                let shape = static_shape(decl)?;
                self.load_raw(decl, &shape, file, *offset)
            }
        }
    }

    fn load_le_bytes(&self, decl: &WeightDecl) -> Result<Vec<u8>, WeightError> {
        if let WeightSource::Safetensors { file, tensor } = &decl.source {
            let shape = static_shape(decl)?;
            let (bytes, range) = self.safetensors_bytes(decl, &shape, file, tensor)?;
            let data = &bytes[range];
            if !decl.ty.dtype.is_quantized() && round_trips_exactly(decl.ty.dtype, data) {
                return Ok(data.to_vec());
            }
        }
        self.load(decl)?
            .to_le_bytes()
            .map_err(|e| WeightError::Other { weight: decl.name.clone(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TensorType;
    use safetensors::tensor::TensorView;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fresh temporary directory (removed on drop).
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let p = std::env::temp_dir().join(format!("ferrumc-weights-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn decl(name: &str, ty: TensorType, source: WeightSource) -> WeightDecl {
        WeightDecl { name: name.into(), ty, source }
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn write_safetensors(path: &Path, tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView<'_>)> =
            tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    }

    #[test]
    fn safetensors_raw_and_inline_sources() {
        let dir = TempDir::new();
        let mut q8 = vec![0x00, 0x3c]; // scale 1.0
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        write_safetensors(
            &dir.0.join("m.safetensors"),
            &[
                ("w", safetensors::Dtype::F32, vec![2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
                ("ids", safetensors::Dtype::I64, vec![2], [7i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect()),
                ("q", safetensors::Dtype::U8, vec![34], q8),
            ],
        );
        let mut raw = vec![0u8; 3];
        raw.extend(f32_bytes(&[0.5, -0.5]));
        std::fs::write(dir.0.join("b.bin"), &raw).unwrap();
        let p = FileWeights::new(&dir.0);
        let st = |t: &str| WeightSource::Safetensors { file: "m.safetensors".into(), tensor: t.into() };

        let w = p.load(&decl("w", TensorType::fixed(DType::F32, &[2, 2]), st("w"))).unwrap();
        assert_eq!(w.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0]);
        let ids = p.load(&decl("ids", TensorType::fixed(DType::I64, &[2]), st("ids"))).unwrap();
        assert_eq!(ids.to_i64_vec(), vec![7, -1]);
        let q = p.load(&decl("q", TensorType::fixed(DType::Q8_0, &[1, 32]), st("q"))).unwrap();
        assert_eq!((q.dtype, q.to_f64_vec()[0], q.to_f64_vec()[31]), (DType::Q8_0, -16.0, 15.0));
        let b = p
            .load(&decl(
                "b",
                TensorType::fixed(DType::F32, &[2]),
                WeightSource::Raw { file: "./b.bin".into(), offset: 3 },
            ))
            .unwrap();
        assert_eq!(b.to_f64_vec(), vec![0.5, -0.5]);
        let lit = Tensor::from_f64(DType::F32, vec![1], vec![2.0]).unwrap();
        let i = p.load(&decl("c", TensorType::fixed(DType::F32, &[1]), WeightSource::Inline(lit.clone()))).unwrap();
        assert!(i.bit_eq(&lit));
        assert!(InlineWeights.load(&decl("c", TensorType::fixed(DType::F32, &[1]), WeightSource::Inline(lit))).is_ok());
        assert!(InlineWeights.load(&decl("w", TensorType::fixed(DType::F32, &[2, 2]), st("w"))).is_err());
    }

    #[test]
    fn load_le_bytes_equals_the_decoded_tensors_bytes() {
        // The fast path copies the stored bytes; the reference decodes to f64 and encodes.
        let dir = TempDir::new();
        let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
        let nan_f32 = f32_bytes(&[1.0, f32::from_bits(0x7f80_0001), -0.0]);
        write_safetensors(
            &dir.0.join("m.safetensors"),
            &[
                ("f", safetensors::Dtype::F32, vec![2, 2], f32_bytes(&[1.5, -0.0, 1e-42, 3.0e38])),
                ("nan", safetensors::Dtype::F32, vec![3], nan_f32),
                ("h", safetensors::Dtype::F16, vec![2], [f16(0.1), f16(-2.0)].concat()),
                ("ids", safetensors::Dtype::I64, vec![2], [7i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect()),
                ("b", safetensors::Dtype::BOOL, vec![3], vec![0, 1, 2]),
            ],
        );
        let p = FileWeights::new(&dir.0);
        let st = |t: &str| WeightSource::Safetensors { file: "m.safetensors".into(), tensor: t.into() };
        for (name, dtype, shape) in [
            ("f", DType::F32, vec![2, 2]),
            ("nan", DType::F32, vec![3]),
            ("h", DType::F16, vec![2]),
            ("ids", DType::I64, vec![2]),
            ("b", DType::Bool, vec![3]),
        ] {
            let d = decl(name, TensorType::fixed(dtype, &shape), st(name));
            let want = p.load(&d).unwrap().to_le_bytes().unwrap();
            assert_eq!(p.load_le_bytes(&d).unwrap(), want, "{name}");
        }
        assert!(p.load_le_bytes(&decl("f", TensorType::fixed(DType::F32, &[4]), st("f"))).is_err());
    }

    #[test]
    fn mismatches_are_named() {
        let dir = TempDir::new();
        write_safetensors(
            &dir.0.join("m.safetensors"),
            &[("w", safetensors::Dtype::F32, vec![2, 2], f32_bytes(&[0.0; 4]))],
        );
        std::fs::write(dir.0.join("b.bin"), [0u8; 8]).unwrap();
        let p = FileWeights::new(&dir.0);
        let st = |t: &str| WeightSource::Safetensors { file: "m.safetensors".into(), tensor: t.into() };
        let msg = |d: WeightDecl| p.load(&d).unwrap_err().to_string();

        let m = msg(decl("w", TensorType::fixed(DType::F16, &[2, 2]), st("w")));
        assert!(
            m.contains("weight `w`")
                && m.contains("m.safetensors")
                && m.contains("expected f16[2, 2], found f32[2, 2]"),
            "{m}"
        );
        let m = msg(decl("w", TensorType::fixed(DType::F32, &[4]), st("w")));
        assert!(m.contains("expected f32[4], found f32[2, 2]"), "{m}");
        let m = msg(decl("v", TensorType::fixed(DType::F32, &[4]), st("nope")));
        assert!(m.contains("has no tensor `nope`"), "{m}");
        let m = msg(decl("q", TensorType::fixed(DType::Q4_0, &[1, 32]), st("w")));
        assert!(m.contains("u8 tensor of 18 bytes"), "{m}");
        let m =
            msg(decl("r", TensorType::fixed(DType::F32, &[2]), WeightSource::Raw { file: "b.bin".into(), offset: 4 }));
        assert!(m.contains("8 bytes at offset 4 reach past the end of the file (8 bytes)"), "{m}");
        let m = msg(decl(
            "r",
            TensorType::fixed(DType::F32, &[2]),
            WeightSource::Raw { file: "b.bin".into(), offset: u64::MAX },
        ));
        assert!(m.contains("reach past the end"), "{m}");
        let m = msg(decl(
            "s",
            TensorType::new(DType::F32, vec![crate::Dim::sym("n")]),
            WeightSource::Raw { file: "b.bin".into(), offset: 0 },
        ));
        assert!(m.contains("not static"), "{m}");
        let m = msg(decl(
            "s",
            TensorType::fixed(DType::F32, &[1]),
            WeightSource::Raw { file: "missing.bin".into(), offset: 0 },
        ));
        assert!(m.contains("weight `s`") && m.contains("missing.bin"), "{m}");
        let m = msg(decl(
            "s",
            TensorType::fixed(DType::F32, &[2]),
            WeightSource::Inline(Tensor::scalar_f64(DType::F32, 1.0)),
        ));
        assert!(m.contains("expected f32[2]"), "{m}");
    }

    #[test]
    fn lying_safetensors_headers_are_refused() {
        let dir = TempDir::new();
        let p = FileWeights::new(&dir.0);
        let write = |name: &str, header: &str, data_len: usize| {
            let mut b = (header.len() as u64).to_le_bytes().to_vec();
            b.extend(header.as_bytes());
            b.extend(vec![0u8; data_len]);
            std::fs::write(dir.0.join(name), b).unwrap();
        };
        // Offsets claim more data than the file has.
        write("a.safetensors", r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 8);
        // Shape disagrees with the offsets.
        write("b.safetensors", r#"{"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,16]}}"#, 16);
        // Shape whose element count overflows.
        write("c.safetensors", r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#, 16);
        // Header length larger than the file.
        std::fs::write(dir.0.join("d.safetensors"), 1_000_000u64.to_le_bytes()).unwrap();
        // Not even the 8-byte length.
        std::fs::write(dir.0.join("e.safetensors"), [1u8, 2]).unwrap();
        for f in ["a", "b", "c", "d", "e"] {
            let file = format!("{f}.safetensors");
            let d = decl(
                "w",
                TensorType::fixed(DType::F32, &[4]),
                WeightSource::Safetensors { file: file.clone(), tensor: "w".into() },
            );
            let m = p.load(&d).unwrap_err().to_string();
            assert!(m.contains("not a valid safetensors file") && m.contains(&file), "{m}");
        }
    }

    #[test]
    fn paths_are_confined() {
        let dir = TempDir::new();
        let outside = TempDir::new();
        std::fs::write(outside.0.join("secret.bin"), [0u8; 16]).unwrap();
        std::fs::create_dir_all(dir.0.join("sub")).unwrap();
        std::fs::write(dir.0.join("sub/ok.bin"), [0u8; 16]).unwrap();
        let p = FileWeights::new(&dir.0);
        let raw = |file: &str| {
            decl("w", TensorType::fixed(DType::F32, &[2]), WeightSource::Raw { file: file.into(), offset: 0 })
        };
        assert!(p.load(&raw("sub/ok.bin")).is_ok());
        let abs = outside.0.join("secret.bin");
        let m = p.load(&raw(abs.to_str().unwrap())).unwrap_err().to_string();
        assert!(m.contains("absolute paths are not allowed"), "{m}");
        let m = p.load(&raw("sub/../sub/ok.bin")).unwrap_err().to_string();
        assert!(m.contains("`..`"), "{m}");
        assert!(p.load(&raw("")).unwrap_err().to_string().contains("empty"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&abs, dir.0.join("link.bin")).unwrap();
            std::os::unix::fs::symlink(&outside.0, dir.0.join("linkdir")).unwrap();
            std::os::unix::fs::symlink(dir.0.join("sub/ok.bin"), dir.0.join("inside.bin")).unwrap();
            let m = p.load(&raw("link.bin")).unwrap_err().to_string();
            assert!(m.contains("outside the base directory") && m.contains("weight `w`"), "{m}");
            assert!(p.load(&raw("linkdir/secret.bin")).unwrap_err().to_string().contains("outside the base directory"));
            assert!(p.load(&raw("inside.bin")).is_ok(), "symlinks that stay inside are fine");
        }
    }
}
