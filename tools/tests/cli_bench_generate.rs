//! `ferrumc bench` and `ferrumc generate` end to end. Bench: on the compiled MLP example it
//! prints load time and median/min/p90/mean (text and JSON; mapped and `--huge-pages`),
//! compiles a non-artifact model in memory, synthesizes zero KV caches for decode (`--past`),
//! and refuses bad arguments with one clear error and exit status 1. Generate: greedy
//! generation on the tiny random HF Llama fixture equals transformers'
//! `generate(do_sample=False)` (the independent reference in
//! `tests/fixtures/hf/llama/generate_expected.json`, made by `generate_reference.py`; the
//! smallest top-2 logit gap there is 0.05, far above compiled-vs-torch differences ~1e-5),
//! with the artifact mapped and copied onto huge pages (`--huge-pages`); seeded sampling is
//! deterministic and top-k 1 is greedy; too long a run is refused. The same weights exported
//! by optimum to ONNX (`tests/fixtures/onnx_exports/optimum_llama`: `past_key_values.*` in,
//! `present.*` out, an `attention_mask` input) generate the same tokens.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

fn ferrumc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrumc")).args(args).current_dir(repo()).output().expect("spawn ferrumc")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrumc-cli-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Exit status 1, one `error:` message containing `needle`, no panic.
fn fails_with(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{}\nstderr:\n{err}", text(&out.stdout));
    assert!(err.contains("error") && err.contains(needle), "expected `{needle}` in:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn compile(src: &str, dir: &std::path::Path, name: &str) -> String {
    let art = dir.join(name).to_string_lossy().into_owned();
    ok(&ferrumc(&["compile", src, "-o", &art]));
    art
}

#[test]
fn bench_reports_timings_and_refuses_bad_arguments() {
    let dir = scratch("mlp");
    let art = compile("examples/mlp/model.fir", &dir, "mlp.ferrumc");
    let out = ok(&ferrumc(&["bench", &art, "--input", "x=examples/mlp/x.npy", "--iters", "5", "--warmup", "1"]));
    assert!(out.contains("load: "), "{out}");
    for field in ["median_ms=", "min_ms=", "p90_ms=", "mean_ms="] {
        assert!(out.contains(field), "{field} missing in:\n{out}");
    }

    let out = ok(&ferrumc(&["bench", &art, "--input", "x=examples/mlp/x.npy", "--json", "--threads", "1"]));
    let report: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let ms = |k: &str| report[k].as_f64().unwrap_or_else(|| panic!("{k} in {report}"));
    assert!(ms("min_ms") > 0.0 && ms("min_ms") <= ms("median_ms") && ms("median_ms") <= ms("p90_ms"), "{report}");
    assert!(ms("mean_ms") >= ms("min_ms") && ms("load_ms") >= 0.0, "{report}");
    assert_eq!(report["iters"], 20);
    assert_eq!(report["warmup"], 3);
    assert_eq!(report["threads"], 1);
    assert_eq!(report["entry"], "main");
    assert!(report["compile_ms"].is_null());

    // Loaded onto huge pages instead of mapped: the same report.
    let out = ok(&ferrumc(&["bench", &art, "--input", "x=examples/mlp/x.npy", "--iters", "2", "--huge-pages"]));
    assert!(out.contains("load: ") && out.contains("median_ms="), "{out}");

    // A model that is not an artifact is compiled in memory first; nothing is written.
    let out = ok(&ferrumc(&["bench", "examples/mlp/model.fir", "--input", "x=examples/mlp/x.npy", "--iters", "2"]));
    assert!(out.contains("compile: ") && out.contains("median_ms="), "{out}");

    fails_with(&ferrumc(&["bench", &art, "--input", "x=examples/mlp/x.npy", "--iters", "0"]), "--iters");
    fails_with(&ferrumc(&["bench", &art]), "x: f32");
    fails_with(&ferrumc(&["bench", &art, "--input", "y=examples/mlp/x.npy"]), "no input `y`");
    fails_with(&ferrumc(&["bench", &art, "--input", "x"]), "NAME=FILE");
    fails_with(&ferrumc(&["bench", &art, "--input", "x=missing.npy"]), "missing.npy");
    fails_with(&ferrumc(&["bench", &art, "--zeros", "x=2xq"]), "not a shape");
    fails_with(&ferrumc(&["bench", &art, "--zeros", "x=3x3"]), "x");
    fails_with(&ferrumc(&["bench", &art, "--function", "nope", "--input", "x=examples/mlp/x.npy"]), "`nope`");
    fails_with(&ferrumc(&["bench", &art, "--input", "x=examples/mlp/x.npy", "--past", "4"]), "past_");
    fails_with(&ferrumc(&["bench", "examples/mlp/x.npy"]), "x.npy");
}

#[test]
fn bench_decode_with_zero_kv_caches() {
    let out = ok(&ferrumc(&[
        "bench",
        "tests/fixtures/hf/llama",
        "--function",
        "decode",
        "--zeros",
        "input_ids=1x1",
        "--zeros",
        "position_ids=1x1",
        "--past",
        "16",
        "--iters",
        "3",
        "--json",
    ]));
    let report: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let inputs = report["inputs"].to_string();
    assert!(inputs.contains("past_key_0[1, 2, 16, 16]") && inputs.contains("past_value_1[1, 2, 16, 16]"), "{report}");
    assert!(report["compile_ms"].as_f64().is_some(), "{report}");
}

fn generated(out: &str) -> Vec<i64> {
    let line = out.lines().find_map(|l| l.strip_prefix("generated: ")).unwrap_or_else(|| panic!("{out}"));
    line.split_whitespace().map(|t| t.parse().expect("token id")).collect()
}

#[test]
fn greedy_generation_matches_transformers() {
    let dir = scratch("gen");
    let art = compile("tests/fixtures/hf/llama", &dir, "llama.ferrumc");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/hf/llama/generate_expected.json")).expect("reference"),
    )
    .expect("reference JSON");
    let n = expected["new_tokens"].to_string();
    let cases = expected["transformers_greedy"].as_array().expect("cases");
    assert!(cases.len() >= 3);
    for case in cases {
        let prompt: Vec<String> =
            case["prompt_ids"].as_array().expect("prompt").iter().map(|v| v.to_string()).collect();
        let want: Vec<i64> =
            case["generated_ids"].as_array().expect("ids").iter().map(|v| v.as_i64().expect("id")).collect();
        let out = ok(&ferrumc(&["generate", &art, "--prompt-ids", &prompt.join(","), "-n", &n]));
        assert_eq!(generated(&out), want, "prompt {prompt:?}");
        // --greedy says the same thing explicitly; JSON carries the same ids.
        // The artifact copied onto huge pages generates the same tokens.
        let out = ok(&ferrumc(&["generate", &art, "--prompt-ids", &prompt.join(","), "-n", &n, "--huge-pages"]));
        assert_eq!(generated(&out), want, "prompt {prompt:?}, --huge-pages");
        let out = ok(&ferrumc(&["generate", &art, "--prompt-ids", &prompt.join(","), "-n", &n, "--greedy", "--json"]));
        let report: Value = serde_json::from_str(out.trim()).expect("JSON");
        let ids: Vec<i64> = report["generated_ids"].as_array().expect("ids").iter().filter_map(Value::as_i64).collect();
        assert_eq!(ids, want);
    }

    // Seeded sampling is deterministic; a different seed gives another sequence here.
    let sample = |seed: &str, k: &str| {
        let args = ["generate", &art, "--prompt-ids", "1,2,3,4", "-n", "8", "--temperature", "1.5", "--top-k", k];
        generated(&ok(&ferrumc(&[&args[..], &["--top-p", "0.95", "--seed", seed]].concat())))
    };
    assert_eq!(sample("11", "40"), sample("11", "40"));
    assert_ne!(sample("11", "40"), sample("12", "40"));
    // top-k 1 leaves only the argmax: greedy, whatever the temperature and seed.
    let greedy: Vec<i64> =
        cases[0]["generated_ids"].as_array().expect("ids").iter().filter_map(Value::as_i64).collect();
    assert_eq!(sample("11", "1"), greedy);

    // An EOS id stops generation right after it is produced.
    let out = ok(&ferrumc(&["generate", &art, "--prompt-ids", "1,2,3,4", "-n", "8", "--eos", &greedy[2].to_string()]));
    assert_eq!(generated(&out), greedy[..3].to_vec());

    // The artifact's bounds (past ≤ 64 for this fixture) are checked before running.
    fails_with(&ferrumc(&["generate", &art, "--prompt-ids", "1,2,3,4", "-n", "80"]), "--max-dim past=");
    fails_with(&ferrumc(&["generate", &art, "--prompt-ids", "1,500"]), "outside the vocabulary");
    fails_with(&ferrumc(&["generate", &art, "--prompt-ids", "1,x"]), "--prompt-ids");
    fails_with(&ferrumc(&["generate", &art, "--prompt-ids", "1", "--top-p", "0"]), "--top-p");
    fails_with(&ferrumc(&["generate", &art, "--prompt", "hello"]), "tokenizer");
    let mlp = compile("examples/mlp/model.fir", &dir, "mlp.ferrumc");
    fails_with(&ferrumc(&["generate", &mlp, "--prompt-ids", "1"]), "decode");
}

/// With the `tokenizers` feature: a word-level `tokenizer.json` (`w<i>` ↔ id i) beside the
/// artifact is found by default, the text prompt encodes to the same ids as `--prompt-ids`,
/// and the generated ids are decoded.
#[cfg(feature = "tokenizers")]
#[test]
fn text_prompts_go_through_the_tokenizer_beside_the_artifact() {
    let dir = scratch("tok");
    let art = compile("tests/fixtures/hf/llama", &dir, "llama.ferrumc");
    let vocab: serde_json::Map<String, Value> = (0..128).map(|i| (format!("w{i}"), Value::from(i))).collect();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"},
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).expect("write tokenizer");
    let by_ids = generated(&ok(&ferrumc(&["generate", &art, "--prompt-ids", "1,2,3,4", "-n", "8"])));
    let out = ok(&ferrumc(&["generate", &art, "--prompt", "w1 w2 w3 w4", "-n", "8"]));
    assert_eq!(generated(&out), by_ids);
    let words: Vec<String> = by_ids.iter().map(|i| format!("w{i}")).collect();
    assert!(out.contains(&format!("text: {}", words.join(" "))), "{out}");
}

#[test]
fn optimum_export_generates_like_transformers() {
    let dir = scratch("gen-optimum");
    let art = compile("tests/fixtures/onnx_exports/optimum_llama/model.onnx", &dir, "optimum.ferrumc");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/hf/llama/generate_expected.json")).expect("reference"),
    )
    .expect("reference JSON");
    let n = expected["new_tokens"].to_string();
    for case in expected["transformers_greedy"].as_array().expect("cases") {
        let prompt: Vec<String> =
            case["prompt_ids"].as_array().expect("prompt").iter().map(|v| v.to_string()).collect();
        let want: Vec<i64> =
            case["generated_ids"].as_array().expect("ids").iter().map(|v| v.as_i64().expect("id")).collect();
        let out = ok(&ferrumc(&["generate", &art, "--prompt-ids", &prompt.join(","), "-n", &n]));
        assert_eq!(generated(&out), want, "prompt {prompt:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
