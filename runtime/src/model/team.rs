//! A small fork-join team for kernel launches: the calling thread runs chunk 0 and
//! `threads - 1` persistent workers run the others. Waiting workers spin briefly on an epoch
//! counter, then yield (so a descheduled team mate can run on an oversubscribed machine), then
//! park; back-to-back launches of a schedule (hundreds per decode step) thus hand off in a few
//! microseconds instead of a futex wake-up each (`examples/run_overhead.rs` measures it).
//!
//! Protocol: the caller publishes a job (launch, extent, chunk count) under `job`, bumps
//! `epoch`, wakes parked workers if any, runs its own chunk and spins until the job's `done`
//! count reaches `chunks - 1`. The caller never publishes a new job before the current one is
//! done, so a worker that reads `job` always sees the job it is needed for.

use super::Launch;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Busy-spin iterations of a waiting thread (a few microseconds) before it starts yielding.
const SPIN: u32 = 1 << 11;
/// `yield_now` rounds of a waiting worker after spinning, before it parks (these let a
/// descheduled team mate run when the machine is oversubscribed).
const YIELDS: u32 = 256;

struct Job {
    epoch: u64,
    launch: Arc<Launch>,
    extent: u64,
    chunks: u64,
    done: AtomicU64,
}

impl Job {
    fn run_chunk(&self, c: u64) {
        let bound = |c: u64| (u128::from(self.extent) * u128::from(c) / u128::from(self.chunks)) as u64;
        self.launch.call(bound(c), bound(c + 1));
    }
}

struct Shared {
    epoch: AtomicU64,
    job: Mutex<Option<Arc<Job>>>,
    sleepers: AtomicUsize,
    wake: Condvar,
    quit: AtomicBool,
}

/// The team (see the module doc).
pub(super) struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Team {
    /// A team of `threads` threads in all (the caller included).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: Mutex::new(None),
            sleepers: AtomicUsize::new(0),
            wake: Condvar::new(),
            quit: AtomicBool::new(false),
        });
        let mut team = Self { shared, workers: Vec::new() };
        for idx in 1..threads.max(1) {
            let shared = Arc::clone(&team.shared);
            let h = std::thread::Builder::new()
                .name(format!("ferrumc-worker-{idx}"))
                .spawn(move || worker(&shared, idx as u64))?;
            team.workers.push(h);
        }
        Ok(team)
    }

    /// Threads in all.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `launch` over `[0, extent)` in `chunks` chunks (≤ [`Team::threads`]) and returns
    /// when all are done; returns the number of chunks used.
    pub fn run(&self, launch: Launch, extent: u64, chunks: u64) -> u64 {
        let chunks = chunks.clamp(1, self.threads() as u64);
        let s = &self.shared;
        // Only this method (one caller at a time: `Model::run` takes `&mut self`) writes `epoch`.
        let epoch = s.epoch.load(SeqCst) + 1;
        let job = Arc::new(Job { epoch, launch: Arc::new(launch), extent, chunks, done: AtomicU64::new(0) });
        if chunks == 1 {
            job.run_chunk(0);
            return 1;
        }
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&job));
        s.epoch.store(epoch, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _guard = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        job.run_chunk(0);
        let mut spins = 0u32;
        while job.done.load(SeqCst) < chunks - 1 {
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        chunks
    }
}

fn worker(s: &Shared, idx: u64) {
    let mut seen = 0u64;
    let mut last_run = 0u64;
    loop {
        // Wait for a new epoch: spin, then park.
        let mut spins = 0u32;
        while s.epoch.load(SeqCst) == seen && !s.quit.load(SeqCst) {
            if spins < SPIN + YIELDS {
                spins += 1;
                if spins <= SPIN {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            let mut guard = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, SeqCst);
            while s.epoch.load(SeqCst) == seen && !s.quit.load(SeqCst) {
                guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, SeqCst);
            drop(guard);
        }
        if s.quit.load(SeqCst) {
            return;
        }
        // The job may already be newer than the epoch that woke us (when we were not needed
        // for that one); its own epoch says which one we run, so none runs twice.
        let job = s.job.lock().unwrap_or_else(|e| e.into_inner()).clone();
        seen = s.epoch.load(SeqCst);
        if let Some(job) = job.filter(|j| j.epoch != last_run) {
            last_run = job.epoch;
            seen = seen.max(job.epoch);
            if idx < job.chunks {
                job.run_chunk(idx);
                job.done.fetch_add(1, SeqCst);
            }
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.quit.store(true, SeqCst);
        {
            let _guard = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            // A worker only ends by returning; a join error would mean it panicked, which
            // kernels (extern "C") cannot propagate anyway.
            let _ = h.join();
        }
    }
}
