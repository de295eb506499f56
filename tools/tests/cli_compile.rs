//! `ferrumc compile` / `run` on an artifact / `inspect`: the MLP example compiled at each
//! level matches its independent numpy reference (`examples/mlp/expected/y.npy`, case
//! tolerance 1e-5) and the interpreter; compiling twice writes identical files; a tampered
//! artifact and a bad option give one clear error and a non-zero exit.

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
    let dir = std::env::temp_dir().join(format!("ferrumc-cli-compile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
}

fn max_diff(a: &Path, b: &Path) -> f64 {
    let (a, b) = (read_npy_file(a).unwrap(), read_npy_file(b).unwrap());
    assert_eq!(a.shape, b.shape);
    a.to_f64_vec().iter().zip(b.to_f64_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn compiled_mlp_matches_the_reference_and_the_interpreter() {
    let dir = scratch("mlp");
    let interp_dir = dir.join("interp");
    ok(&ferrumc(&[
        "run",
        "examples/mlp/model.fir",
        "--interp",
        "--input",
        "x=examples/mlp/x.npy",
        "--output-dir",
        &interp_dir.to_string_lossy(),
    ]));
    for level in ["-O0", "-O2", "-O3"] {
        let art = dir.join(format!("mlp{level}.ferrumc"));
        let art_s = art.to_string_lossy().into_owned();
        ok(&ferrumc(&["compile", "examples/mlp/model.fir", level, "-o", &art_s]));
        let out_dir = dir.join(format!("out{level}"));
        let out =
            ferrumc(&["run", &art_s, "--input", "x=examples/mlp/x.npy", "--output-dir", &out_dir.to_string_lossy()]);
        ok(&out);
        let y = out_dir.join("y.npy");
        let reference = repo().join("examples/mlp/expected/y.npy");
        let d = max_diff(&y, &reference);
        assert!(d <= 1e-5, "{level}: max |compiled - numpy| = {d}");
        let d = max_diff(&y, &interp_dir.join("y.npy"));
        assert!(d <= 1e-5, "{level}: max |compiled - interpreter| = {d}");
    }
}

#[test]
fn run_compiles_a_model_in_memory_and_matches_numpy() {
    // `ferrumc run model.fir` without `--interp` compiles in memory (the JIT path) and writes
    // nothing but the outputs; the llama block's expected logits come from an independent
    // numpy float64 implementation (examples/llama_block/case.json: rtol = atol = 1e-4).
    let dir = scratch("jit");
    let out = ferrumc(&[
        "run",
        "examples/llama_block/model.fir",
        "--input",
        "input_ids=examples/llama_block/input_ids.npy",
        "--input",
        "position_ids=examples/llama_block/position_ids.npy",
        "--output-dir",
        &dir.to_string_lossy(),
    ]);
    ok(&out);
    let d = max_diff(&dir.join("logits.npy"), &repo().join("examples/llama_block/expected/logits.npy"));
    assert!(d <= 1e-4, "max |compiled in memory - numpy| = {d}");
    let written: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(written, vec![std::ffi::OsString::from("logits.npy")]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reader_closing_stdout_early_ends_inspect_quietly() {
    // `ferrumc inspect m.ferrumc | head`: the pipe's read end is closed before the process
    // even starts (so the outcome does not depend on scheduling), and the first write fails
    // with EPIPE; that must not be a panic.
    let dir = scratch("pipe");
    let art = dir.join("mlp.ferrumc");
    ok(&ferrumc(&["compile", "examples/mlp/model.fir", "-o", &art.to_string_lossy()]));
    let (reader, writer) = std::io::pipe().expect("create a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_ferrumc"))
        .args(["inspect", &art.to_string_lossy()])
        .current_dir(repo())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run ferrumc");
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(141), "stderr: {}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compile_is_deterministic_and_inspect_describes_the_artifact() {
    let dir = scratch("det");
    let (a, b) = (dir.join("a.ferrumc"), dir.join("b.ferrumc"));
    for p in [&a, &b] {
        ok(&ferrumc(&[
            "compile",
            "examples/mlp/model.fir",
            "-O2",
            "--max-dim",
            "batch=32",
            "-o",
            &p.to_string_lossy(),
        ]));
    }
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "two compilations differ");
    let out = ferrumc(&["inspect", &a.to_string_lossy()]);
    ok(&out);
    let s = text(&out.stdout);
    for want in [
        "entry points:",
        "main(x: f32[batch, 8]) -> (y: f32[batch, 4])",
        "batch <= 32",
        "kernels:",
        "fc1.bias",
        "arena",
    ] {
        assert!(s.contains(want), "inspect lacks `{want}`:\n{s}");
    }
}

#[test]
fn tampered_artifacts_and_bad_options_are_clear_errors() {
    let dir = scratch("bad");
    let art = dir.join("m.ferrumc");
    ok(&ferrumc(&["compile", "examples/mlp/model.fir", "-o", &art.to_string_lossy()]));
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let bad = dir.join("tampered.ferrumc");
    std::fs::write(&bad, &bytes).unwrap();
    let out = ferrumc(&["run", &bad.to_string_lossy(), "--input", "x=examples/mlp/x.npy"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr).to_lowercase();
    assert!(err.contains("checksum") || err.contains("tamper"), "{err}");
    assert!(!err.contains("panicked"));

    let out = ferrumc(&["run", &art.to_string_lossy(), "--input", "x=examples/llama_block/input_ids.npy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));

    let out = ferrumc(&["compile", "examples/mlp/model.fir", "--max-dim", "batch", "-o", &art.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--max-dim"));

    // A model with an op no kernel template handles: the error names it, no file is written.
    let missing = dir.join("llama.ferrumc");
    let out = ferrumc(&["compile", "examples/llama_block/model.fir", "-o", &missing.to_string_lossy()]);
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains('`') && !err.contains("panicked"), "{err}");
        assert!(!missing.exists());
    }
}

#[test]
fn a_token_id_past_the_vocabulary_is_refused_by_name() {
    // The fixture Llama has 128 tokens and 64 positions; the compiler records both ranges
    // on the inputs, `inspect` shows them and `run` refuses values outside before running.
    let dir = scratch("range");
    let art = dir.join("llama.ferrumc");
    ok(&ferrumc(&["compile", "tests/fixtures/hf/llama", "-o", &art.to_string_lossy()]));
    let out = ferrumc(&["inspect", &art.to_string_lossy()]);
    ok(&out);
    let listing = text(&out.stdout);
    assert!(listing.contains("input_ids: i64[batch, seq] in -128..=127"), "{listing}");
    assert!(listing.contains("position_ids: i64[batch, seq] in 0..=63"), "{listing}");
    let write = |name: &str, values: Vec<i64>| {
        let path = dir.join(name);
        let t = ferrumc_ir::Tensor::from_i64(ferrumc_ir::DType::I64, vec![1, values.len()], values).unwrap();
        ferrumc_ir::npy::write_npy_file(&path, &t).unwrap();
        path.to_string_lossy().into_owned()
    };
    let (ids, bad_ids, pos, bad_pos) = (
        write("ids.npy", vec![1, 2, 3]),
        write("bad_ids.npy", vec![1, 128, 3]),
        write("pos.npy", vec![0, 1, 2]),
        write("bad_pos.npy", vec![0, 1, 64]),
    );
    let outputs = dir.join("out");
    let run = |ids: &str, pos: &str| {
        ferrumc(&[
            "run",
            &art.to_string_lossy(),
            "--function",
            "forward",
            "--input",
            &format!("input_ids={ids}"),
            "--input",
            &format!("position_ids={pos}"),
            "--output-dir",
            &outputs.to_string_lossy(),
        ])
    };
    for (ids, pos, needle) in [
        (&bad_ids, &pos, "input `input_ids`: element 1 is 128, outside the accepted range -128..=127"),
        (&ids, &bad_pos, "input `position_ids`: element 2 is 64, outside the accepted range 0..=63"),
    ] {
        let out = run(ids, pos);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
        assert!(!outputs.exists(), "nothing is written on a refused run");
    }
    ok(&run(&ids, &pos));
    assert!(outputs.join("logits.npy").exists());
}
