//! The pass manager: resolves a requested pass list into a schedule (pulling in
//! dependencies, keeping the user's order where dependencies allow), runs it, verifies the
//! module after every pass, and records what each pass did.

use crate::pass::{OptimizationPass, OptimizationResult, PassOptions};
use crate::registry;
use ferrumc_ir::{verify, Module};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Why a pipeline could not be scheduled or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    #[error("unknown pass `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownPass { name: String, suggestion: Option<String> },
    #[error("pass `{pass}` depends on `{dependency}`, which is not a registered pass")]
    MissingDependency { pass: String, dependency: String },
    #[error("the dependencies of these passes form a cycle: {}", passes.join(" -> "))]
    DependencyCycle { passes: Vec<String> },
    #[error("pass `{pass}` failed: {message}")]
    PassFailed { pass: String, message: String },
    #[error("pass `{pass}` left a module that does not verify:\n{details}")]
    BrokeVerifier { pass: String, details: String },
    #[error("unknown optimization level `{0}` (expected 0, 1, 2 or 3)")]
    UnknownLevel(String),
}

/// Order `requested` passes and the dependencies they pull in.
///
/// The result is a topological order of the dependency graph restricted to the requested
/// passes and their transitive dependencies. Among the passes that are ready, the one whose
/// position is earliest runs first: a requested pass has its index in `requested`, a
/// pulled-in pass the index of the first requested pass that needs it (and it runs before
/// that pass). Listing a pass twice keeps its first position.
pub fn schedule(requested: &[&str]) -> Result<Vec<&'static dyn OptimizationPass>, PipelineError> {
    schedule_in(requested, registry::all())
}

/// [`schedule`] over an explicit set of passes (tests use their own).
pub fn schedule_in(
    requested: &[&str],
    available: &[&'static dyn OptimizationPass],
) -> Result<Vec<&'static dyn OptimizationPass>, PipelineError> {
    let find = |name: &str| available.iter().copied().find(|p| p.name() == name);
    // (position, depth-from-requester) per pass; smaller runs earlier among ready passes.
    let mut rank: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    for (position, &name) in requested.iter().enumerate() {
        let pass = find(name).ok_or_else(|| PipelineError::UnknownPass {
            name: name.to_string(),
            suggestion: closest_name(name, available.iter().map(|p| p.name())),
        })?;
        if rank.contains_key(pass.name()) {
            continue;
        }
        rank.insert(pass.name(), (position, 0));
        // Pull in the transitive dependencies, ranked just before this pass.
        let mut stack = vec![(pass, 0usize)];
        while let Some((p, depth)) = stack.pop() {
            for dep in p.dependencies() {
                let d = find(dep).ok_or_else(|| PipelineError::MissingDependency {
                    pass: p.name().to_string(),
                    dependency: dep.to_string(),
                })?;
                if !rank.contains_key(d.name()) {
                    rank.insert(d.name(), (position, depth + 1));
                    stack.push((d, depth + 1));
                }
            }
        }
    }
    let mut remaining: BTreeSet<&'static str> = rank.keys().copied().collect();
    let mut order: Vec<&'static dyn OptimizationPass> = Vec::new();
    while !remaining.is_empty() {
        let ready = remaining
            .iter()
            .copied()
            .filter(|name| find(name).is_some_and(|p| p.dependencies().iter().all(|d| !remaining.contains(d))))
            // Earlier position first; deeper dependencies of the same requester first.
            .min_by_key(|name| {
                let (position, depth) = rank[name];
                (position, std::cmp::Reverse(depth), *name)
            });
        match ready {
            Some(name) => {
                remaining.remove(name);
                order.extend(find(name));
            }
            None => return Err(PipelineError::DependencyCycle { passes: find_cycle(&remaining, &find) }),
        }
    }
    Ok(order)
}

/// A dependency cycle among `stuck` passes, as names with the first repeated at the end.
fn find_cycle<'a>(
    stuck: &BTreeSet<&'static str>,
    find: &dyn Fn(&str) -> Option<&'a dyn OptimizationPass>,
) -> Vec<String> {
    let Some(&start) = stuck.iter().next() else { return Vec::new() };
    let mut path: Vec<&str> = vec![start];
    loop {
        let current = path[path.len() - 1];
        let next = find(current).and_then(|p| p.dependencies().into_iter().find(|d| stuck.contains(d)));
        let Some(next) = next else { return path.iter().map(|s| s.to_string()).collect() };
        if let Some(i) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(next.to_string());
            return cycle;
        }
        path.push(next);
    }
}

/// The registered name closest to `name` by edit distance, if reasonably close.
fn closest_name<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= c.len().max(name.len()) / 3 + 1)
        .min()
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (row[j + 1] + 1).min(row[j] + 1).min(prev + usize::from(ca != cb));
            prev = cur;
        }
    }
    row[b.len()]
}

/// The passes of optimization level `level` (the seed's `BuildOptions.optimization_level`),
/// before dependency resolution:
///
/// * `-O0`: nothing; the module is compiled as imported.
/// * `-O1`: clean-up — symbolic shape inference, canonicalization, constant folding,
///   common-subexpression and dead-code elimination.
/// * `-O2`: `-O1` plus pattern fusion into the fused LLM ops (linear epilogues, RMSNorm and its
///   residual form, SwiGLU, GELU, rotary embedding, attention; KV-cache attention split into
///   its cache concatenations and the attention), a second clean-up, fusion grouping for
///   codegen, and the memory plan.
/// * `-O3`: `-O2` plus weight prepacking into the layout the CPU kernels read.
///
/// Weight quantization is never implied by a level; it is requested explicitly
/// (`--quantize`), as it changes results within a bound.
pub fn preset(level: u8) -> Result<Vec<&'static str>, PipelineError> {
    const CLEANUP: [&str; 5] = ["shape-inference", "canonicalize", "constant-folding", "cse", "dce"];
    const FUSION: [&str; 8] = [
        "fuse-linear",
        "fuse-rms-norm",
        "fuse-rms-norm-residual",
        "fuse-silu-mul",
        "fuse-gelu",
        "fuse-rotary",
        "fuse-attention",
        "split-kv-attention",
    ];
    match level {
        0 => Ok(Vec::new()),
        1 => Ok(CLEANUP.to_vec()),
        2 | 3 => {
            let mut passes: Vec<&str> = CLEANUP.to_vec();
            passes.extend(FUSION);
            passes.extend(["canonicalize", "cse", "dce"]);
            if level == 3 {
                passes.push("prepack-weights");
            }
            passes.extend(["fusion-groups", "memory-plan"]);
            Ok(passes)
        }
        other => Err(PipelineError::UnknownLevel(other.to_string())),
    }
}

/// What one scheduled pass did, for `--stats`.
#[derive(Debug, Clone)]
pub struct PassRecord {
    pub pass: &'static str,
    /// `false` when `is_applicable` said there was nothing to do.
    pub ran: bool,
    pub result: OptimizationResult,
    pub ops_before: usize,
    pub ops_after: usize,
    pub time: Duration,
}

/// Called with the pass name and the module after every pass that ran.
type AfterPassHook = Box<dyn FnMut(&str, &Module)>;

/// Runs a schedule over a module.
pub struct PassManager {
    passes: Vec<&'static dyn OptimizationPass>,
    options: PassOptions,
    verify_each: bool,
    after_pass: Option<AfterPassHook>,
}

impl std::fmt::Debug for PassManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassManager").field("passes", &self.pass_names()).field("options", &self.options).finish()
    }
}

impl PassManager {
    /// A manager for `requested` passes plus their dependencies (see [`schedule`]). Passes
    /// listed more than once run once; to run a pass again, build a second manager. The
    /// verifier runs after every pass in debug builds and tests ([`Self::verify_each`]).
    pub fn new(requested: &[&str], options: PassOptions) -> Result<PassManager, PipelineError> {
        Ok(PassManager::with_schedule(schedule(requested)?, options))
    }

    /// A manager running exactly `passes`, in order, as a pipeline in which a pass may appear
    /// several times (presets re-run clean-ups after fusion). Each pass's dependencies must
    /// appear earlier.
    pub fn for_pipeline(pipeline: &[&str], options: PassOptions) -> Result<PassManager, PipelineError> {
        let mut passes: Vec<&'static dyn OptimizationPass> = Vec::new();
        for &name in pipeline {
            // Schedule the prefix that makes this pass runnable, then the pass itself.
            let missing: Vec<&'static dyn OptimizationPass> = schedule(&[name])?
                .into_iter()
                .filter(|p| p.name() == name || !passes.iter().any(|q| q.name() == p.name()))
                .collect();
            passes.extend(missing);
        }
        Ok(PassManager::with_schedule(passes, options))
    }

    /// The pipeline of optimization level `level` ([`preset`]) followed by `extra` passes.
    /// With `options.quantize` set, `quantize-weights` joins the pipeline right after the
    /// fusion passes (before prepacking, which only packs f32 weights).
    pub fn for_level(level: u8, extra: &[&str], options: PassOptions) -> Result<PassManager, PipelineError> {
        let mut pipeline = preset(level)?;
        if options.quantize.is_some() && !extra.contains(&"quantize-weights") {
            let after_fusion = pipeline.iter().rposition(|p| p.starts_with("fuse-")).map_or(pipeline.len(), |i| i + 1);
            pipeline.insert(after_fusion, "quantize-weights");
        }
        pipeline.extend_from_slice(extra);
        PassManager::for_pipeline(&pipeline, options)
    }

    fn with_schedule(passes: Vec<&'static dyn OptimizationPass>, options: PassOptions) -> PassManager {
        PassManager { passes, options, verify_each: cfg!(any(debug_assertions, test)), after_pass: None }
    }

    /// Run the verifier after every pass (on by default in debug builds).
    pub fn verify_each(mut self, on: bool) -> PassManager {
        self.verify_each = on;
        self
    }

    /// Call `hook(pass_name, module)` after every pass that ran (for `--print-ir-after*`).
    pub fn after_each_pass(mut self, hook: impl FnMut(&str, &Module) + 'static) -> PassManager {
        self.after_pass = Some(Box::new(hook));
        self
    }

    /// The names of the scheduled passes, in run order.
    pub fn pass_names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Run every scheduled pass over `module`. On error the module holds the state after the
    /// last pass that succeeded (a pass that fails leaves its input unchanged; a pass that
    /// breaks the verifier leaves its output, for inspection).
    pub fn run(&mut self, module: &mut Module) -> Result<Vec<PassRecord>, PipelineError> {
        let mut records = Vec::new();
        for pass in &self.passes {
            let ops_before = module.op_count();
            let start = Instant::now();
            if !pass.is_applicable(module, &self.options) {
                records.push(PassRecord {
                    pass: pass.name(),
                    ran: false,
                    result: OptimizationResult::unchanged(),
                    ops_before,
                    ops_after: ops_before,
                    time: start.elapsed(),
                });
                continue;
            }
            let mut work = module.clone();
            let result = pass
                .apply(&mut work, &self.options)
                .map_err(|e| PipelineError::PassFailed { pass: pass.name().to_string(), message: e.message })?;
            *module = work;
            let time = start.elapsed();
            if self.verify_each {
                if let Err(errors) = verify::verify_module(module) {
                    let details =
                        errors.iter().map(|e| format!("  {}", verify::describe(module, e))).collect::<Vec<_>>();
                    return Err(PipelineError::BrokeVerifier {
                        pass: pass.name().to_string(),
                        details: details.join("\n"),
                    });
                }
            }
            if let Some(hook) = self.after_pass.as_mut() {
                hook(pass.name(), module);
            }
            records.push(PassRecord {
                pass: pass.name(),
                ran: true,
                result,
                ops_before,
                ops_after: module.op_count(),
                time,
            });
        }
        Ok(records)
    }
}

/// `--stats`: one row per pass with its op counts, time and what it reported.
pub fn format_stats(records: &[PassRecord]) -> String {
    let mut out = format!(
        "{:<24} {:>8} {:>8} {:>10} {:>12} {:>9}  notes\n",
        "pass", "ops in", "ops out", "time ms", "saved bytes", "speedup"
    );
    for r in records {
        let mut notes: Vec<String> = r.result.notes.clone();
        notes.extend(r.result.warnings.iter().map(|w| format!("warning: {w}")));
        if !r.ran {
            notes.insert(0, "not applicable".to_string());
        }
        out.push_str(&format!(
            "{:<24} {:>8} {:>8} {:>10.3} {:>12} {:>9.2}  {}\n",
            r.pass,
            r.ops_before,
            r.ops_after,
            r.time.as_secs_f64() * 1e3,
            r.result.stats.memory_saved,
            r.result.stats.estimated_speedup,
            notes.join("; ")
        ));
    }
    let total: Duration = records.iter().map(|r| r.time).sum();
    out.push_str(&format!("total {:.3} ms\n", total.as_secs_f64() * 1e3));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::{PassError, PassOptions};

    /// A pass that only declares a name and dependencies.
    struct Fake {
        name: &'static str,
        deps: &'static [&'static str],
    }

    impl OptimizationPass for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn summary(&self) -> &'static str {
            "test pass"
        }
        fn dependencies(&self) -> Vec<&'static str> {
            self.deps.to_vec()
        }
        fn apply(&self, _m: &mut Module, _o: &PassOptions) -> Result<OptimizationResult, PassError> {
            Ok(OptimizationResult::unchanged())
        }
    }

    static A: Fake = Fake { name: "a", deps: &[] };
    static B: Fake = Fake { name: "b", deps: &["a"] };
    static C: Fake = Fake { name: "c", deps: &["b"] };
    static D: Fake = Fake { name: "d", deps: &[] };
    static E: Fake = Fake { name: "e", deps: &["d", "a"] };
    static LOOP_X: Fake = Fake { name: "x", deps: &["y"] };
    static LOOP_Y: Fake = Fake { name: "y", deps: &["z"] };
    static LOOP_Z: Fake = Fake { name: "z", deps: &["x"] };
    static DANGLING: Fake = Fake { name: "dangling", deps: &["nowhere"] };

    fn names(order: &[&'static dyn OptimizationPass]) -> Vec<&'static str> {
        order.iter().map(|p| p.name()).collect()
    }

    fn all() -> Vec<&'static dyn OptimizationPass> {
        vec![&A, &B, &C, &D, &E, &LOOP_X, &LOOP_Y, &LOOP_Z, &DANGLING]
    }

    #[test]
    fn keeps_the_user_order_when_dependencies_allow() {
        assert_eq!(names(&schedule_in(&["d", "a"], &all()).unwrap()), ["d", "a"]);
        assert_eq!(names(&schedule_in(&["a", "d"], &all()).unwrap()), ["a", "d"]);
    }

    #[test]
    fn pulls_in_transitive_dependencies_just_before_their_requester() {
        assert_eq!(names(&schedule_in(&["d", "c"], &all()).unwrap()), ["d", "a", "b", "c"]);
        assert_eq!(names(&schedule_in(&["e"], &all()).unwrap()), ["a", "d", "e"]);
    }

    #[test]
    fn moves_a_listed_dependency_before_its_dependent() {
        assert_eq!(names(&schedule_in(&["b", "a"], &all()).unwrap()), ["a", "b"]);
        assert_eq!(names(&schedule_in(&["c", "d", "a"], &all()).unwrap()), ["a", "b", "c", "d"]);
    }

    #[test]
    fn repeated_names_run_once() {
        assert_eq!(names(&schedule_in(&["a", "b", "a"], &all()).unwrap()), ["a", "b"]);
    }

    #[test]
    fn unknown_pass_is_named_with_a_suggestion() {
        let err = schedule_in(&["a", "dangelin"], &all()).err().unwrap();
        assert_eq!(err, PipelineError::UnknownPass { name: "dangelin".into(), suggestion: Some("dangling".into()) });
        assert!(err.to_string().contains("did you mean `dangling`"), "{err}");
        let err = schedule_in(&["qqqqqqqq"], &all()).err().unwrap();
        assert_eq!(err, PipelineError::UnknownPass { name: "qqqqqqqq".into(), suggestion: None });
    }

    #[test]
    fn missing_dependency_names_both_passes() {
        let err = schedule_in(&["dangling"], &all()).err().unwrap();
        assert_eq!(err, PipelineError::MissingDependency { pass: "dangling".into(), dependency: "nowhere".into() });
    }

    #[test]
    fn dependency_cycle_lists_the_cycle() {
        let err = schedule_in(&["a", "x"], &all()).err().unwrap();
        let PipelineError::DependencyCycle { passes } = &err else { panic!("expected a cycle error, got {err}") };
        assert_eq!(passes.first(), passes.last());
        let mut members: Vec<&str> = passes[1..].iter().map(String::as_str).collect();
        members.sort();
        assert_eq!(members, ["x", "y", "z"]);
        assert!(err.to_string().contains(" -> "), "{err}");
    }

    #[test]
    fn every_registered_pass_schedules_and_presets_resolve() {
        let mut seen = std::collections::BTreeSet::new();
        for pass in registry::all() {
            assert!(seen.insert(pass.name()), "duplicate pass name {}", pass.name());
            let kebab = pass.name().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            assert!(kebab, "pass name `{}` is not kebab-case", pass.name());
            let order = schedule(&[pass.name()]).unwrap();
            assert_eq!(order.last().map(|p| p.name()), Some(pass.name()));
        }
        for level in 0..=3 {
            let manager = PassManager::for_level(level, &[], PassOptions::default()).unwrap();
            let order = manager.pass_names();
            // Every pass's dependencies ran earlier in the pipeline.
            for (i, name) in order.iter().enumerate() {
                for dep in registry::find(name).unwrap().dependencies() {
                    assert!(order[..i].contains(&dep), "-O{level}: {name} runs before its dependency {dep}");
                }
            }
        }
        assert!(preset(4).is_err());
        let options = PassOptions { quantize: Some(crate::QuantScheme::Q8_0), ..PassOptions::default() };
        let order = PassManager::for_level(3, &[], options).unwrap().pass_names();
        let position = |name: &str| order.iter().position(|p| *p == name).unwrap();
        assert!(position("fuse-attention") < position("quantize-weights"));
        assert!(position("quantize-weights") < position("prepack-weights"), "{order:?}");
    }

    /// A pass that breaks the IR: the manager must name it.
    struct Breaker;
    impl OptimizationPass for Breaker {
        fn name(&self) -> &'static str {
            "breaker"
        }
        fn summary(&self) -> &'static str {
            "sets a wrong result type"
        }
        fn apply(&self, m: &mut Module, _o: &PassOptions) -> Result<OptimizationResult, PassError> {
            let f = &mut m.functions[0];
            let op = f.op_ids().next().ok_or_else(|| PassError::new("no op"))?;
            let result = f.op(op).map(|d| d.results[0]).ok_or_else(|| PassError::new("no op"))?;
            f.set_type(result, ferrumc_ir::TensorType::fixed(ferrumc_ir::DType::I64, &[7]));
            Ok(OptimizationResult { applied: true, ..OptimizationResult::unchanged() })
        }
    }
    static BREAKER: Breaker = Breaker;

    #[test]
    fn verifier_failure_names_the_pass() {
        let mut m = ferrumc_ir::text::parse_module(
            "module @m\n\nfunc @main(%x: f32[4]) -> (y: f32[4]) {\n  %0 = exp %x : f32[4]\n  return %0\n}\n",
        )
        .unwrap();
        let mut manager = PassManager::with_schedule(vec![&BREAKER], PassOptions::default()).verify_each(true);
        let err = manager.run(&mut m).err().unwrap();
        assert!(matches!(&err, PipelineError::BrokeVerifier { pass, .. } if pass == "breaker"), "{err}");
    }
}
