//! Example: run a compiled ferrumc artifact with `ferrumc-runtime` alone (no compiler crate).
//!
//! ```text
//! run_artifact MODEL.ferrumc [--entry NAME] [--threads N] [--output-dir DIR] [NAME=FILE.npy ...]
//! ```
//!
//! Loads (memory-maps and validates) the artifact, prints every entry point with its symbolic
//! signature, then runs one entry point (`--entry`, default `forward` if present, else the
//! first) on the given `.npy` inputs. Inputs not given are zero-filled, every symbolic dim set
//! to 1. Each output is printed (dtype, shape, first values) and, with `--output-dir`, written
//! as `DIR/NAME.npy`. The small `.npy` reader/writer below covers the plain dtypes the runtime
//! accepts (little-endian, C order).

use ferrumc_runtime::artifact::{DType, TensorSig};
use ferrumc_runtime::model::{Model, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Parsed command line.
#[derive(Debug, Default)]
struct Args {
    artifact: PathBuf,
    entry: Option<String>,
    threads: Option<usize>,
    output_dir: Option<PathBuf>,
    inputs: Vec<(String, PathBuf)>,
}

const USAGE: &str =
    "usage: run_artifact MODEL.ferrumc [--entry NAME] [--threads N] [--output-dir DIR] [NAME=FILE.npy ...]";

fn parse_args(argv: Vec<String>) -> Result<Args, String> {
    let mut args = Args::default();
    let mut artifact = None;
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match a.as_str() {
            "--entry" => args.entry = Some(value("--entry")?),
            "--output-dir" => args.output_dir = Some(PathBuf::from(value("--output-dir")?)),
            "--threads" => {
                let v = value("--threads")?;
                args.threads = Some(v.parse().ok().filter(|&n| n >= 1).ok_or(format!("--threads `{v}`: not ≥ 1"))?);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ if a.starts_with('-') => return Err(format!("unknown option `{a}`\n{USAGE}")),
            _ => match a.split_once('=') {
                Some((name, file)) => args.inputs.push((name.to_string(), PathBuf::from(file))),
                None if artifact.is_none() => artifact = Some(PathBuf::from(a)),
                None => return Err(format!("unexpected argument `{a}` (inputs are NAME=FILE.npy)\n{USAGE}")),
            },
        }
    }
    args.artifact = artifact.ok_or_else(|| USAGE.to_string())?;
    Ok(args)
}

fn run(argv: Vec<String>) -> Result<(), String> {
    let args = parse_args(argv)?;
    let shown = args.artifact.display().to_string();
    // 1. Load: checksum, format/ABI versions and CPU features are checked here.
    let model = Model::load(&args.artifact).map_err(|e| format!("{shown}: {e}"))?;
    // 2. Attach the runtime's micro-kernel table (kernels call into it).
    let mut model = model.with_fn_table(ferrumc_runtime::ukernels::fn_table()).map_err(|e| format!("{shown}: {e}"))?;
    if let Some(t) = args.threads {
        model = model.with_threads(t);
    }

    println!("{shown}: {} entry point(s)", model.entry_points().len());
    for ep in model.entry_points() {
        println!("  {}({}) -> ({})", ep.name, signature(&ep.inputs), signature(&ep.outputs));
    }

    let entry = match &args.entry {
        Some(e) => model.entry_points().iter().find(|ep| &ep.name == e),
        None => model.entry_points().iter().find(|ep| ep.name == "forward").or(model.entry_points().first()),
    };
    let entry =
        entry.ok_or_else(|| format!("{shown}: no entry point {}", args.entry.as_deref().unwrap_or("")))?.clone();

    // 3. Inputs: the given .npy files, zeros for the rest.
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, file) in &args.inputs {
        if !entry.inputs.iter().any(|s| &s.name == name) {
            return Err(format!("`{}` has no input `{name}`", entry.name));
        }
        tensors.push((name.clone(), read_npy(file)?));
    }
    for sig in &entry.inputs {
        if !tensors.iter().any(|(n, _)| n == &sig.name) {
            let t = zeros(sig)?;
            println!("input {}: zeros {:?}", sig.name, t.shape());
            tensors.push((sig.name.clone(), t));
        }
    }

    // 4. Run (inputs by name, in any order) and report.
    let views: Vec<(&str, _)> = tensors.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    let start = std::time::Instant::now();
    let outputs = model.run(&entry.name, &views).map_err(|e| format!("{}: {e}", entry.name))?;
    println!("ran {} in {:.3} ms", entry.name, start.elapsed().as_secs_f64() * 1e3);
    for (name, t) in &outputs {
        println!("{name}: {} {:?} [{}]", t.dtype(), t.shape(), first_values(t));
    }
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, t) in &outputs {
            let safe: String =
                name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
            let path = dir.join(format!("{safe}.npy"));
            std::fs::write(&path, write_npy(t)?).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn signature(sigs: &[TensorSig]) -> String {
    sigs.iter().map(|s| format!("{}: {}{}", s.name, s.dtype, s.shape_string())).collect::<Vec<_>>().join(", ")
}

/// A zero tensor for `sig`, every symbolic dim set to 1.
fn zeros(sig: &TensorSig) -> Result<Tensor, String> {
    let ones: BTreeMap<String, i64> = sig.dims.iter().flat_map(|d| d.symbols()).map(|s| (s.to_string(), 1)).collect();
    let shape = sig
        .dims
        .iter()
        .map(|d| d.eval(&ones).ok().and_then(|v| usize::try_from(v).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| format!("input `{}`: cannot size {}", sig.name, sig.shape_string()))?;
    let bytes = shape.iter().product::<usize>() * element_size(sig.dtype).ok_or("quantized input")?;
    Tensor::new(sig.dtype, shape, vec![0; bytes]).map_err(|e| e.to_string())
}

/// Up to 8 values as text.
fn first_values(t: &Tensor) -> String {
    let shown: Vec<String> = match t.dtype() {
        DType::F32 => t.to_f32().unwrap_or_default().iter().take(8).map(|v| format!("{v:.6}")).collect(),
        DType::I64 => t.to_i64().unwrap_or_default().iter().take(8).map(i64::to_string).collect(),
        _ => t.bytes().iter().take(8).map(u8::to_string).collect(),
    };
    shown.join(", ")
}

/// npy descr ↔ runtime dtype.
const DESCRS: [(&str, DType); 7] = [
    ("<f4", DType::F32),
    ("<f2", DType::F16),
    ("<i8", DType::I64),
    ("<i4", DType::I32),
    ("|u1", DType::U8),
    ("|i1", DType::I8),
    ("|b1", DType::Bool),
];

fn element_size(d: DType) -> Option<usize> {
    let (per, bytes) = d.block();
    (per == 1).then_some(bytes as usize)
}

/// Reads a C-order little-endian `.npy` file (format 1.0–3.0) of a plain dtype.
fn read_npy(path: &Path) -> Result<Tensor, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let bad = |why: &str| format!("{shown}: not a supported .npy file ({why})");
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("unknown version")),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr").and_then(|v| v.strip_prefix('\'')?.split('\'').next()).ok_or_else(|| bad("descr"))?;
    let dtype = DESCRS.iter().find(|(d, _)| *d == descr).map(|(_, t)| *t).ok_or_else(|| bad(descr))?;
    if field("fortran_order").is_none_or(|v| !v.starts_with("False")) {
        return Err(bad("Fortran order"));
    }
    let shape_text = field("shape").and_then(|v| v.strip_prefix('(')?.split(')').next()).ok_or_else(|| bad("shape"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("shape")))
        .collect::<Result<Vec<_>, _>>()?;
    let data = bytes[start + header_len..].to_vec();
    Tensor::new(dtype, shape, data).map_err(|e| format!("{shown}: {e}"))
}

/// Writes a tensor as `.npy` version 1.0.
fn write_npy(t: &Tensor) -> Result<Vec<u8>, String> {
    let descr = DESCRS.iter().find(|(_, d)| *d == t.dtype()).map(|(s, _)| *s).ok_or("dtype has no .npy form")?;
    let dims: Vec<String> = t.shape().iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so the data starts at a multiple of 64 bytes; the header ends with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(header.len()).map_err(|_| "header too long")?.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(t.bytes());
    Ok(out)
}
