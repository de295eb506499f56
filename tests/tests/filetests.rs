//! Golden filetests: one trial per file under `tests/filetests/<suite>/*.fir`, named
//! `<suite>::<file stem>` so a single case runs with `cargo test --test filetests -- <name>`.
//! Commands (`; test: <command>`):
//! * `print` — the module parses; the expectation is its printed form, which must also
//!   parse back to the module's canonical form.
//! * `parse-error` — parsing fails; the expectation is the `line:column: message`.
//! * `verify` — the module parses; the expectation is `ok` or every verifier error.
//! * `run` — the module parses and verifies; `; input: NAME = dense<…>` directives bind
//!   inputs, `; function: NAME` picks the function (default: the first); the expectation
//!   lists each output as `NAME = dense<…>`, compared with `; tolerance: RTOL` (default
//!   1e-6 relative, 1e-7 absolute) rather than textually, so values written by hand match.
//!   Each `run` case is also a second trial `<suite>::<stem>::compiled`: the module is
//!   compiled (`ferrumc_codegen::compile`) at -O0, -O1, -O2 and -O3, run through the runtime
//!   with its micro-kernels, and compared with the same expectation (rtol at least 1e-5,
//!   atol 1e-6: kernels compute in f32).
//! * `opt <pass,pass,…>` or `opt -O<level>` — runs the pass manager (dependencies pulled in,
//!   verifier after every pass) over the module, or over the model named by `; import: PATH`
//!   (relative to the test file: an HF folder, `.onnx` or `.fir`); the expectation is the
//!   printed module afterwards. `; quantize: SCHEME` sets the quantization scheme.
//!
//! Suites may nest one level (`passes/<pass-name>/*.fir`, trial `passes/<pass-name>::<stem>`).

use ferrumc_codegen::compile::CompileOptions;
use ferrumc_ir::attr::write_tensor;
use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{text, verify, Tensor};
use ferrumc_passes::{PassManager, PassOptions, QuantScheme};
use ferrumc_tests::compare::{assert_close, Tolerance};
use ferrumc_tests::compiled;
use ferrumc_tests::filetest::{blessing, check_or_bless, FileTest};
use ferrumc_tests::repo_root;
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let root = repo_root().join("tests/filetests");
    let mut suites: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    suites.sort();
    // A suite folder holding folders (`passes/<name>/`) contributes one suite per subfolder.
    let suites: Vec<PathBuf> = suites
        .into_iter()
        .flat_map(|suite| {
            let mut nested: Vec<PathBuf> = std::fs::read_dir(&suite)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect())
                .unwrap_or_default();
            nested.sort();
            if nested.is_empty() {
                vec![suite]
            } else {
                nested
            }
        })
        .collect();
    for suite in suites {
        let suite_name = suite.strip_prefix(&root).map(|s| s.to_string_lossy().replace('\\', "/")).unwrap_or_default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&suite)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "fir"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for file in files {
            let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let is_run = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| FileTest::parse(&t).ok())
                .is_some_and(|t| t.command == "run");
            if is_run {
                let file = file.clone();
                trials.push(Trial::test(format!("{suite_name}::{stem}::compiled"), move || {
                    compiled_run_file(&file).map_err(Failed::from)
                }));
            }
            trials.push(Trial::test(format!("{suite_name}::{stem}"), move || run_file(&file).map_err(Failed::from)));
        }
    }
    assert!(!trials.is_empty(), "no filetests found under {}", root.display());
    trials.push(Trial::test("passes::every_pass_has_a_golden_folder", move || {
        every_pass_has_a_golden_folder(&repo_root().join("tests/filetests/passes")).map_err(Failed::from)
    }));
    libtest_mimic::run(&args, trials).exit();
}

fn run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let test = FileTest::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match test.command.as_str() {
        "print" => {
            let m = text::parse_module(&test.input).map_err(|e| format!("parse error {e}"))?;
            let printed = text::print_module(&m);
            let reparsed =
                text::parse_module(&printed).map_err(|e| format!("printed module does not parse: {e}\n{printed}"))?;
            let canonical = m.canonical().map_err(|e| e.to_string())?;
            if reparsed != canonical {
                return Err(format!("parse(print(m)) differs from canonical(m)\n{printed}"));
            }
            check_or_bless(path, &test, &lines(&printed))
        }
        "parse-error" => match text::parse_module(&test.input) {
            Ok(_) => Err("expected a parse error, but the module parsed".to_string()),
            Err(e) => check_or_bless(path, &test, &[e.to_string()]),
        },
        "verify" => {
            let m = text::parse_module(&test.input).map_err(|e| format!("parse error {e}"))?;
            let actual = match verify::verify_module(&m) {
                Ok(()) => vec!["ok".to_string()],
                Err(errors) => errors.iter().map(|e| verify::describe(&m, e)).collect(),
            };
            check_or_bless(path, &test, &actual)
        }
        "run" => run_case(path, &test),
        opt if opt.starts_with("opt ") => opt_case(path, &test, opt["opt ".len()..].trim()),
        other => Err(format!("unknown filetest command `{other}` (print, parse-error, verify, run, opt)")),
    }
}

fn run_case(path: &Path, test: &FileTest) -> Result<(), String> {
    let m = text::parse_module(&test.input).map_err(|e| format!("parse error {e}"))?;
    if let Err(errors) = verify::verify_module(&m) {
        let list: Vec<String> = errors.iter().map(|e| verify::describe(&m, e)).collect();
        return Err(format!("module does not verify:\n{}", list.join("\n")));
    }
    let inputs = test.directive_values("input").into_iter().map(parse_binding).collect::<Result<Vec<_>, _>>()?;
    let function = match test.directive_values("function").first() {
        Some(name) => name.to_string(),
        None => m.functions.first().map(|f| f.name.clone()).ok_or("module has no function")?,
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let outputs = run_function(&m, &function, &inputs, &FileWeights::new(base)).map_err(|e| e.to_string())?;
    let actual: Vec<String> = outputs
        .iter()
        .map(|(name, t)| {
            let mut s = format!("{name} = ");
            let _ = write_tensor(&mut s, t);
            s
        })
        .collect();
    if blessing() {
        return check_or_bless(path, test, &actual);
    }
    let rtol = match test.directive_values("tolerance").first() {
        Some(v) => v.parse::<f64>().map_err(|_| format!("bad tolerance `{v}`"))?,
        None => 1e-6,
    };
    let expected = test.expected.iter().map(|l| parse_binding(l)).collect::<Result<Vec<_>, _>>()?;
    if expected.len() != outputs.len() {
        return Err(format!(
            "{} outputs but {} expected\nactual:\n{}",
            outputs.len(),
            expected.len(),
            actual.join("\n")
        ));
    }
    for ((name, got), (ename, want)) in outputs.iter().zip(&expected) {
        if name != ename {
            return Err(format!("output `{name}` where `{ename}` was expected"));
        }
        assert_close(name, got, want, Tolerance { rtol, atol: 1e-7 })?;
    }
    Ok(())
}

/// A `run` case compiled at every level, run through the runtime, against its expectation.
fn compiled_run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let test = FileTest::parse(&text)?;
    let m = text::parse_module(&test.input).map_err(|e| format!("parse error {e}"))?;
    let inputs = test.directive_values("input").into_iter().map(parse_binding).collect::<Result<Vec<_>, _>>()?;
    let function = match test.directive_values("function").first() {
        Some(name) => name.to_string(),
        None => m.functions.first().map(|f| f.name.clone()).ok_or("module has no function")?,
    };
    let rtol = match test.directive_values("tolerance").first() {
        Some(v) => v.parse::<f64>().map_err(|_| format!("bad tolerance `{v}`"))?,
        None => 1e-6,
    };
    let tol = Tolerance { rtol: rtol.max(1e-5), atol: 1e-6 };
    let expected = test.expected.iter().map(|l| parse_binding(l)).collect::<Result<Vec<_>, _>>()?;
    let weights = FileWeights::new(path.parent().map(Path::to_path_buf).unwrap_or_default());
    for level in 0..=3u8 {
        let options = CompileOptions { level, ..CompileOptions::default() };
        let bytes = compiled::compile(&m, &weights, &options)?;
        let got = compiled::run_compiled(&bytes, &function, &inputs).map_err(|e| format!("-O{level}: {e}"))?;
        compiled::compare_outputs(&format!("-O{level}"), &got, &expected, tol)?;
    }
    Ok(())
}

/// One folder per registered pass, named like the pass, holding at least one case; no
/// folder for a pass that does not exist.
fn every_pass_has_a_golden_folder(dir: &Path) -> Result<(), String> {
    let names: Vec<&str> = ferrumc_passes::registry::all().iter().map(|p| p.name()).collect();
    for name in &names {
        let cases = std::fs::read_dir(dir.join(name))
            .map(|d| d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "fir")).count())
            .unwrap_or(0);
        if cases == 0 {
            return Err(format!("pass `{name}` has no golden cases in {}", dir.join(name).display()));
        }
    }
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.filter_map(Result::ok) {
        let folder = entry.file_name().to_string_lossy().into_owned();
        if !names.contains(&folder.as_str()) {
            return Err(format!("{}: no pass is called `{folder}`", entry.path().display()));
        }
    }
    Ok(())
}

fn opt_case(path: &Path, test: &FileTest, pipeline: &str) -> Result<(), String> {
    let mut m = match test.directive_values("import").first() {
        Some(model) => {
            let model_path = path.parent().unwrap_or(Path::new(".")).join(model);
            ferrumc_tests::models::load(&model_path)?.0
        }
        None => text::parse_module(&test.input).map_err(|e| format!("parse error {e}"))?,
    };
    let mut options = PassOptions::default();
    if let Some(scheme) = test.directive_values("quantize").first() {
        options.quantize = Some(QuantScheme::parse(scheme)?);
    }
    let mut manager = match pipeline.strip_prefix("-O") {
        Some(level) => {
            let level = level.parse::<u8>().map_err(|_| format!("bad level `{pipeline}`"))?;
            PassManager::for_level(level, &[], options)
        }
        None => {
            let names: Vec<&str> = pipeline.split(',').map(str::trim).collect();
            PassManager::new(&names, options)
        }
    }
    .map_err(|e| e.to_string())?
    .verify_each(true);
    manager.run(&mut m).map_err(|e| e.to_string())?;
    check_or_bless(path, test, &lines(&text::print_module(&m)))
}

/// `NAME = dense<…>`.
fn parse_binding(s: &str) -> Result<(String, Tensor), String> {
    let (name, literal) = s.split_once('=').ok_or_else(|| format!("`{s}` is not `NAME = dense<…>`"))?;
    let tensor = text::parse_tensor_literal(literal.trim()).map_err(|e| format!("`{s}`: {e}"))?;
    Ok((name.trim().to_string(), tensor))
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}
