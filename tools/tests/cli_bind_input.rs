//! `ferrumc compile --bind-input NAME=FILE`: a model whose output shape depends on an input's
//! value (`reshape x, shape`) is refused without binding, compiles with the shape input bound,
//! `inspect` says the input is bound and no longer lists it, and the artifact run on the
//! remaining input matches the reference interpreter run on the unbound model with both inputs
//! (same shape, values within 1e-6 relative: one f32 `exp`). A wrong name, dtype or shape, or a
//! malformed argument, is one clear error naming it, exit status 1, and no file written.

use ferrumc_ir::npy::{read_npy_file, write_npy_file};
use ferrumc_ir::{DType, Tensor};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MODEL: &str = "module @bind

func @forward(%x: f32[2, 3, 4], %shape: i64[3]) -> (y: f32[?, ?, ?]) {
  %0 = reshape %x, %shape {allowzero = false} : f32[?, ?, ?]
  %1 = exp %0 : f32[?, ?, ?]
  return %1
}
";

fn ferrumc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrumc")).args(args).output().expect("spawn ferrumc")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrumc-cli-bind-{}-{name}", std::process::id()));
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

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn npy(dir: &Path, name: &str, t: &Tensor) -> String {
    let p = dir.join(name);
    write_npy_file(&p, t).expect("write npy");
    s(&p)
}

#[test]
fn bound_shape_input_compiles_and_matches_the_interpreter() {
    let dir = scratch("ok");
    let model = dir.join("model.fir");
    std::fs::write(&model, MODEL).expect("write model");
    let x = Tensor::from_f64(DType::F32, vec![2, 3, 4], (0..24).map(|i| f64::from(i) / 10.0 - 1.0).collect()).unwrap();
    let x_npy = npy(&dir, "x.npy", &x);
    let shape_npy = npy(&dir, "shape.npy", &Tensor::from_i64(DType::I64, vec![3], vec![4, 0, -1]).unwrap());
    let art = dir.join("m.ferrumc");

    // Unbound: the output's dims are unknown, the compiler refuses and writes nothing.
    let out = ferrumc(&["compile", &s(&model), "-o", &s(&art)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("(`?`)"), "{}", text(&out.stderr));
    assert!(!art.exists());

    ok(&ferrumc(&["compile", &s(&model), "--bind-input", &format!("shape={shape_npy}"), "-o", &s(&art)]));
    let out = ferrumc(&["inspect", &s(&art)]);
    ok(&out);
    let listing = text(&out.stdout);
    assert!(listing.contains("forward(x: f32[2, 3, 4]) -> (y: f32[4, 3, 2])"), "{listing}");
    assert!(listing.contains("bound at compile time (not inputs): shape"), "{listing}");

    let interp_dir = dir.join("interp");
    ok(&ferrumc(&[
        "run",
        &s(&model),
        "--interp",
        "--input",
        &format!("x={x_npy}"),
        "--input",
        &format!("shape={shape_npy}"),
        "--output-dir",
        &s(&interp_dir),
    ]));
    let out_dir = dir.join("out");
    ok(&ferrumc(&["run", &s(&art), "--input", &format!("x={x_npy}"), "--output-dir", &s(&out_dir)]));
    let (got, want) =
        (read_npy_file(&out_dir.join("y.npy")).unwrap(), read_npy_file(&interp_dir.join("y.npy")).unwrap());
    assert_eq!(got.shape, vec![4, 3, 2]);
    assert_eq!(got.shape, want.shape);
    for (a, b) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "compiled {a} vs interpreter {b}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_bindings_are_clear_errors_and_write_nothing() {
    let dir = scratch("bad");
    let model = dir.join("model.fir");
    std::fs::write(&model, MODEL).expect("write model");
    let good = npy(&dir, "good.npy", &Tensor::from_i64(DType::I64, vec![3], vec![4, 3, 2]).unwrap());
    let float = npy(&dir, "float.npy", &Tensor::from_f64(DType::F32, vec![3], vec![4.0, 3.0, 2.0]).unwrap());
    let short = npy(&dir, "short.npy", &Tensor::from_i64(DType::I64, vec![2], vec![4, 6]).unwrap());
    let art = dir.join("m.ferrumc");
    let cases = [
        (format!("nope={good}"), "`nope`"),
        (format!("shape={float}"), "`shape`"),
        (format!("shape={short}"), "`shape`"),
        ("shape".to_string(), "--bind-input"),
        (format!("shape={}", s(&dir.join("missing.npy"))), "missing.npy"),
    ];
    for (arg, named) in cases {
        let out = ferrumc(&["compile", &s(&model), "--bind-input", &arg, "-o", &s(&art)]);
        assert_eq!(out.status.code(), Some(1), "{arg}: {}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(err.contains(named) && !err.contains("panicked"), "{arg}: {err}");
        assert!(!art.exists(), "{arg}: an artifact was written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
