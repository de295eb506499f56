//! A model ready to run through `ferrumc_runtime::Model`, for `run`, `bench` and `generate`: a
//! compiled artifact is loaded in the given placement (mapped, or copied onto huge pages); any other model input (Hugging Face folder, `.onnx`,
//! `.fir`, `.json`) is compiled in memory first (JIT-style, nothing written) with the given
//! `-O` level. Also: binding `--input`/`--zeros` arguments to an entry point's signature,
//! and synthesizing zero-filled `past_*` KV-cache inputs for a given past length.

use crate::artifact_cmd::{is_artifact, to_runtime};
use crate::input::{load_module, CliError};
use crate::progress::CompileBar;
use crate::run::read_input_tensor;
use ferrumc_codegen::compile::{compile_module, CompileOptions};
use ferrumc_ir::weights::FileWeights;
use ferrumc_runtime::artifact::{EntryPoint, Placement, TensorSig};
use ferrumc_runtime::model::{Model, Tensor as RtTensor};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A loaded model and what loading cost.
#[derive(Debug)]
pub struct Runnable {
    pub model: Model,
    /// Time spent compiling in memory (`None` for an artifact file).
    pub compile_time: Option<Duration>,
    /// Time to map (or copy) and validate the artifact.
    pub load_time: Duration,
    /// Time to attach the micro-kernels, start the threads and allocate the arenas (`init`).
    pub init_time: Duration,
    /// The folder the artifact or model input lives in (where `tokenizer.json` is looked for).
    pub base_dir: PathBuf,
}

/// Load `input` (artifact or model), attach the micro-kernel table, set the thread count
/// and run `init` (threads, arenas), so that the first timed run does no set-up work.
/// `placement` applies to an artifact file (a model compiled in memory is copied anyway).
pub fn open(input: &Path, level: u8, threads: Option<usize>, placement: Placement) -> Result<Runnable, CliError> {
    let shown = input.display();
    let (model, compile_time, load_time, base_dir) = if is_artifact(input) {
        let start = Instant::now();
        let model = Model::load_with(input, placement).map_err(|e| CliError::new(format!("error: {shown}: {e}")))?;
        let base = input.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        (model, None, start.elapsed(), base.to_path_buf())
    } else {
        let loaded = load_module(input)?;
        loaded.verified()?;
        let start = Instant::now();
        let bar = CompileBar::for_stderr();
        let options = CompileOptions { level, progress: bar.hook(), ..CompileOptions::default() };
        let weights = FileWeights::new(loaded.base_dir.clone());
        let compiled = compile_module(&loaded.module, &weights, &options);
        bar.finish();
        let bytes = compiled.map_err(|e| CliError::new(format!("error: {shown}: {e}")))?;
        let compile_time = start.elapsed();
        let start = Instant::now();
        let model = Model::from_bytes(&bytes).map_err(|e| CliError::new(format!("error: {shown}: {e}")))?;
        (model, Some(compile_time), start.elapsed(), loaded.base_dir)
    };
    let start = Instant::now();
    let mut model = model
        .with_fn_table(ferrumc_runtime::ukernels::fn_table())
        .map_err(|e| CliError::new(format!("error: {shown}: {e}")))?;
    if let Some(t) = threads {
        model = model.with_threads(t);
    }
    model.init().map_err(|e| CliError::new(format!("error: {shown}: {e}")))?;
    Ok(Runnable { model, compile_time, load_time, init_time: start.elapsed(), base_dir })
}

/// The entry point to run: `function`, else `default` if present, else the first.
pub fn pick_entry(model: &Model, function: Option<&str>, default: &str) -> Result<EntryPoint, CliError> {
    let eps = model.entry_points();
    let names = || eps.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ");
    let found = match function {
        Some(f) => eps.iter().find(|e| e.name == f),
        None => eps.iter().find(|e| e.name == default).or(eps.first()),
    };
    match (found, function) {
        (Some(ep), _) => Ok(ep.clone()),
        (None, Some(f)) => Err(CliError::new(format!("error: no entry point `{f}` (the artifact has: {})", names()))),
        (None, None) => Err(CliError::new("error: the artifact has no entry points")),
    }
}

/// `NAME=VALUE` → `(NAME, VALUE)`, naming the flag in the error.
pub fn split_assignment<'a>(flag: &str, arg: &'a str, form: &str) -> Result<(&'a str, &'a str), CliError> {
    match arg.split_once('=') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n, v)),
        _ => Err(CliError::new(format!("error: {flag} `{arg}` is not of the form {form}"))),
    }
}

/// A shape written `1x2x128x16` or `1,2,128,16` (an empty string or `scalar` is `[]`).
pub fn parse_shape(text: &str) -> Option<Vec<usize>> {
    if text.is_empty() || text == "scalar" {
        return Some(Vec::new());
    }
    text.split(['x', ',']).map(|d| d.trim().parse::<usize>().ok()).collect()
}

/// A zero-filled tensor of the signature's dtype and `shape`.
pub fn zeros(sig: &TensorSig, shape: Vec<usize>) -> Result<RtTensor, CliError> {
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let bytes = numel.and_then(|n| sig.dtype.byte_len(n as u64)).and_then(|b| usize::try_from(b).ok());
    let bytes = bytes.filter(|&b| b <= 1 << 34).ok_or_else(|| {
        CliError::new(format!("error: input `{}`: a {} tensor of shape {shape:?} is too large", sig.name, sig.dtype))
    })?;
    RtTensor::new(sig.dtype, shape, vec![0u8; bytes])
        .map_err(|e| CliError::new(format!("error: input `{}`: {e}", sig.name)))
}

/// `name[shape]` for each input, with runs of `past_*` inputs of one shape folded into one
/// entry (`60× past_*[1, 3, 128, 64]`) so a decode entry point fits on a line.
pub fn describe_inputs(inputs: &[(String, RtTensor)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < inputs.len() {
        let (name, t) = &inputs[i];
        let run = inputs[i..].iter().take_while(|(n, u)| n.starts_with("past_") && u.shape() == t.shape()).count();
        if run > 1 {
            parts.push(format!("{run}× past_*{:?}", t.shape()));
            i += run;
        } else {
            parts.push(format!("{name}{:?}", t.shape()));
            i += 1;
        }
    }
    parts.join(", ")
}

/// The bindings of the signature's symbols that plain-symbol dims of the given inputs fix
/// (`input_ids: [batch, seq]` of shape `[1, 5]` binds `batch = 1`, `seq = 5`).
pub fn bound_symbols(ep: &EntryPoint, inputs: &[(String, RtTensor)]) -> BTreeMap<String, i64> {
    let mut syms = BTreeMap::new();
    for (name, t) in inputs {
        let Some(sig) = ep.inputs.iter().find(|s| &s.name == name) else { continue };
        for (dim, &size) in sig.dims.iter().zip(t.shape()) {
            if let (Some(sym), Ok(v)) = (dim.as_symbol(), i64::try_from(size)) {
                syms.entry(sym.to_string()).or_insert(v);
            }
        }
    }
    syms
}

/// The shape of `sig` under `syms`; `None` names the first unbound symbol.
pub fn shape_under(sig: &TensorSig, syms: &BTreeMap<String, i64>) -> Result<Vec<usize>, String> {
    sig.dims
        .iter()
        .map(|d| {
            let v = d.eval(syms).map_err(|e| e.to_string())?;
            usize::try_from(v).map_err(|_| format!("dim `{d}` evaluates to {v}"))
        })
        .collect()
}

/// What `bench` feeds an entry point.
#[derive(Debug, Default)]
pub struct InputArgs<'a> {
    /// `NAME=FILE` (`.npy` or `.pb`).
    pub files: &'a [String],
    /// `NAME=SHAPE`: a zero-filled tensor of the signature's dtype.
    pub zeros: &'a [String],
    /// Synthesize every missing `past_*` input as zeros with this past length.
    pub past: Option<usize>,
}

/// Bind the input arguments to `ep`'s signature, in signature order; every input must be
/// given (or synthesized) exactly once, and no unknown name is accepted.
pub fn bind_inputs(ep: &EntryPoint, args: &InputArgs<'_>) -> Result<Vec<(String, RtTensor)>, CliError> {
    let mut given: Vec<(String, RtTensor)> = Vec::new();
    let mut seen = BTreeSet::new();
    let sig_of = |name: &str| {
        ep.inputs.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = ep.inputs.iter().map(|s| s.name.as_str()).collect();
            CliError::new(format!("error: `{}` has no input `{name}` (its inputs: {})", ep.name, names.join(", ")))
        })
    };
    for arg in args.files {
        let (name, file) = split_assignment("--input", arg, "NAME=FILE")?;
        sig_of(name)?;
        if !seen.insert(name.to_string()) {
            return Err(CliError::new(format!("error: input `{name}` is given twice")));
        }
        let t = read_input_tensor(Path::new(file))?;
        given.push((name.to_string(), to_runtime(name, &t)?));
    }
    for arg in args.zeros {
        let (name, shape) = split_assignment("--zeros", arg, "NAME=SHAPE (e.g. past_key_0=1x2x128x16)")?;
        let sig = sig_of(name)?;
        if !seen.insert(name.to_string()) {
            return Err(CliError::new(format!("error: input `{name}` is given twice")));
        }
        let shape = parse_shape(shape).ok_or_else(|| {
            CliError::new(format!("error: --zeros `{arg}`: `{shape}` is not a shape like 1x2x128x16"))
        })?;
        given.push((name.to_string(), zeros(sig, shape)?));
    }
    if let Some(past) = args.past {
        let mut syms = bound_symbols(ep, &given);
        let missing_past: Vec<&TensorSig> =
            ep.inputs.iter().filter(|s| s.name.starts_with("past_") && !seen.contains(&s.name)).collect();
        if missing_past.is_empty() {
            return Err(CliError::new(format!(
                "error: --past: `{}` has no `past_*` input left to synthesize",
                ep.name
            )));
        }
        for sig in missing_past {
            // The past length is the one symbol the other inputs leave unbound.
            for sym in sig.dims.iter().flat_map(|d| d.symbols()) {
                if !syms.contains_key(sym) {
                    let v = i64::try_from(past).map_err(|_| CliError::new("error: --past is too large"))?;
                    syms.insert(sym.to_string(), v);
                }
            }
            let shape = shape_under(sig, &syms)
                .map_err(|e| CliError::new(format!("error: --past: input `{}`: {e}", sig.name)))?;
            seen.insert(sig.name.clone());
            given.push((sig.name.clone(), zeros(sig, shape)?));
        }
    }
    let missing: Vec<String> = ep
        .inputs
        .iter()
        .filter(|s| !seen.contains(&s.name))
        .map(|s| format!("{}: {}{}", s.name, s.dtype, s.shape_string()))
        .collect();
    if !missing.is_empty() {
        return Err(CliError::new(format!(
            "error: `{}` needs input(s) not given: {} (pass --input NAME=FILE, --zeros NAME=SHAPE, or --past N for \
             past_* KV caches)",
            ep.name,
            missing.join(", ")
        )));
    }
    let mut ordered = Vec::with_capacity(given.len());
    for sig in &ep.inputs {
        if let Some(pos) = given.iter().position(|(n, _)| n == &sig.name) {
            ordered.push(given.swap_remove(pos));
        }
    }
    Ok(ordered)
}

/// The largest value each symbol may take in some memory-plan bucket of `entry` (a symbol
/// absent from a bucket's bounds is unbounded there, so it gets no entry).
pub fn symbol_bounds(model: &Model, entry: &str) -> BTreeMap<String, i64> {
    let m = model.artifact().manifest();
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    let buckets = m.memory_plans.get(entry).map(Vec::as_slice).unwrap_or(&[]);
    let mut unbounded = BTreeSet::new();
    let all_syms: BTreeSet<&str> = buckets.iter().flat_map(|b| b.bounds.iter().map(|(s, _)| s.as_str())).collect();
    for b in buckets {
        for s in &all_syms {
            match b.bounds.iter().find(|(n, _)| n == s) {
                Some((_, v)) => {
                    let e = out.entry(s.to_string()).or_insert(*v);
                    *e = (*e).max(*v);
                }
                None => {
                    unbounded.insert(s.to_string());
                }
            }
        }
    }
    out.retain(|s, _| !unbounded.contains(s));
    out
}
