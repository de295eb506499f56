//! Differential fuzzing of the compiled path: deterministic-seeded random well-typed
//! ModelIR functions (unary and broadcasting binary elementwise ops, reductions, softmax,
//! rms_norm, transpose, reshape/unsqueeze, concat, slice, gather, linear/matmul with
//! weights, batched matmul, where/less; shapes with a symbolic dim `?n`) are compiled at a
//! random `-O` level, run through the runtime with its micro-kernels at two values of `?n`,
//! and compared with the reference interpreter on the same optimized module (rtol 1e-3,
//! atol 1e-4 · (1 + max |reference|)). [`CASES`] cases from fixed seeds, well under a
//! minute; every failure prints its seed and module text so it reproduces
//! (`FERRUMC_FUZZ_SEED=<seed>` runs one case, `FERRUMC_FUZZ_CASES=<n>` more of them).

use ferrumc_codegen::compile::CompileOptions;
use ferrumc_ir::weights::InlineWeights;
use ferrumc_ir::{DType, Tensor};
use ferrumc_tests::compare::Tolerance;
use ferrumc_tests::compiled::check_compiled;

const CASES: u64 = 500;

use ferrumc_tests::rng::SplitMix64 as Rng;

/// A dim: fixed, or the symbol `?n`.
#[derive(Clone, Copy, PartialEq, Debug)]
enum D {
    F(i64),
    N,
}

fn dims_text(s: &[D]) -> String {
    s.iter()
        .map(|d| match d {
            D::F(v) => v.to_string(),
            D::N => "?n".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ty(dtype: &str, s: &[D]) -> String {
    format!("{dtype}[{}]", dims_text(s))
}

fn numel_fixed(s: &[D]) -> Option<i64> {
    s.iter().map(|d| if let D::F(v) = d { Some(*v) } else { None }).product()
}

struct Gen {
    rng: Rng,
    weights: Vec<String>,
    params: Vec<(String, String, Vec<D>)>,
    ops: Vec<String>,
    /// f32 values: (name, shape).
    pool: Vec<(String, Vec<D>)>,
    next: usize,
}

impl Gen {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%v{}", self.next)
    }

    fn weight(&mut self, s: &[D], lo: f64, hi: f64) -> String {
        let name = format!("@w{}", self.weights.len());
        let n = numel_fixed(s).unwrap_or(1);
        let vals: Vec<String> = (0..n).map(|_| format!("{:?}", (self.rng.uniform(lo, hi) as f32) as f64)).collect();
        self.weights.push(format!("weight {name} : {} = dense<{}: [{}]>", ty("f32", s), ty("f32", s), vals.join(", ")));
        name
    }

    fn param(&mut self, dtype: &str, s: &[D]) -> String {
        let name = format!("%p{}", self.params.len());
        self.params.push((name.clone(), dtype.to_string(), s.to_vec()));
        name
    }

    fn emit(&mut self, text: String, s: Vec<D>) -> String {
        let v = self.fresh();
        self.ops.push(format!("  {v} = {text} : {}", ty("f32", &s)));
        self.pool.push((v.clone(), s));
        v
    }

    /// A shape `a` broadcasts against: some dims dropped from the front or set to 1.
    fn broadcastable(&mut self, a: &[D], allow_n: bool) -> Vec<D> {
        let drop = if a.len() > 1 && self.rng.chance(0.3) { self.rng.below(a.len()) } else { 0 };
        a[drop..]
            .iter()
            .map(|d| match d {
                D::N if !allow_n => D::F(1),
                _ if self.rng.chance(0.3) => D::F(1),
                d => *d,
            })
            .collect()
    }

    fn step(&mut self) {
        let pick = if self.rng.chance(0.6) { self.pool.len() - 1 } else { self.rng.below(self.pool.len()) };
        let (a, sa) = self.pool[pick].clone();
        let r = sa.len();
        let last_fixed = match sa.last() {
            Some(D::F(v)) => Some(*v),
            _ => None,
        };
        match self.rng.below(15) {
            0 | 1 => {
                let ops = ["tanh", "sigmoid", "neg", "abs", "relu", "silu", "erf", "sin", "cos", "softplus"];
                let op = ops[self.rng.below(ops.len())];
                self.emit(format!("{op} {a}"), sa);
            }
            2 => {
                let approx = if self.rng.chance(0.5) { "none" } else { "tanh" };
                self.emit(format!("gelu {a} {{approximate = \"{approx}\"}}"), sa);
            }
            3..=5 => {
                let ops = ["add", "sub", "mul", "max", "min"];
                let op = ops[self.rng.below(ops.len())];
                let b = match self.rng.below(3) {
                    0 => {
                        let same: Vec<String> =
                            self.pool.iter().filter(|(_, s)| *s == sa).map(|(n, _)| n.clone()).collect();
                        same[self.rng.below(same.len())].clone()
                    }
                    1 => {
                        let s = self.broadcastable(&sa, false);
                        self.weight(&s, -1.5, 1.5)
                    }
                    _ => {
                        let s = self.broadcastable(&sa, true);
                        self.param("f32", &s)
                    }
                };
                let (x, y) = if self.rng.chance(0.5) { (a, b) } else { (b, a) };
                self.emit(format!("{op} {x}, {y}"), sa);
            }
            6 => {
                let ops = ["reduce_sum", "reduce_mean", "reduce_max"];
                let op = ops[self.rng.below(ops.len())];
                let axis = self.rng.below(r);
                let keep = self.rng.chance(0.5) || r == 1;
                let mut s = sa.clone();
                if keep {
                    s[axis] = D::F(1);
                } else {
                    s.remove(axis);
                }
                self.emit(format!("{op} {a} {{axes = [{axis}], keepdims = {keep}}}"), s);
            }
            7 => {
                let axis = self.rng.below(r);
                self.emit(format!("softmax {a} {{axis = {axis}}}"), sa);
            }
            8 if last_fixed.is_some() => {
                let w = self.weight(&sa[r - 1..], 0.5, 1.5);
                self.emit(format!("rms_norm {a}, {w} {{epsilon = 1e-5}}"), sa);
            }
            9 if r >= 2 => {
                let mut perm: Vec<usize> = (0..r).collect();
                for k in (1..r).rev() {
                    let j = self.rng.below(k + 1);
                    perm.swap(k, j);
                }
                let s: Vec<D> = perm.iter().map(|&p| sa[p]).collect();
                let p: Vec<String> = perm.iter().map(|p| p.to_string()).collect();
                self.emit(format!("transpose {a} {{perm = [{}]}}", p.join(", ")), s);
            }
            10 => {
                if r < 4 && self.rng.chance(0.5) {
                    let k = self.rng.below(r + 1);
                    let mut s = sa.clone();
                    s.insert(k, D::F(1));
                    self.emit(format!("unsqueeze {a} {{axes = [{k}]}}"), s);
                } else if r >= 2 {
                    let k = self.rng.below(r - 1);
                    if let (D::F(x), D::F(y)) = (sa[k], sa[k + 1]) {
                        let mut s = sa.clone();
                        s[k] = D::F(x * y);
                        s.remove(k + 1);
                        self.emit(format!("reshape {a} {{allowzero = false}}"), s);
                    }
                }
            }
            11 => {
                let axes: Vec<usize> = (0..r).filter(|&k| matches!(sa[k], D::F(_))).collect();
                if axes.is_empty() {
                    return;
                }
                let axis = axes[self.rng.below(axes.len())];
                if self.rng.chance(0.5) {
                    let same: Vec<String> =
                        self.pool.iter().filter(|(_, s)| *s == sa).map(|(n, _)| n.clone()).collect();
                    let b = same[self.rng.below(same.len())].clone();
                    let mut s = sa.clone();
                    if let D::F(v) = s[axis] {
                        s[axis] = D::F(2 * v);
                    }
                    self.emit(format!("concat {a}, {b} {{axis = {axis}}}"), s);
                } else if let D::F(v) = sa[axis] {
                    if v < 2 {
                        return;
                    }
                    let start = self.rng.below(v as usize - 1) as i64;
                    let end = start + 1 + self.rng.below((v - start - 1) as usize + 1) as i64;
                    let (st, en) = if self.rng.chance(0.3) { (start - v, end) } else { (start, end) };
                    let mut s = sa.clone();
                    s[axis] = D::F(end - start);
                    self.emit(format!("slice {a} {{axes = [{axis}], ends = [{en}], starts = [{st}], steps = [1]}}"), s);
                }
            }
            12 => {
                let (v, d) = (3 + self.rng.below(5) as i64, 1 + self.rng.below(6) as i64);
                let table = self.weight(&[D::F(v), D::F(d)], -1.0, 1.0);
                let ishape = if self.rng.chance(0.5) { vec![D::N] } else { vec![D::F(2), D::N] };
                let ids = self.param(&format!("i64<{v}>"), &ishape);
                let mut s = ishape.clone();
                s.push(D::F(d));
                self.emit(format!("gather {table}, {ids} {{axis = 0}}"), s);
            }
            13 if last_fixed.is_some() => {
                let k = last_fixed.unwrap_or(1);
                let out = 1 + self.rng.below(7) as i64;
                let mut s = sa.clone();
                s[r - 1] = D::F(out);
                if self.rng.chance(0.5) {
                    let w = self.weight(&[D::F(out), D::F(k)], -0.7, 0.7);
                    let bias = if self.rng.chance(0.5) {
                        format!(", {}", self.weight(&[D::F(out)], -0.5, 0.5))
                    } else {
                        String::new()
                    };
                    self.emit(format!("linear {a}, {w}{bias}"), s);
                } else {
                    let w = self.weight(&[D::F(k), D::F(out)], -0.7, 0.7);
                    self.emit(format!("matmul {a}, {w}"), s);
                }
            }
            14 if r >= 2 => {
                if self.rng.chance(0.5) {
                    // Batched: a · aᵀ over the last two dims.
                    let mut perm: Vec<usize> = (0..r).collect();
                    perm.swap(r - 2, r - 1);
                    let mut st = sa.clone();
                    st.swap(r - 2, r - 1);
                    let p: Vec<String> = perm.iter().map(|p| p.to_string()).collect();
                    let t = self.emit(format!("transpose {a} {{perm = [{}]}}", p.join(", ")), st);
                    let mut s = sa.clone();
                    s[r - 1] = sa[r - 2];
                    self.emit(format!("matmul {a}, {t}"), s);
                } else {
                    let same: Vec<String> =
                        self.pool.iter().filter(|(_, s)| *s == sa).map(|(n, _)| n.clone()).collect();
                    let b = same[self.rng.below(same.len())].clone();
                    let c = self.fresh();
                    self.ops.push(format!("  {c} = less {a}, {b} : {}", ty("bool", &sa)));
                    self.emit(format!("where {c}, {b}, {a}"), sa);
                }
            }
            _ => {}
        }
    }
}

/// A random module (text) and its `?n`-dependent inputs builder.
fn generate(seed: u64) -> (String, Vec<(String, String, Vec<D>)>) {
    let mut g =
        Gen { rng: Rng(seed), weights: Vec::new(), params: Vec::new(), ops: Vec::new(), pool: Vec::new(), next: 0 };
    let rank = 1 + g.rng.below(4);
    let mut shape: Vec<D> = (0..rank).map(|_| D::F(1 + g.rng.below(5) as i64)).collect();
    if g.rng.chance(0.7) {
        let k = g.rng.below(rank);
        shape[k] = D::N;
    }
    let x = g.param("f32", &shape);
    g.pool.push((x, shape));
    let steps = 2 + g.rng.below(7);
    for _ in 0..steps {
        g.step();
    }
    let mut outs = vec![g.pool.len() - 1];
    if g.pool.len() > 2 && g.rng.chance(0.4) {
        let k = g.rng.below(g.pool.len() - 1);
        outs.push(k);
    }
    let params: Vec<String> = g
        .params
        .iter()
        .map(|(n, dt, s)| {
            let dt = if dt.starts_with("i64") { "i64" } else { dt.as_str() };
            format!("{n}: {}", ty(dt, s))
        })
        .collect();
    let results: Vec<String> =
        outs.iter().enumerate().map(|(i, &k)| format!("y{i}: {}", ty("f32", &g.pool[k].1))).collect();
    let names: Vec<String> = outs.iter().map(|&k| g.pool[k].0.clone()).collect();
    let mut text = String::from("module @fuzz\n\n");
    for w in &g.weights {
        text.push_str(w);
        text.push('\n');
    }
    text.push_str(&format!("\nfunc @main({}) -> ({}) {{\n", params.join(", "), results.join(", ")));
    for o in &g.ops {
        text.push_str(o);
        text.push('\n');
    }
    text.push_str(&format!("  return {}\n}}\n", names.join(", ")));
    (text, g.params)
}

fn inputs(params: &[(String, String, Vec<D>)], n: i64, rng: &mut Rng) -> Vec<(String, Tensor)> {
    params
        .iter()
        .map(|(name, dt, s)| {
            let shape: Vec<usize> = s
                .iter()
                .map(|d| match d {
                    D::F(v) => *v as usize,
                    D::N => n as usize,
                })
                .collect();
            let numel: usize = shape.iter().product();
            let name = name.trim_start_matches('%').to_string();
            let t = if let Some(v) = dt.strip_prefix("i64<").and_then(|v| v.strip_suffix('>')) {
                let v: usize = v.parse().unwrap_or(1);
                Tensor::from_i64(DType::I64, shape, (0..numel).map(|_| rng.below(v) as i64).collect())
            } else {
                Tensor::from_f64(DType::F32, shape, (0..numel).map(|_| rng.uniform(-2.0, 2.0)).collect())
            };
            (name, t.unwrap_or_else(|e| panic!("test input: {e}")))
        })
        .collect()
}

fn run_case(seed: u64) -> Result<(), String> {
    let (text, params) = generate(seed);
    let fail = |e: String| format!("seed {seed}: {e}\n{text}");
    let m = ferrumc_ir::text::parse_module(&text).map_err(|e| fail(format!("generated module does not parse: {e}")))?;
    if let Err(errors) = ferrumc_ir::verify::verify_module(&m) {
        let list: Vec<String> = errors.iter().map(|e| ferrumc_ir::verify::describe(&m, e)).collect();
        return Err(fail(format!("generated module does not verify: {}", list.join("; "))));
    }
    let mut rng = Rng(seed ^ 0x5555);
    let level = rng.below(4) as u8;
    let runs: Vec<(String, Vec<(String, Tensor)>)> =
        [1, 3].iter().map(|&n| ("main".to_string(), inputs(&params, n, &mut rng))).collect();
    let options = CompileOptions { level, ..CompileOptions::default() };
    if std::env::var_os("FERRUMC_FUZZ_DUMP").is_some() {
        dump_kernels(&m, &options);
    }
    check_compiled(
        &format!("seed {seed} -O{level}"),
        &m,
        &InlineWeights,
        &options,
        &runs,
        Tolerance { rtol: 1e-3, atol: 1e-4 },
    )
    .map_err(fail)
}

/// Print the optimized module and each group's kernel (debugging a failing seed).
fn dump_kernels(m: &ferrumc_ir::Module, options: &CompileOptions) {
    let Ok(o) = ferrumc_codegen::compile::optimize_module(m, options) else { return };
    eprintln!("{}", ferrumc_ir::text::print_module(&o));
    for f in &o.functions {
        for (g, r) in ferrumc_codegen::lower::lower_function(f).unwrap_or_default() {
            match r {
                Ok(l) => eprintln!("group {g}:\n{}", l.kernel.print()),
                Err(e) => eprintln!("group {g}: {e}"),
            }
        }
    }
}

#[test]
fn random_graphs_compile_and_match_the_interpreter() {
    let seeds: Vec<u64> = match std::env::var("FERRUMC_FUZZ_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => {
            let n = std::env::var("FERRUMC_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(CASES);
            (0..n).map(|i| 1000 + i).collect()
        }
    };
    let failures: Vec<String> = seeds.iter().filter_map(|&s| run_case(s).err()).collect();
    for f in failures.iter().take(5) {
        eprintln!("---- {f}");
    }
    assert!(failures.is_empty(), "{} of {} random graphs failed (first ones above)", failures.len(), seeds.len());
}
