//! Keeps the example from rotting: compile `examples/mlp` to an artifact, run it through the
//! `run_artifact` binary on `x.npy`, and compare the written `y.npy` (read back by the IR's
//! own `.npy` reader) with the independent numpy reference `examples/mlp/expected/y.npy`
//! (tolerance 1e-5, the MLP case's). Zero-filled inputs and bad arguments are exercised too.

use ferrumc_codegen::compile::{compile_module, CompileOptions};
use ferrumc_ir::npy::read_npy_file;
use ferrumc_ir::weights::FileWeights;
use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run_artifact(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_run_artifact")).args(args).current_dir(repo()).output().expect("spawn")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn example_runs_the_compiled_mlp_like_numpy() {
    let dir = std::env::temp_dir().join(format!("ferrumc-run-artifact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let src = std::fs::read_to_string(repo().join("examples/mlp/model.fir")).expect("model.fir");
    let module = ferrumc_ir::text::parse_module(&src).expect("parse");
    let bytes = compile_module(&module, &FileWeights::new(repo().join("examples/mlp")), &CompileOptions::default())
        .expect("compile");
    let art = dir.join("mlp.ferrumc");
    std::fs::write(&art, bytes).expect("write artifact");
    let art = art.to_string_lossy().into_owned();
    let out_dir = dir.join("out");

    let out =
        run_artifact(&[&art, "x=examples/mlp/x.npy", "--threads", "2", "--output-dir", &out_dir.to_string_lossy()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("1 entry point(s)") && stdout.contains("main(x: f32["), "{stdout}");
    assert!(stdout.contains("y: f32 [2, "), "{stdout}");
    let (y, want) = (
        read_npy_file(&out_dir.join("y.npy")).expect("y.npy"),
        read_npy_file(&repo().join("examples/mlp/expected/y.npy")).expect("expected"),
    );
    assert_eq!(y.shape, want.shape);
    let diff = y.to_f64_vec().iter().zip(want.to_f64_vec()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff <= 1e-5, "max |example - numpy| = {diff}");

    // No inputs: zeros with symbolic dims 1.
    let out = run_artifact(&[&art]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("input x: zeros [1, "), "{}", text(&out.stdout));

    for bad in [
        vec!["--entry", "nope", art.as_str()],
        vec![art.as_str(), "q=examples/mlp/x.npy"],
        vec![art.as_str(), "x=examples/mlp/model.fir"],
        vec!["missing.ferrumc"],
    ] {
        let out = run_artifact(&bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with("error: ") && !err.contains("panicked"), "{bad:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
