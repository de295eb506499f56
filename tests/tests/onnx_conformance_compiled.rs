//! ONNX backend node-test conformance of the *compiled* path. With `FERRUMC_ONNX_CASES`
//! pointing at the cases `tests/onnx_conformance/gen_cases.py` writes (as `.ci/run` does),
//! every case that passes on the reference interpreter (the same import, integer/scalar
//! inputs frozen to constants when the graph needs them, and comparison as
//! `frontends/onnx/tests/conformance.rs`) is also compiled at `-O2`
//! (`ferrumc_codegen::compile`), run through the runtime with its micro-kernels, and compared
//! with ONNX's expected outputs: rtol 1e-3, atol 1e-5 (kernels compute in f32), exact dtype,
//! shape and integers. Outcomes: *pass*, *refused* (the compiler reports an op or dtype
//! outside its coverage — counted and listed, not a failure) and *mismatch* (it compiled
//! but computed something else, or failed to load/run) — any mismatch fails the test.
//! A case refused for a dim of unknown size (`?`: a reshape target, range bounds, … that is a
//! graph input) is compiled again with its integer and scalar inputs bound to the case's own
//! values (`CompileOptions::bound_inputs`, as `ferrumc compile --bind-input` does) and, when it
//! then matches, counted apart ("matched with bound shape inputs"), not as a plain pass.
//! Without the variable the run is skipped (said on stdout).
//!
//! `FERRUMC_ONNX_COMPILED_REPORT=<file>` writes every refused or mismatched case with its
//! reason.

use ferrumc_codegen::compile::{CompileError, CompileOptions};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::Tensor;
use ferrumc_tests::compare::{assert_close, Tolerance};
use ferrumc_tests::compiled::run_compiled;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The interpreter's conformance tolerance (`frontends/onnx/tests/conformance.rs`).
const INTERP_TOL: Tolerance = Tolerance { rtol: 1e-3, atol: 1e-7 };
const COMPILED_TOL: Tolerance = Tolerance { rtol: 1e-3, atol: 1e-5 };

enum Outcome {
    /// The interpreter does not pass the case (its own suite accounts for it).
    NotOnInterp,
    Pass,
    /// Passed once the case's integer (and scalar) inputs were bound at compile time
    /// (`CompileOptions::bound_inputs`), after a refusal for a dim of unknown size.
    PassBound,
    Refused(String),
    Mismatch(String),
}

fn read_pb(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ferrumc_onnx::read_tensor_proto(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..).map(|k| dir.join(format!("{prefix}_{k}.pb"))).take_while(|p| p.exists()).collect()
}

/// The graph's input names that are not initializers, in order.
fn graph_input_names(model: &Path) -> Vec<String> {
    use prost::Message;
    let Ok(bytes) = std::fs::read(model) else { return Vec::new() };
    let Ok(m) = ferrumc_onnx::proto::ModelProto::decode(bytes.as_slice()) else { return Vec::new() };
    let Some(g) = m.graph else { return Vec::new() };
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.input.iter().filter(|i| !inits.contains(i.name.as_str())).map(|i| i.name.clone()).collect()
}

fn compare_all(outs: &[(String, Tensor)], wants: &[Tensor], tol: Tolerance) -> Result<(), String> {
    if outs.len() != wants.len() {
        return Err(format!("{} outputs but {} expected", outs.len(), wants.len()));
    }
    for ((name, got), want) in outs.iter().zip(wants) {
        assert_close(name, got, want, tol)?;
    }
    Ok(())
}

fn run_case(dir: &Path) -> Outcome {
    let data = dir.join("test_data_set_0");
    let Ok(given) = numbered(&data, "input").iter().map(|p| read_pb(p)).collect::<Result<Vec<_>, _>>() else {
        return Outcome::NotOnInterp;
    };
    let Ok(wants) = numbered(&data, "output").iter().map(|p| read_pb(p)).collect::<Result<Vec<_>, _>>() else {
        return Outcome::NotOnInterp;
    };
    let path = dir.join("model.onnx");
    let names = graph_input_names(&path);
    let module = match ferrumc_onnx::import_onnx(&path) {
        Ok(m) => m,
        Err(e) if e.to_string().contains("must be a constant") => {
            let frozen_inputs = names
                .iter()
                .zip(&given)
                .filter(|(_, t)| t.dtype.is_int() || t.rank() == 0)
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect();
            match ferrumc_onnx::import_onnx_with(&path, &ferrumc_onnx::ImportOptions { frozen_inputs }) {
                Ok(m) => m,
                Err(_) => return Outcome::NotOnInterp,
            }
        }
        Err(_) => return Outcome::NotOnInterp,
    };
    let Some(f) = module.functions.first() else { return Outcome::NotOnInterp };
    let inputs: Vec<(String, Tensor)> = names
        .iter()
        .zip(given)
        .filter(|(n, _)| f.params().iter().any(|(p, _)| p == *n))
        .map(|(n, t)| (n.clone(), t))
        .collect();
    let weights = FileWeights::new(dir);
    match run_function(&module, &f.name, &inputs, &weights) {
        Ok(outs) if compare_all(&outs, &wants, INTERP_TOL).is_ok() => {}
        _ => return Outcome::NotOnInterp,
    }
    let options = CompileOptions { level: 2, ..CompileOptions::default() };
    let (bytes, inputs, bound) = match ferrumc_codegen::compile::compile_module(&module, &weights, &options) {
        Ok(b) => (b, inputs, false),
        Err(e @ (CompileError::UnsupportedGroup { .. } | CompileError::Unsupported { .. })) => {
            // A dim that depends on an input's value (a reshape target, range bounds, …):
            // specialize the shape-carrying inputs — integer tensors and scalars, part of the
            // case's own data — as a deployment would, and count the case separately.
            let refusal = e.to_string();
            if !refusal.contains("(`?`)") {
                return Outcome::Refused(refusal);
            }
            let (bind, rest): (Vec<_>, Vec<_>) =
                inputs.into_iter().partition(|(_, t)| t.dtype.is_int() || t.rank() == 0);
            if bind.is_empty() {
                return Outcome::Refused(refusal);
            }
            let options = CompileOptions { bound_inputs: bind.into_iter().collect(), ..options };
            match ferrumc_codegen::compile::compile_module(&module, &weights, &options) {
                Ok(b) => (b, rest, true),
                Err(e @ (CompileError::UnsupportedGroup { .. } | CompileError::Unsupported { .. })) => {
                    return Outcome::Refused(format!("{e} (also with its shape inputs bound)"))
                }
                Err(e) => return Outcome::Mismatch(format!("compile with bound inputs: {e}")),
            }
        }
        Err(e) => return Outcome::Mismatch(format!("compile: {e}")),
    };
    let outs = match run_compiled(&bytes, &f.name, &inputs) {
        Ok(o) => o,
        Err(e) if e.contains("has no runtime form") || e.contains("has no IR form") => return Outcome::Refused(e),
        Err(e) => return Outcome::Mismatch(e),
    };
    match compare_all(&outs, &wants, COMPILED_TOL) {
        Ok(()) if bound => Outcome::PassBound,
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Mismatch(e),
    }
}

fn main() {
    let Ok(cases) = std::env::var("FERRUMC_ONNX_CASES") else {
        println!("onnx conformance (compiled): skipped (set FERRUMC_ONNX_CASES to the folder tests/onnx_conformance/gen_cases.py writes)");
        return;
    };
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(&cases) {
        Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("model.onnx").is_file()).collect(),
        Err(e) => {
            eprintln!("FERRUMC_ONNX_CASES={cases}: {e}");
            std::process::exit(1);
        }
    };
    dirs.sort();
    let (mut passed, mut passed_bound, mut skipped) = (0usize, 0usize, 0usize);
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    let mut mismatched: BTreeMap<String, String> = BTreeMap::new();
    for dir in &dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let outcome = std::panic::catch_unwind(|| run_case(dir))
            .unwrap_or_else(|_| Outcome::Mismatch("panicked (a bug: the compiler and runtime must not panic)".into()));
        match outcome {
            Outcome::NotOnInterp => skipped += 1,
            Outcome::Pass => passed += 1,
            Outcome::PassBound => passed_bound += 1,
            Outcome::Refused(r) => {
                refused.insert(name, r);
            }
            Outcome::Mismatch(r) => {
                mismatched.insert(name, r);
            }
        }
    }
    println!(
        "onnx conformance (compiled, -O2): {} cases, {} pass on the interpreter: {passed} compiled and matched, {passed_bound} matched with bound shape inputs, {} refused to compile, {} mismatched",
        dirs.len(),
        dirs.len() - skipped,
        refused.len(),
        mismatched.len()
    );
    if let Ok(path) = std::env::var("FERRUMC_ONNX_COMPILED_REPORT") {
        let mut report = String::new();
        for (n, r) in &mismatched {
            report.push_str(&format!("mismatch {n} {}\n", r.replace('\n', " ")));
        }
        for (n, r) in &refused {
            report.push_str(&format!("refused {n} {}\n", r.replace('\n', " ")));
        }
        if let Err(e) = std::fs::write(&path, report) {
            eprintln!("{path}: {e}");
        }
    }
    if !mismatched.is_empty() {
        for (n, r) in &mismatched {
            eprintln!("mismatch: {n}: {}", r.chars().take(300).collect::<String>());
        }
        std::process::exit(1);
    }
}
