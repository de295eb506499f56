//! `ferrumc bench`: time an entry point of a compiled artifact (or of a model compiled in
//! memory) through `ferrumc_runtime::Model`: load once (timed separately), `warmup` untimed
//! runs, then `iters` timed runs; print median / min / p90 / mean milliseconds as one line of
//! text, or one JSON object with `--json`.

use crate::input::CliError;
use crate::runnable::{bind_inputs, describe_inputs, open, pick_entry, InputArgs};
use ferrumc_runtime::artifact::Placement;
use ferrumc_runtime::model::TensorView;
use std::path::Path;
use std::time::Instant;

/// What to benchmark and how.
#[derive(Debug)]
pub struct BenchRequest<'a> {
    pub input: &'a Path,
    pub level: u8,
    pub inputs: InputArgs<'a>,
    pub function: Option<&'a str>,
    pub warmup: usize,
    pub iters: usize,
    pub threads: Option<usize>,
    pub json: bool,
    /// Load an artifact onto huge pages (`Placement::HugePages`) instead of mapping it.
    pub huge_pages: bool,
}

/// Summary statistics of the timed runs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub p90: f64,
    pub mean: f64,
}

/// Median (mean of the middle two for an even count), minimum, 90th percentile (nearest
/// rank) and mean of a non-empty sample.
pub fn stats(samples_ms: &[f64]) -> Option<Stats> {
    if samples_ms.is_empty() {
        return None;
    }
    let mut s = samples_ms.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    let p90 = s[(n * 9).div_ceil(10).clamp(1, n) - 1];
    Some(Stats { median, min: s[0], p90, mean: s.iter().sum::<f64>() / n as f64 })
}

/// `ferrumc bench`.
pub fn bench(req: &BenchRequest<'_>) -> Result<(), CliError> {
    let placement = if req.huge_pages { Placement::HugePages } else { Placement::Mapped };
    let mut runnable = open(req.input, req.level, req.threads, placement)?;
    let ep = pick_entry(&runnable.model, req.function, "forward")?;
    let inputs = bind_inputs(&ep, &req.inputs)?;
    let views: Vec<(&str, TensorView<'_>)> = inputs.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    let shapes: Vec<String> = inputs.iter().map(|(n, t)| format!("{n}{:?}", t.shape())).collect();
    let model = &mut runnable.model;
    let mut run_once = || -> Result<f64, CliError> {
        let start = Instant::now();
        model.run(&ep.name, &views).map_err(|e| CliError::new(format!("error: {}: {e}", ep.name)))?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..req.warmup {
        run_once()?;
    }
    let samples = (0..req.iters).map(|_| run_once()).collect::<Result<Vec<f64>, _>>()?;
    let s = stats(&samples).ok_or_else(|| CliError::new("error: --iters must be at least 1"))?;
    let threads = runnable.model.threads();
    let load_ms = runnable.load_time.as_secs_f64() * 1e3;
    let init_ms = runnable.init_time.as_secs_f64() * 1e3;
    let compile_ms = runnable.compile_time.map(|d| d.as_secs_f64() * 1e3);
    if req.json {
        let report = serde_json::json!({
            "entry": ep.name,
            "inputs": shapes,
            "threads": threads,
            "warmup": req.warmup,
            "iters": req.iters,
            "compile_ms": compile_ms,
            "load_ms": load_ms,
            "init_ms": init_ms,
            "median_ms": s.median,
            "min_ms": s.min,
            "p90_ms": s.p90,
            "mean_ms": s.mean,
        });
        println!("{report}");
    } else {
        if let Some(c) = compile_ms {
            println!("compile: {c:.1} ms (in memory, nothing written)");
        }
        println!("load: {load_ms:.3} ms (map + validate), init: {init_ms:.3} ms (threads, arenas)");
        println!(
            "entry: {} ({}), {threads} thread(s), {} warmup, {} timed",
            ep.name,
            describe_inputs(&inputs),
            req.warmup,
            req.iters
        );
        println!("median_ms={:.4} min_ms={:.4} p90_ms={:.4} mean_ms={:.4}", s.median, s.min, s.p90, s.mean);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::stats;

    #[test]
    fn statistics_of_small_samples() {
        let s = stats(&[5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.p90, s.mean), (5.5, 1.0, 9.0, 5.5));
        let s = stats(&[2.0]).unwrap();
        assert_eq!((s.median, s.min, s.p90, s.mean), (2.0, 2.0, 2.0, 2.0));
        let s = stats(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.p90), (2.0, 3.0));
        assert!(stats(&[]).is_none());
    }
}
