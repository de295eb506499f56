//! Bench: how long `Model::load` takes on an artifact (memory-map, whole-file checksum,
//! structural validation, code mapped executable), with the page cache warm.
//!
//! `cargo run --release -p ferrumc-runtime --example load_bench -- ARTIFACT [repeats] [--huge-pages]`
//!
//! `--huge-pages` loads with `Placement::HugePages` (a copy on huge pages) instead of the
//! default file mapping.
//!
//! Prints the median, minimum and maximum over `repeats` loads (default 11) after one
//! untimed load that warms the page cache, and the file size with the implied throughput.

use ferrumc_runtime::artifact::Placement;
use ferrumc_runtime::model::Model;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let placement = if all.iter().any(|a| a == "--huge-pages") { Placement::HugePages } else { Placement::Mapped };
    let mut args = all.into_iter().filter(|a| a != "--huge-pages");
    let Some(path) = args.next() else {
        return Err("usage: load_bench ARTIFACT [repeats] [--huge-pages]".into());
    };
    let repeats: usize = match args.next() {
        Some(r) => r.parse().map_err(|e| format!("repeats `{r}`: {e}"))?,
        None => 11,
    };
    let size = std::fs::metadata(&path)?.len();
    // Warm the page cache (and fail early on a bad file).
    drop(Model::load_with(&path, placement)?);
    let mut times: Vec<Duration> = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let model = Model::load_with(&path, placement)?;
        times.push(start.elapsed());
        drop(model);
    }
    times.sort();
    let median = times[times.len() / 2];
    let mb = size as f64 / 1e6;
    println!(
        "{path}: {mb:.1} MB, {placement:?} load median {:.4} s (min {:.4}, max {:.4}) over {} loads, {:.2} GB/s",
        median.as_secs_f64(),
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64(),
        times.len(),
        mb / 1e3 / median.as_secs_f64(),
    );
    Ok(())
}
