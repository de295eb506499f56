//! `ferrumc compile` (ModelIR → artifact file), `ferrumc run` on an artifact (through
//! `ferrumc_runtime::Model` with the shipped micro-kernels) and `ferrumc inspect`.

use crate::input::{CliError, LoadedModule};
use crate::progress::CompileBar;
use crate::run::{read_input_tensor, summarize, write_outputs};
use ferrumc_codegen::compile::{compile_to_builder, CompileOptions};
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::Tensor;
use ferrumc_passes::QuantScheme;
use ferrumc_runtime::artifact::{format::MAGIC, Artifact, Binding, DType as RtDType, Placement};
use ferrumc_runtime::model::Tensor as RtTensor;
use std::collections::BTreeSet;
use std::path::Path;

/// Whether the file starts with the artifact magic.
pub fn is_artifact(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == MAGIC
}

/// `--max-dim NAME=N` arguments (`compile`, `opt`) as symbol bounds.
pub fn parse_max_dims(args: &[String]) -> Result<std::collections::BTreeMap<String, i64>, CliError> {
    let mut bounds = std::collections::BTreeMap::new();
    for arg in args {
        let parsed = arg.split_once('=').and_then(|(n, v)| Some((n.to_string(), v.parse::<i64>().ok()?)));
        match parsed {
            Some((name, v)) if v >= 1 && !name.is_empty() => {
                bounds.insert(name, v);
            }
            _ => return Err(CliError::new(format!("error: --max-dim `{arg}` is not of the form NAME=N with N ≥ 1"))),
        }
    }
    Ok(bounds)
}

/// `ferrumc compile`.
pub fn compile(
    loaded: &LoadedModule,
    level: u8,
    quantize: Option<&str>,
    max_dims: &[String],
    bind_inputs: &[String],
    output: &Path,
) -> Result<(), CliError> {
    let mut options = CompileOptions { level, ..CompileOptions::default() };
    for arg in bind_inputs {
        let (name, file) = arg
            .split_once('=')
            .filter(|(n, f)| !n.is_empty() && !f.is_empty())
            .ok_or_else(|| CliError::new(format!("error: --bind-input `{arg}` is not of the form NAME=FILE.npy")))?;
        let value = read_input_tensor(Path::new(file))?;
        if options.bound_inputs.insert(name.to_string(), value).is_some() {
            return Err(CliError::new(format!("error: --bind-input `{name}` is given twice")));
        }
    }
    if let Some(q) = quantize {
        options.quantize = Some(QuantScheme::parse(q).map_err(|e| CliError::new(format!("error: --quantize: {e}")))?);
    }
    options.dim_bounds = parse_max_dims(max_dims)?;
    let weights = FileWeights::new(loaded.base_dir.clone());
    let bar = CompileBar::for_stderr();
    options.progress = bar.hook();
    let compiled = compile_to_builder(&loaded.module, &weights, &options);
    bar.finish();
    let builder = compiled.map_err(|e| CliError::new(format!("error: {e}")))?;
    // Streamed to the file (validated first), so the artifact is not held twice in memory; a
    // failed write removes the partial file.
    let cannot_write = |e: String| CliError::new(format!("error: {}: cannot write: {e}", output.display()));
    let written = std::fs::File::create(output).map_err(|e| cannot_write(e.to_string())).and_then(|file| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let n = builder.write_to(&mut w).map_err(|e| cannot_write(e.to_string()))?;
        std::io::Write::flush(&mut w).map_err(|e| cannot_write(e.to_string()))?;
        Ok(n)
    });
    let written = written.inspect_err(|_| {
        let _ = std::fs::remove_file(output);
    })?;
    println!("wrote {} ({written} bytes)", output.display());
    Ok(())
}

pub fn to_runtime(name: &str, t: &Tensor) -> Result<RtTensor, CliError> {
    use ferrumc_ir::DType as D;
    let dtype = match t.dtype {
        D::F32 => RtDType::F32,
        D::F16 => RtDType::F16,
        D::BF16 => RtDType::BF16,
        D::F64 => RtDType::F64,
        D::I64 => RtDType::I64,
        D::I32 => RtDType::I32,
        D::I8 => RtDType::I8,
        D::U8 => RtDType::U8,
        D::Bool => RtDType::Bool,
        other => return Err(CliError::new(format!("error: input `{name}`: dtype {other} is not supported"))),
    };
    let bytes = t.to_le_bytes().map_err(|e| CliError::new(format!("error: input `{name}`: {e}")))?;
    RtTensor::new(dtype, t.shape.clone(), bytes).map_err(|e| CliError::new(format!("error: input `{name}`: {e}")))
}

pub fn from_runtime(name: &str, t: &RtTensor) -> Result<Tensor, CliError> {
    use ferrumc_ir::DType as D;
    let dtype = match t.dtype() {
        RtDType::F32 => D::F32,
        RtDType::F16 => D::F16,
        RtDType::BF16 => D::BF16,
        RtDType::F64 => D::F64,
        RtDType::I64 => D::I64,
        RtDType::I32 => D::I32,
        RtDType::I8 => D::I8,
        RtDType::U8 => D::U8,
        RtDType::Bool => D::Bool,
        other => return Err(CliError::new(format!("error: output `{name}`: dtype {other} is not supported"))),
    };
    Tensor::from_le_bytes(dtype, t.shape().to_vec(), t.bytes())
        .map_err(|e| CliError::new(format!("error: output `{name}`: {e}")))
}

/// `ferrumc run model.ferrumc`.
pub fn run(
    path: &Path,
    input_args: &[String],
    function: Option<&str>,
    output_dir: Option<&Path>,
) -> Result<(), CliError> {
    // A model that is not an artifact is compiled in memory first (the JIT path: nothing is
    // written), at the default `-O2`.
    // One run reads each weight once: a copy onto huge pages would cost more than it saves.
    let mut model = crate::runnable::open(path, 2, None, Placement::Mapped)?.model;
    let entries: Vec<String> = model.entry_points().iter().map(|e| e.name.clone()).collect();
    let entry = match function {
        Some(f) => f.to_string(),
        None => entries
            .iter()
            .find(|e| *e == "forward")
            .or(entries.first())
            .cloned()
            .ok_or_else(|| CliError::new(format!("error: {} has no entry points", path.display())))?,
    };
    let mut inputs: Vec<(String, RtTensor)> = Vec::new();
    let mut seen = BTreeSet::new();
    for arg in input_args {
        let (name, file) = arg
            .split_once('=')
            .ok_or_else(|| CliError::new(format!("error: --input `{arg}` is not of the form NAME=FILE.npy")))?;
        if !seen.insert(name.to_string()) {
            return Err(CliError::new(format!("error: --input `{name}` is given twice")));
        }
        let t = read_input_tensor(Path::new(file))?;
        inputs.push((name.to_string(), to_runtime(name, &t)?));
    }
    let views: Vec<(&str, _)> = inputs.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    let outs = model.run(&entry, &views).map_err(|e| CliError::new(format!("error: {e}")))?;
    let outputs =
        outs.iter().map(|(n, t)| Ok((n.clone(), from_runtime(n, t)?))).collect::<Result<Vec<_>, CliError>>()?;
    let files = write_outputs(&outputs, output_dir)?;
    for (name, tensor) in &outputs {
        println!("{name}: {}", summarize(tensor));
    }
    for path in &files {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `ferrumc inspect model.ferrumc`.
pub fn inspect(path: &Path) -> Result<(), CliError> {
    // Memory-mapped and fully validated (checksum, versions, target, CPU features) like `run`.
    let a = Artifact::open_with(path, Placement::Mapped)
        .map_err(|e| CliError::new(format!("error: {}: {e}", path.display())))?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or_default();
    let m = a.manifest();
    println!("{}: ferrumc artifact, {size} bytes", path.display());
    println!("ferrumc version: {}", m.ferrumc_version);
    println!("target: {}", m.target);
    println!("cpu features: {}", m.cpu_features.join(", "));
    println!("fn-table version: {}", m.fn_table_version);
    println!("entry points:");
    for ep in &m.entry_points {
        let sig = |s: &[ferrumc_runtime::artifact::TensorSig]| {
            s.iter()
                .map(|t| {
                    let range = t.range.map(|(lo, hi)| format!(" in {lo}..={hi}")).unwrap_or_default();
                    format!("{}: {}{}{range}", t.name, t.dtype, t.shape_string())
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("  {}({}) -> ({})", ep.name, sig(&ep.inputs), sig(&ep.outputs));
        if let Some(bound) = m.metadata.get("compile.bound_inputs") {
            println!("    bound at compile time (not inputs): {bound}");
        }
        for b in m.memory_plans.get(&ep.name).map(Vec::as_slice).unwrap_or(&[]) {
            let bounds: Vec<String> = b.bounds.iter().map(|(s, v)| format!("{s} <= {v}")).collect();
            println!(
                "    arena {} bytes when {}",
                b.arena_size,
                if bounds.is_empty() { "always".into() } else { bounds.join(", ") }
            );
        }
        let steps = m.schedules.get(&ep.name).map(Vec::as_slice).unwrap_or(&[]);
        println!("    schedule: {} step(s)", steps.len());
        for (i, s) in steps.iter().enumerate() {
            let name = m.kernels.get(s.kernel as usize).map_or("?", |k| k.name.as_str());
            let binds: Vec<String> = s
                .bindings
                .iter()
                .map(|b| match b {
                    Binding::Arena { offset } => format!("arena+{offset}"),
                    Binding::Weight { index } => format!("w{index}"),
                    Binding::Input { index } => format!("in{index}"),
                    Binding::Output { index } => format!("out{index}"),
                    Binding::State { index } => format!("state{index}"),
                })
                .collect();
            println!("      {i}: {name} [{}] extent {} grain {}", binds.join(", "), s.extent, s.grain);
        }
    }
    println!("kernels: {}", m.kernels.len());
    for (i, k) in m.kernels.iter().enumerate() {
        println!("  {i}: {} ({} bytes at {})", k.name, k.code_len, k.code_offset);
    }
    let total: u64 = m.weights.iter().map(|w| w.len).sum();
    println!("weights: {} ({total} bytes)", m.weights.len());
    for (i, w) in m.weights.iter().enumerate() {
        println!("  {i}: {} {}{:?} ({} bytes)", w.name, w.dtype, w.shape, w.len);
    }
    if !m.metadata.is_empty() {
        println!("metadata:");
        for (k, v) in &m.metadata {
            println!("  {k} = {v}");
        }
    }
    Ok(())
}
