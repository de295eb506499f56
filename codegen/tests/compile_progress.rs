//! The compile progress hook: compiling the HF Llama fixture reports `Optimizing` once, then
//! per entry point a `Function` event whose group count equals the `Group` events that follow
//! it, for every function of the module; the artifact is byte-identical with and without a hook.

use ferrumc_codegen::compile::{compile_module, CompileOptions, CompileProgress, ProgressHook};
use ferrumc_ir::weights::FileWeights;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[test]
fn progress_events_cover_every_function_and_group() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/llama");
    let (m, _) = ferrumc_hf::import_hf(&dir).expect("import fixture");
    let weights = FileWeights::new(dir);
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&events);
    let hook = ProgressHook::new(move |e| {
        let line = match e {
            CompileProgress::Optimizing => "optimizing".to_string(),
            CompileProgress::Function { function, groups } => format!("function {function} {groups}"),
            CompileProgress::Group => "group".to_string(),
        };
        sink.lock().expect("lock").push(line);
    });
    let with_hook = compile_module(&m, &weights, &CompileOptions { progress: hook, ..CompileOptions::default() })
        .expect("compile with hook");
    let without = compile_module(&m, &weights, &CompileOptions::default()).expect("compile");
    assert!(with_hook == without, "the hook changed the artifact");

    let events = events.lock().expect("lock").clone();
    assert_eq!(events.iter().filter(|e| *e == "optimizing").count(), 1, "{events:?}");
    assert_eq!(events[0], "optimizing");
    let mut functions = Vec::new();
    let mut i = 1;
    while i < events.len() {
        let parts: Vec<&str> = events[i].split(' ').collect();
        assert_eq!(parts[0], "function", "{events:?}");
        let groups: usize = parts[2].parse().expect("count");
        assert!(groups > 0);
        let following = events[i + 1..].iter().take_while(|e| *e == "group").count();
        assert_eq!(following, groups, "{}", parts[1]);
        functions.push(parts[1].to_string());
        i += 1 + groups;
    }
    functions.sort();
    let mut names: Vec<String> = m.functions.iter().map(|f| f.name.clone()).collect();
    names.sort();
    assert_eq!(functions, names);
}
