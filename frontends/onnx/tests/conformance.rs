//! ONNX backend node-test conformance: with `FERRUMC_ONNX_CASES` pointing at the folder
//! `tests/onnx_conformance/gen_cases.py` writes, every case is imported, run on the
//! reference interpreter and compared with the expected outputs (rtol 1e-3, atol 1e-7,
//! exact dtype and shape). `tests/onnx_conformance/expected_failures.txt` lists the cases
//! allowed to fail (name, then a one-line reason); an unlisted failure and a listed case
//! that passes both fail the test. Without the variable the run is skipped (said on stdout).
//!
//! `FERRUMC_ONNX_WRITE_EXPECTED=<file>` writes every non-passing case with its error (to
//! refresh the list by hand).

use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{Tensor, TensorData};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `name -> reason` from the expected-failures file.
fn expected_failures() -> BTreeMap<String, String> {
    let path = repo_root().join("tests/onnx_conformance/expected_failures.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        assert!(!reason.trim().is_empty(), "expected_failures.txt line {}: `{name}` needs a reason", i + 1);
        assert!(out.insert(name.to_string(), reason.trim().to_string()).is_none(), "`{name}` is listed twice");
    }
    out
}

#[derive(Debug)]
enum Outcome {
    Pass,
    /// Passed once its integer and scalar inputs were frozen to the test data's values (the graph
    /// feeds attribute-like inputs such as axes from graph inputs).
    PassFrozen,
    Unsupported(String),
    Fail(String),
}

fn read_pb(path: &Path) -> Result<Tensor, String> {
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bytes = std::fs::read(path).map_err(|e| format!("{file}: {e}"))?;
    ferrumc_onnx::read_tensor_proto(&bytes).map_err(|e| format!("{file}: {e}"))
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for k in 0.. {
        let p = dir.join(format!("{prefix}_{k}.pb"));
        if !p.exists() {
            break;
        }
        out.push(p);
    }
    out
}

fn compare(name: &str, got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype != want.dtype {
        return Err(format!("output `{name}`: dtype {} but expected {}", got.dtype, want.dtype));
    }
    if got.shape != want.shape {
        return Err(format!("output `{name}`: shape {:?} but expected {:?}", got.shape, want.shape));
    }
    match (&got.data, &want.data) {
        (TensorData::Float(g), TensorData::Float(w)) => {
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= ATOL + RTOL * b.abs();
                if !ok {
                    return Err(format!("output `{name}`: element {i} is {a} but expected {b}"));
                }
            }
        }
        (TensorData::Int(g), TensorData::Int(w)) => {
            if let Some(i) = g.iter().zip(w).position(|(a, b)| a != b) {
                return Err(format!("output `{name}`: element {i} is {} but expected {}", g[i], w[i]));
            }
        }
        _ => return Err(format!("output `{name}`: data kinds differ")),
    }
    Ok(())
}

fn run_case(dir: &Path) -> Outcome {
    let data = dir.join("test_data_set_0");
    let mut given = Vec::new();
    for p in numbered(&data, "input") {
        match read_pb(&p) {
            Ok(t) => given.push(t),
            Err(e) => return Outcome::Unsupported(format!("test data: {e}")),
        }
    }
    let path = dir.join("model.onnx");
    let mut frozen = false;
    let module = match ferrumc_onnx::import_onnx(&path) {
        Ok(m) => m,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            let retry = msg.contains("must be a constant").then(|| {
                // Freeze the integer and scalar inputs (by position among the graph's inputs) and retry.
                let names = graph_input_names(&path);
                let frozen_inputs = names
                    .iter()
                    .zip(&given)
                    .filter(|(_, t)| t.dtype.is_int() || t.rank() == 0)
                    .map(|(n, t)| (n.clone(), t.clone()))
                    .collect();
                ferrumc_onnx::import_onnx_with(&path, &ferrumc_onnx::ImportOptions { frozen_inputs })
            });
            match retry {
                Some(Ok(m)) => {
                    frozen = true;
                    m
                }
                _ => {
                    let unsupported = msg.contains("unsupported")
                        || msg.contains("not supported")
                        || msg.contains("must be a constant");
                    return if unsupported {
                        Outcome::Unsupported(msg)
                    } else {
                        Outcome::Fail(format!("import: {msg}"))
                    };
                }
            }
        }
    };
    let f = &module.functions[0];
    let names = graph_input_names(&path);
    let mut inputs = Vec::new();
    for (k, t) in given.into_iter().enumerate() {
        let Some(name) = names.get(k) else {
            return Outcome::Fail(format!("input_{k}.pb has no matching graph input"));
        };
        if f.params().iter().any(|(n, _)| n == name) {
            inputs.push((name.clone(), t));
        }
    }
    let mut wants = Vec::new();
    for p in numbered(&data, "output") {
        match read_pb(&p) {
            Ok(t) => wants.push(t),
            Err(e) => return Outcome::Unsupported(format!("test data: {e}")),
        }
    }
    let weights = FileWeights::new(dir);
    let outs = match run_function(&module, "forward", &inputs, &weights) {
        Ok(o) => o,
        Err(e) => return Outcome::Fail(format!("run: {e}").replace('\n', " ")),
    };
    if outs.len() != wants.len() {
        return Outcome::Fail(format!("{} outputs but {} expected", outs.len(), wants.len()));
    }
    for ((name, got), want) in outs.iter().zip(&wants) {
        if let Err(e) = compare(name, got, want) {
            return Outcome::Fail(e);
        }
    }
    if frozen {
        Outcome::PassFrozen
    } else {
        Outcome::Pass
    }
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

#[test]
fn expected_failures_file_is_well_formed() {
    let list = expected_failures();
    for name in list.keys() {
        assert!(name.starts_with("test_"), "`{name}` does not look like an ONNX backend test case name");
    }
}

#[test]
fn onnx_backend_node_conformance() {
    let Ok(cases) = std::env::var("FERRUMC_ONNX_CASES") else {
        println!(
            "onnx conformance: skipped (set FERRUMC_ONNX_CASES to the folder tests/onnx_conformance/gen_cases.py writes)"
        );
        return;
    };
    let expected = expected_failures();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cases)
        .unwrap_or_else(|e| panic!("FERRUMC_ONNX_CASES={cases}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "FERRUMC_ONNX_CASES={cases} holds no cases");
    let (mut passed, mut failed, mut unsupported, mut frozen) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    let mut report = String::new();
    for dir in &dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let outcome = std::panic::catch_unwind(|| run_case(dir))
            .unwrap_or_else(|_| Outcome::Fail("panicked (a bug: the importer and interpreter must not panic)".into()));
        let listed = expected.get(&name);
        match (&outcome, listed) {
            (Outcome::Pass | Outcome::PassFrozen, None) => {
                passed += 1;
                frozen += matches!(outcome, Outcome::PassFrozen) as usize;
            }
            (Outcome::Pass | Outcome::PassFrozen, Some(reason)) => {
                passed += 1;
                frozen += matches!(outcome, Outcome::PassFrozen) as usize;
                problems.push(format!("unexpected pass: {name} (listed as: {reason})"));
            }
            (Outcome::Unsupported(m) | Outcome::Fail(m), listed) => {
                if matches!(outcome, Outcome::Unsupported(_)) {
                    unsupported += 1;
                } else {
                    failed += 1;
                }
                report.push_str(&format!("{name} {}\n", m.chars().take(200).collect::<String>()));
                if listed.is_none() {
                    problems.push(format!("unexpected failure: {name}: {m}"));
                }
            }
        }
    }
    println!(
        "onnx conformance: {} run, {passed} passed ({frozen} of them with integer/scalar inputs frozen to constants), {failed} failed, {unsupported} unsupported ({} listed as expected failures)",
        dirs.len(),
        expected.len()
    );
    if let Ok(path) = std::env::var("FERRUMC_ONNX_WRITE_EXPECTED") {
        std::fs::write(&path, report).unwrap();
    }
    assert!(problems.is_empty(), "{} conformance problem(s):\n{}", problems.len(), problems.join("\n"));
}
