//! End-to-end tests of the `ferrumc` binary: the bundled examples run through
//! `ferrumc run --interp` and match their independent numpy references; import/verify/dot
//! work; hostile inputs give one clear error, a non-zero exit, no panic and no output.

use ferrumc_ir::npy::read_npy_file;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

fn ferrumc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrumc")).args(args).current_dir(repo()).output().expect("spawn ferrumc")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrumc-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Largest |a - b| and whether the argmax over the last axis agrees everywhere.
fn compare(actual: &Path, expected: &Path) -> (f64, bool) {
    let a = read_npy_file(actual).expect("read actual");
    let e = read_npy_file(expected).expect("read expected");
    assert_eq!(a.shape, e.shape, "shape of {}", actual.display());
    assert_eq!(a.dtype, e.dtype, "dtype of {}", actual.display());
    let (av, ev) = (a.to_f64_vec(), e.to_f64_vec());
    let max_diff = av.iter().zip(&ev).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let last = *e.shape.last().unwrap_or(&1);
    let argmax = |v: &[f64]| v.iter().enumerate().fold(0, |best, (i, x)| if *x > v[best] { i } else { best });
    let same_argmax = av.chunks(last).zip(ev.chunks(last)).all(|(x, y)| argmax(x) == argmax(y));
    (max_diff, same_argmax)
}

fn run_example(dir: &str, inputs: &[&str], output: &str, tol: f64) {
    let out_dir = scratch(&dir.replace('/', "_"));
    let model = format!("{dir}/model.fir");
    let mut args = vec!["run", model.as_str(), "--interp"];
    let bindings: Vec<String> = inputs.iter().map(|n| format!("{n}={dir}/{n}.npy")).collect();
    for b in &bindings {
        args.push("--input");
        args.push(b);
    }
    let out_str = out_dir.to_string_lossy().into_owned();
    args.extend(["--output-dir", out_str.as_str()]);
    let out = ferrumc(&args);
    assert!(out.status.success(), "ferrumc {args:?} failed:\n{}", text(&out.stderr));
    let (max_diff, same_argmax) =
        compare(&out_dir.join(format!("{output}.npy")), &repo().join(dir).join(format!("expected/{output}.npy")));
    assert!(max_diff <= tol, "{dir}: max |diff| {max_diff:e} exceeds {tol:e}");
    assert!(same_argmax, "{dir}: argmax differs from the reference");
}

#[test]
fn mlp_example_matches_numpy_reference() {
    // Reference: numpy in float64, cast to f32. Tolerance: a few f32 ulps of O(1) values.
    run_example("examples/mlp", &["x"], "y", 1e-5);
}

#[test]
fn llama_block_example_matches_numpy_reference() {
    run_example("examples/llama_block", &["input_ids", "position_ids"], "logits", 1e-4);
}

#[test]
fn verify_and_import_round_trip_through_json() {
    let dir = scratch("roundtrip");
    let out = ferrumc(&["verify", "examples/llama_block/model.fir"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(": ok ("));

    let json = dir.join("model.json");
    let fir = dir.join("back.fir");
    let first = dir.join("first.fir");
    let json_s = json.to_string_lossy().into_owned();
    let fir_s = fir.to_string_lossy().into_owned();
    let first_s = first.to_string_lossy().into_owned();
    assert!(ferrumc(&["import", "examples/llama_block/model.fir", "-o", &first_s]).status.success());
    assert!(ferrumc(&["import", "examples/llama_block/model.fir", "-o", &json_s]).status.success());
    let out = ferrumc(&["import", &json_s, "-o", &fir_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&first).unwrap(), std::fs::read_to_string(&fir).unwrap());
}

#[test]
fn dot_export_names_every_op() {
    let out = ferrumc(&["dot", "examples/mlp/model.fir"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("linear"), "{dot}");
}

/// Run ferrumc on a hostile file; expect exit 1, one `error:` message naming the file,
/// no panic, and no output file.
fn assert_rejected(name: &str, file_name: &str, contents: &[u8], must_mention: &str) {
    let dir = scratch(name);
    let input = dir.join(file_name);
    std::fs::write(&input, contents).expect("write hostile input");
    let output = dir.join("out.fir");
    let out = ferrumc(&["import", &input.to_string_lossy(), "-o", &output.to_string_lossy()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{name}: exit code; stderr:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{name}: {stderr}");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    assert!(stderr.contains(file_name), "{name}: error does not name the file: {stderr}");
    assert!(stderr.contains(must_mention), "{name}: error does not mention `{must_mention}`: {stderr}");
    assert!(!output.exists(), "{name}: output written despite the error");
}

#[test]
fn hostile_text_inputs_are_rejected_cleanly() {
    let good = std::fs::read_to_string(repo().join("examples/mlp/model.fir")).expect("example");
    assert_rejected("truncated", "t.fir", &good.as_bytes()[..good.len() / 2], "t.fir:");
    assert_rejected("nul", "n.fir", b"module @m\nfunc @f(%x: f32[2]) -> (y: f32[2]) {\n  return %x\0\n}\n", "n.fir:3:");
    assert_rejected("utf8", "u.fir", b"module @m\n\xff\xfe", "invalid UTF-8");
    assert_rejected("huge", "h.fir", b"module @m\nweight @w : f32[4] = dense<f32[1000000000000]: [1.0]>\n", "h.fir:2:");
    assert_rejected(
        "undefined",
        "d.fir",
        b"module @m\nfunc @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = add %x, %7 : f32[2]\n  return %0\n}\n",
        "%7",
    );
    assert_rejected(
        "illtyped",
        "v.fir",
        b"module @m\nfunc @f(%x: f32[2]) -> (y: f32[3]) {\n  %0 = add %x, %x : f32[3]\n  return %0\n}\n",
        "verifier error",
    );
    let deep = format!("module @m {{a = {}1{}}}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert_rejected("deep", "deep.fir", deep.as_bytes(), "deep.fir:");
}

#[test]
fn hostile_json_inputs_are_rejected_cleanly() {
    assert_rejected("json_truncated", "t.json", b"{\"metadata\": {\"name\": ", "t.json");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_rejected("json_deep", "deep.json", deep.as_bytes(), "deep.json");
    assert_rejected("json_utf8", "u.json", b"{\"a\": \"\xff\"}", "invalid UTF-8");
}

#[test]
fn json_document_with_a_cycle_is_rejected() {
    let dir = scratch("json_cycle");
    let json = dir.join("mlp.json");
    let out = ferrumc(&["import", "examples/mlp/model.fir", "-o", &json.to_string_lossy()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Make the second layer consume its own output, and drop the edges that would disagree.
    let own_output = doc["layers"][1]["outputs"][0].clone();
    doc["layers"][1]["inputs"][0] = own_output;
    doc["graph"]["edges"] = serde_json::json!([]);
    let bytes = serde_json::to_vec_pretty(&doc).unwrap();
    assert_rejected("json_cycle", "cycle.json", &bytes, "cycle");
}

#[test]
fn run_reports_missing_and_mismatched_inputs() {
    let out = ferrumc(&["run", "examples/mlp/model.fir", "--interp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("x"), "{}", text(&out.stderr));
    let out =
        ferrumc(&["run", "examples/mlp/model.fir", "--interp", "--input", "x=examples/llama_block/input_ids.npy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).contains("panicked"));
    // Without --interp the model is compiled in memory; the same bad inputs are clear errors.
    let out = ferrumc(&["run", "examples/mlp/model.fir"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`x`") || text(&out.stderr).contains(" x"), "{}", text(&out.stderr));
    let out = ferrumc(&["run", "examples/mlp/model.fir", "--input", "x=examples/llama_block/input_ids.npy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
}

#[test]
fn hugging_face_checkpoint_imports_and_bad_configs_list_every_problem() {
    let out = ferrumc(&["verify", "tests/fixtures/hf/qwen2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 function(s)"), "{}", text(&out.stdout));

    let dir = scratch("bad_config");
    std::fs::write(dir.join("config.json"), br#"{"model_type": "llama", "hidden_size": 0, "num_attention_heads": 3}"#)
        .unwrap();
    let out = ferrumc(&["import", &dir.to_string_lossy()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for field in ["hidden_size", "num_hidden_layers", "vocab_size", "config.json"] {
        assert!(stderr.contains(field), "error does not mention {field}: {stderr}");
    }
}

#[test]
fn exported_onnx_llama_runs_on_a_tensor_proto_input() {
    use prost::Message;
    let dir = scratch("onnx_pb");
    let ids = read_npy_file(&repo().join("tests/fixtures/onnx_llama/input_ids.npy")).expect("input ids");
    let proto = ferrumc_onnx::tensor_to_proto("input_ids", &ids).expect("encode TensorProto");
    let pb = dir.join("input_0.pb");
    std::fs::write(&pb, proto.encode_to_vec()).expect("write .pb");
    let out_dir = dir.join("out");
    let out = ferrumc(&[
        "run",
        "tests/fixtures/onnx_llama/model.onnx",
        "--interp",
        "--input",
        &format!("input_ids={}", pb.display()),
        "--output-dir",
        &out_dir.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (max_diff, same_argmax) =
        compare(&out_dir.join("logits.npy"), &repo().join("tests/fixtures/onnx_llama/logits.npy"));
    assert!(max_diff <= 1e-4, "max |diff| {max_diff:e} vs transformers");
    assert!(same_argmax);

    std::fs::write(dir.join("bad.pb"), b"\x0a\xff\xff\xff\xff\x0f").unwrap();
    let out = ferrumc(&[
        "run",
        "tests/fixtures/onnx_llama/model.onnx",
        "--interp",
        "--input",
        &format!("input_ids={}", dir.join("bad.pb").display()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bad.pb"), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn every_hugging_face_fixture_runs_through_the_cli_and_matches_transformers() {
    let dir = scratch("hf_cli");
    for arch in ["llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "gpt2", "bert"] {
        let fixture = format!("tests/fixtures/hf/{arch}");
        let ids = format!("input_ids={fixture}/input_ids.npy");
        let out_dir = dir.join(arch);
        let out_s = out_dir.to_string_lossy().into_owned();
        let mut args = vec!["run", fixture.as_str(), "--interp", "--input", ids.as_str()];
        let extra: Vec<String> = if arch == "bert" {
            vec![
                format!("token_type_ids={fixture}/token_type_ids.npy"),
                format!("attention_mask={fixture}/attention_mask.npy"),
            ]
        } else {
            // Positions 0..seq for every row, as transformers uses without a cache.
            let ids = read_npy_file(&repo().join(&fixture).join("input_ids.npy")).expect("input ids");
            let (batch, seq) = (ids.shape[0], ids.shape[1]);
            let values = (0..batch).flat_map(|_| 0..seq as i64).collect();
            let positions = ferrumc_ir::Tensor::from_i64(ferrumc_ir::DType::I64, vec![batch, seq], values).unwrap();
            let path = dir.join(format!("{arch}_positions.npy"));
            ferrumc_ir::npy::write_npy_file(&path, &positions).expect("write positions");
            vec![format!("position_ids={}", path.display())]
        };
        for e in &extra {
            args.extend(["--input", e.as_str()]);
        }
        args.extend(["--output-dir", out_s.as_str()]);
        let out = ferrumc(&args);
        assert!(out.status.success(), "{arch}: {}", text(&out.stderr));
        let name = if arch == "bert" { "hidden" } else { "logits" };
        let (max_diff, same_argmax) =
            compare(&out_dir.join(format!("{name}.npy")), &repo().join(&fixture).join(format!("{name}.npy")));
        assert!(max_diff <= 1e-4, "{arch}: max |diff| {max_diff:e} vs transformers");
        assert!(arch == "bert" || same_argmax, "{arch}: argmax differs from transformers");
    }
}
