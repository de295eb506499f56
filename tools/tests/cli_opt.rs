//! End-to-end tests of `ferrumc opt`: listing passes, running presets and pass lists on the
//! bundled Llama block (the optimized module still computes the numpy reference), the
//! diagnostics options, and clear errors with nothing written for bad requests.

use ferrumc_ir::npy::read_npy_file;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

fn ferrumc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrumc")).args(args).current_dir(repo()).output().expect("spawn ferrumc")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch copy of `examples/llama_block` (so optimized modules sit beside their weights).
fn llama_block_copy(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrumc-opt-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("expected")).expect("scratch dir");
    let src = repo().join("examples/llama_block");
    for file in ["model.fir", "model.safetensors", "input_ids.npy", "position_ids.npy", "expected/logits.npy"] {
        std::fs::copy(src.join(file), dir.join(file)).expect("copy example");
    }
    dir
}

fn max_abs_diff(a: &Path, b: &Path) -> f64 {
    let (a, b) = (read_npy_file(a).expect("read"), read_npy_file(b).expect("read"));
    assert_eq!(a.shape, b.shape);
    a.to_f64_vec().iter().zip(b.to_f64_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn list_passes_names_every_pass_and_the_presets() {
    let out = ferrumc(&["opt", "--list-passes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    for pass in ferrumc_passes::registry::all() {
        assert!(listing.lines().any(|l| l.starts_with(pass.name())), "`{}` missing from:\n{listing}", pass.name());
    }
    assert!(listing.contains("-O2: "), "{listing}");
}

#[test]
fn optimized_llama_block_still_matches_the_numpy_reference() {
    for level in ["-O1", "-O2", "-O3"] {
        let dir = llama_block_copy(&level[1..]);
        let (model, optimized) = (dir.join("model.fir"), dir.join("optimized.fir"));
        let out = ferrumc(&["opt", level, model.to_str().unwrap(), "-o", optimized.to_str().unwrap()]);
        assert!(out.status.success(), "opt {level} failed: {}", text(&out.stderr));
        let ids = format!("input_ids={}", dir.join("input_ids.npy").display());
        let pos = format!("position_ids={}", dir.join("position_ids.npy").display());
        let out_dir = dir.join("out");
        let out = ferrumc(&[
            "run",
            optimized.to_str().unwrap(),
            "--interp",
            "--input",
            &ids,
            "--input",
            &pos,
            "--output-dir",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "run after opt {level} failed: {}", text(&out.stderr));
        let diff = max_abs_diff(&out_dir.join("logits.npy"), &dir.join("expected/logits.npy"));
        assert!(diff <= 1e-4, "{level}: max |diff| {diff:e} against the numpy reference");
    }
}

#[test]
fn stats_and_print_ir_after_report_on_stderr() {
    let dir = llama_block_copy("stats");
    let model = dir.join("model.fir");
    let out = ferrumc(&["opt", "--passes", "cse,dce", "--stats", "--print-ir-after", "dce", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.matches("IR after dce").count(), 1, "{err}");
    assert!(!err.contains("IR after cse"), "{err}");
    assert!(err.lines().any(|l| l.starts_with("cse ")) && err.lines().any(|l| l.starts_with("dce ")), "{err}");
    assert!(text(&out.stdout).starts_with("module @"), "the module goes to stdout");
    let out = ferrumc(&["opt", "--passes", "dce", "--print-ir-after-all", model.to_str().unwrap()]);
    assert_eq!(text(&out.stderr).matches("IR after ").count(), 1);
    // Written away from its weights: the module still names them relative to itself, so say so.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let target = elsewhere.join("opt.fir");
    let out = ferrumc(&["opt", "--passes", "dce", model.to_str().unwrap(), "-o", target.to_str().unwrap()]);
    assert!(out.status.success() && target.exists(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("model.safetensors); copy or link them beside it"), "{}", text(&out.stderr));
}

#[test]
fn bad_requests_fail_with_one_error_and_write_nothing() {
    let dir = llama_block_copy("bad");
    let model = dir.join("model.fir");
    let target = dir.join("never.fir");
    let (m, t) = (model.to_str().unwrap(), target.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["opt", "--passes", "cse,no-such-pass", m, "-o", t], "unknown pass `no-such-pass`"),
        (vec!["opt", "--passes", "fuse-atention", m, "-o", t], "did you mean `fuse-attention`"),
        (vec!["opt", m, "-o", t], "nothing to run"),
        (vec!["opt", "-O2", "--quantize", "q3_k", m, "-o", t], "unknown quantization scheme `q3_k`"),
        (vec!["opt", "--passes", "dce", "--print-ir-after", "nope", m, "-o", t], "unknown pass `nope`"),
        (vec!["opt", "-O2", "missing/model.fir", "-o", t], "missing/model.fir"),
    ];
    for (args, needle) in cases {
        let out = ferrumc(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: expected `{needle}` in:\n{err}");
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
        assert!(!target.exists(), "{args:?} wrote {t}");
    }
    let out = ferrumc(&["opt", "-O4", m]);
    assert!(!out.status.success());
}

#[test]
fn max_dim_bounds_let_shape_inference_resolve_a_clamped_slice() {
    // The ONNX GPT-2 export cuts its 64-row causal mask to `min(seq, 64)` rows.
    let model = "tests/fixtures/onnx_exports/gpt2/model.onnx";
    let mask_type = |out: &Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let ir = text(&out.stdout);
        ir.lines().find(|l| l.contains("= slice") && l.contains("bool[1, 1,")).map(str::to_string).unwrap_or(ir)
    };
    let unbounded = mask_type(&ferrumc(&["opt", model, "--passes", "shape-inference"]));
    assert!(unbounded.contains("bool[1, 1, ?, 64]"), "{unbounded}");
    let bounded = mask_type(&ferrumc(&["opt", model, "--passes", "shape-inference", "--max-dim", "seq=64"]));
    assert!(bounded.contains("bool[1, 1, ?seq, 64]"), "{bounded}");
    // A bound above the table's 64 rows decides nothing.
    let loose = mask_type(&ferrumc(&["opt", model, "--passes", "shape-inference", "--max-dim", "seq=65"]));
    assert!(loose.contains("bool[1, 1, ?, 64]"), "{loose}");
    let bad = ferrumc(&["opt", model, "--max-dim", "seq"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("--max-dim `seq` is not of the form NAME=N"), "{}", text(&bad.stderr));
}
