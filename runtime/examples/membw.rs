//! Memory-bandwidth floor: how long `threads` threads take to read `mb` megabytes once
//! (a streaming sum, each thread over its own contiguous part), median / min over repeated
//! passes. A memory-bound forward pass (an LLM at T = 1 reads every f32 weight once) cannot
//! beat this time on the same machine; `bench/compare_ort.py` prints it next to its table.
//!
//! ```text
//! cargo run --release -p ferrumc-runtime --example membw -- [--mb 538] [--threads 2] [--iters 15] [--huge-pages]
//! ```
//!
//! `--huge-pages` reads anonymous memory advised onto transparent huge pages (Linux), as the
//! runtime places a loaded artifact by default; without it, ordinary 4 KiB pages.

use std::time::Instant;

fn sum(x: &[f32]) -> f32 {
    // 64 independent partial sums: enough parallel adds that the loop waits on memory only.
    let mut acc = [0f32; 64];
    for chunk in x.chunks_exact(64) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += *v;
        }
    }
    acc.iter().sum()
}

fn arg(name: &str, default: usize) -> Result<usize, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("{name} needs a positive integer")),
    }
}

fn main() {
    let parsed = (arg("--mb", 538), arg("--threads", 2), arg("--iters", 15));
    let (mb, threads, iters) = match parsed {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let huge = std::env::args().any(|a| a == "--huge-pages");
    let n = mb * 1_000_000 / 4;
    let mut map = match memmap2::MmapMut::map_anon(n * 4) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: cannot map {mb} MB: {e}");
            std::process::exit(1);
        }
    };
    #[cfg(target_os = "linux")]
    if huge {
        let _ = map.advise(memmap2::Advice::HugePage);
    }
    // Non-constant contents, so no page is shared zero memory.
    // SAFETY: every bit pattern is a valid f32; a fresh mapping is page-aligned, so the
    // middle part is the whole mapping.
    let (_, data, _) = unsafe { map.align_to_mut::<f32>() };
    for (i, v) in data.iter_mut().enumerate() {
        *v = (i % 7) as f32;
    }
    let data: &[f32] = data;
    let part = n.div_ceil(threads);
    let mut times: Vec<f64> = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        let total: f32 = std::thread::scope(|s| {
            let handles: Vec<_> = data.chunks(part).map(|c| s.spawn(move || sum(c))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        });
        times.push(start.elapsed().as_secs_f64());
        std::hint::black_box(total);
    }
    times.sort_by(f64::total_cmp);
    let (median, min) = (times[times.len() / 2], times[0]);
    let bytes = (n * 4) as f64;
    println!(
        "read {mb} MB on {threads} thread(s), {}: median {:.2} ms ({:.1} GB/s), min {:.2} ms ({:.1} GB/s)",
        if huge { "huge pages" } else { "4 KiB pages" },
        median * 1e3,
        bytes / median / 1e9,
        min * 1e3,
        bytes / min / 1e9
    );
}
