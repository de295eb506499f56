//! Golden tests of the kernel form: every `tests/golden/*.fir` is grouped (`fusion-groups`)
//! and lowered; the printed kernels (or the reason a group has none) must equal
//! `tests/golden/<name>.kernels`. Re-bless with `FERRUMC_BLESS=1`.

use ferrumc_codegen::lower::lower_function;
use ferrumc_ir::text::parse_module;
use ferrumc_passes::{PassManager, PassOptions};
use std::fmt::Write as _;
use std::path::Path;

fn render(src: &str) -> String {
    let mut m = parse_module(src).expect("golden input parses");
    PassManager::new(&["fusion-groups"], PassOptions::default()).unwrap().run(&mut m).unwrap();
    let mut out = String::new();
    for f in &m.functions {
        for (g, r) in lower_function(f).unwrap() {
            match r {
                Ok(l) => {
                    let kind = f.group_kind(g).map(|k| k.name()).unwrap_or("?");
                    let _ = writeln!(out, "// group {g} ({kind}), ops: {}", l.ops.len());
                    out.push_str(&l.kernel.print());
                }
                Err(e) => {
                    let _ = writeln!(out, "// group {g}: {e}");
                }
            }
            out.push('\n');
        }
    }
    out
}

#[test]
fn kernels_match_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var("FERRUMC_BLESS").is_ok_and(|v| v == "1");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "fir"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty());
    let mut failures = Vec::new();
    for input in inputs {
        let src = std::fs::read_to_string(&input).unwrap();
        let got = render(&src);
        assert_eq!(got, render(&src), "printing is deterministic");
        let golden = input.with_extension("kernels");
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            failures.push(format!("{}:\n--- want\n{want}\n--- got\n{got}", golden.display()));
        }
    }
    assert!(failures.is_empty(), "golden mismatch (bless with FERRUMC_BLESS=1):\n{}", failures.join("\n"));
}
