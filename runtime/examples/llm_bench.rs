//! Bench: run time of a compiled decoder LLM artifact (`ferrumc compile <hf folder> -o x.ferrumc`)
//! on this machine — `forward` at several sequence lengths and one `decode` step over a KV cache
//! of a given length — reporting median / min / p90 milliseconds after warm-up, optionally with
//! the per-step profile of the runtime (`--profile`: the most expensive schedule steps).
//!
//! ```text
//! cargo run --release -p ferrumc-runtime --example llm_bench -- model.ferrumc \
//!     [--threads 2] [--iters 20] [--warmup 3] [--seqs 1,16,128] [--past 128] [--profile] [--huge-pages]
//! ```
//!
//! Inputs are deterministic pseudo-random token ids (positions `0..T`, or `past..past+1` for
//! the decode step) and a pseudo-random KV cache; only timing is reported.

use ferrumc_runtime::artifact::Placement;
use ferrumc_runtime::model::{DType, Model, Tensor};
use ferrumc_runtime::ukernels::fn_table;
use std::time::Instant;

struct Args {
    path: String,
    threads: usize,
    iters: usize,
    warmup: usize,
    seqs: Vec<usize>,
    past: usize,
    profile: bool,
    top: usize,
    /// Load with `Placement::HugePages` (a copy on huge pages) instead of a file mapping.
    huge_pages: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        path: String::new(),
        threads: 2,
        iters: 20,
        warmup: 3,
        seqs: vec![1, 16, 128],
        past: 128,
        profile: false,
        top: 25,
        huge_pages: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |v: String, name: &str| v.parse::<usize>().map_err(|e| format!("{name} {v}: {e}"));
        match arg.as_str() {
            "--threads" => a.threads = num(value("--threads")?, "--threads")?,
            "--iters" => a.iters = num(value("--iters")?, "--iters")?.max(1),
            "--warmup" => a.warmup = num(value("--warmup")?, "--warmup")?,
            "--past" => a.past = num(value("--past")?, "--past")?,
            "--seqs" => {
                let v = value("--seqs")?;
                a.seqs = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| num(s.to_string(), "--seqs"))
                    .collect::<Result<_, _>>()?;
            }
            "--profile" => a.profile = true,
            "--huge-pages" => a.huge_pages = true,
            "--top" => a.top = num(value("--top")?, "--top")?,
            p if !p.starts_with("--") && a.path.is_empty() => a.path = p.to_string(),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    if a.path.is_empty() {
        return Err("usage: llm_bench model.ferrumc [--threads N] [--iters N] [--warmup N] [--seqs 1,16,128] [--past N] [--profile [--top N]] [--huge-pages]".into());
    }
    Ok(a)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

/// Median, min, p90 of `times` (ms).
fn stats(mut times: Vec<f64>) -> (f64, f64, f64) {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 { times[n / 2] } else { 0.5 * (times[n / 2 - 1] + times[n / 2]) };
    (median, times[0], times[((n as f64 * 0.9) as usize).min(n - 1)])
}

fn time_runs(
    model: &mut Model,
    entry: &str,
    inputs: &[(String, Tensor)],
    args: &Args,
) -> Result<(f64, f64, f64), String> {
    let views: Vec<(&str, _)> = inputs.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    for _ in 0..args.warmup {
        model.run(entry, &views).map_err(|e| e.to_string())?;
    }
    model.clear_profile();
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let t0 = Instant::now();
        model.run(entry, &views).map_err(|e| e.to_string())?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(stats(times))
}

/// Token ids and positions of shape `[1, seq]`, positions starting at `first_pos`.
fn ids_and_positions(
    rng: &mut Rng,
    vocab: usize,
    seq: usize,
    first_pos: usize,
) -> Result<Vec<(String, Tensor)>, String> {
    let ids: Vec<i64> = (0..seq).map(|_| (rng.next() % vocab as u64) as i64).collect();
    let pos: Vec<i64> = (first_pos..first_pos + seq).map(|p| p as i64).collect();
    Ok(vec![
        ("input_ids".into(), Tensor::from_i64(vec![1, seq], &ids).map_err(|e| e.to_string())?),
        ("position_ids".into(), Tensor::from_i64(vec![1, seq], &pos).map_err(|e| e.to_string())?),
    ])
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let t0 = Instant::now();
    let placement = if args.huge_pages { Placement::HugePages } else { Placement::Mapped };
    let mut model = Model::load_with(&args.path, placement)
        .and_then(|m| m.with_fn_table(fn_table()))
        .map_err(|e| format!("{}: {e}", args.path))?
        .with_threads(args.threads)
        .with_profiling(args.profile);
    model.init().map_err(|e| e.to_string())?;
    println!("{}: loaded in {:.2} s, {} threads", args.path, t0.elapsed().as_secs_f64(), model.threads());
    let eps = model.entry_points().to_vec();
    let vocab = eps
        .iter()
        .find_map(|e| e.outputs.first().and_then(|o| o.dims.last()).and_then(|d| d.eval(&Default::default()).ok()))
        .and_then(|v| usize::try_from(v).ok())
        .ok_or("the first output's last dim (vocabulary) is not a constant")?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!("{:<16} {:>10} {:>8} {:>8}", "run", "median ms", "min ms", "p90 ms");
    let mut profiles = Vec::new();
    if eps.iter().any(|e| e.name == "forward") {
        for &seq in &args.seqs {
            let inputs = ids_and_positions(&mut rng, vocab, seq, 0)?;
            let (med, min, p90) = time_runs(&mut model, "forward", &inputs, &args)?;
            println!("{:<16} {med:>10.2} {min:>8.2} {p90:>8.2}", format!("forward T={seq}"));
            if let Some(p) = model.profile() {
                profiles.push((format!("forward T={seq}"), p.report(args.top)));
            }
        }
    }
    if let Some(ep) = eps.iter().find(|e| e.name == "decode") {
        let mut inputs = ids_and_positions(&mut rng, vocab, 1, args.past)?;
        for sig in ep.inputs.iter().filter(|s| s.name.starts_with("past_")) {
            let syms = [("batch".to_string(), 1i64), ("past".to_string(), args.past as i64)].into_iter().collect();
            let shape = sig
                .dims
                .iter()
                .map(|d| d.eval(&syms).ok().and_then(|v| usize::try_from(v).ok()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("cannot size `{}` from batch and past", sig.name))?;
            if sig.dtype != DType::F32 {
                return Err(format!("`{}` is not f32", sig.name));
            }
            let values: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| rng.f32()).collect();
            inputs.push((sig.name.clone(), Tensor::from_f32(shape, &values).map_err(|e| e.to_string())?));
        }
        let (med, min, p90) = time_runs(&mut model, "decode", &inputs, &args)?;
        println!("{:<16} {med:>10.2} {min:>8.2} {p90:>8.2}", format!("decode @{}", args.past));
        if let Some(p) = model.profile() {
            profiles.push((format!("decode @{}", args.past), p.report(args.top)));
        }
    }
    for (name, report) in profiles {
        println!("\nprofile of {name} ({} timed runs):\n{report}", args.iters);
    }
    Ok(())
}
