//! A small fork-join team for kernel launches: the calling thread and `threads - 1`
//! persistent workers share each launch. Waiting workers spin briefly on an epoch counter, then
//! yield (so a descheduled team mate can run on an oversubscribed machine), then park;
//! back-to-back launches of a schedule (hundreds per decode step) thus hand off in a few
//! microseconds instead of a futex wake-up each (`examples/run_overhead.rs` measures it).
//!
//! Work sharing: a launch's tiles (`grain` elements each) are split into one contiguous range
//! per participant. Each takes batches from the front of its own range, in order (so a GEMM
//! thread streams its weights front to back and its prefetches run ahead into what it will
//! read next); once its range is empty it moves the back half of another's range into its own
//! and goes on (so stolen work can be stolen back). On a
//! machine whose cores run at uneven speeds (a VM's vCPUs, a busy neighbour), the faster
//! thread thus finishes the slower one's tail instead of waiting for it, and a worker that is
//! slow to wake up has its range done by the others. Every tile runs exactly once, on whichever
//! thread claims it; tiles write disjoint memory (kernel ABI), so results do not depend on who
//! ran what.
//!
//! Protocol: the caller publishes a job under `job`, bumps `epoch`, wakes parked workers if
//! any, works (own range, then stealing) and spins until the job's `executed` tile count
//! reaches its total. A tile is claimed (compare-and-swap on its range) before it runs and
//! counted after, so a job whose count is complete has no claimable tile left: a worker that
//! picks a finished job up late claims nothing and never calls its kernel.

use super::Launch;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Busy-spin iterations of a waiting thread (a few microseconds) before it starts yielding.
const SPIN: u32 = 1 << 11;
/// `yield_now` rounds of a waiting worker after spinning, before it parks (these let a
/// descheduled team mate run when the machine is oversubscribed).
const YIELDS: u32 = 256;

/// A tile range `[front, back)` in one atomic word (front in the low half), so its owner's
/// claims at the front and thieves' at the back never hand out a tile twice.
struct Range(AtomicU64);

impl Range {
    fn new(front: u64, back: u64) -> Self {
        Self(AtomicU64::new(front | (back << 32)))
    }

    /// Takes `[front, front + n)` (fewer at the end), or `None` when the range is empty.
    fn take_front(&self, n: u64) -> Option<(u64, u64)> {
        let mut cur = self.0.load(SeqCst);
        loop {
            let (front, back) = (cur & u64::from(u32::MAX), cur >> 32);
            if front >= back {
                return None;
            }
            let to = (front + n).min(back);
            match self.0.compare_exchange_weak(cur, to | (back << 32), SeqCst, SeqCst) {
                Ok(_) => return Some((front, to)),
                Err(now) => cur = now,
            }
        }
    }

    /// Makes an empty range `[front, back)`. Only its owner calls this, and only once it found
    /// the range empty; thieves never change an empty range, so nothing races the store.
    fn refill(&self, front: u64, back: u64) {
        self.0.store(front | (back << 32), SeqCst);
    }

    /// Takes the back half (at least one tile), or `None` when the range is empty.
    fn take_back_half(&self) -> Option<(u64, u64)> {
        let mut cur = self.0.load(SeqCst);
        loop {
            let (front, back) = (cur & u64::from(u32::MAX), cur >> 32);
            if front >= back {
                return None;
            }
            let from = back - (back - front).div_ceil(2);
            match self.0.compare_exchange_weak(cur, front | (from << 32), SeqCst, SeqCst) {
                Ok(_) => return Some((from, back)),
                Err(now) => cur = now,
            }
        }
    }
}

struct Job {
    epoch: u64,
    launch: Arc<Launch>,
    extent: u64,
    grain: u64,
    tiles: u64,
    /// One range of tiles per participant (the caller is participant 0).
    ranges: Vec<Range>,
    /// Tiles run to completion.
    executed: AtomicU64,
}

impl Job {
    fn run_tiles(&self, (from, to): (u64, u64)) {
        self.launch.call(from * self.grain, (to * self.grain).min(self.extent));
        self.executed.fetch_add(to - from, SeqCst);
    }

    /// Participant `me`'s share: its own range front to back; when that is empty, the back
    /// half of another's range becomes its own range (so it can in turn be stolen from).
    fn work(&self, me: usize) {
        let own = &self.ranges[me];
        // Batches of about a sixteenth of a range: few atomics for cheap tiles (rows of a
        // norm), single tiles for expensive ones (a GEMM's column tiles).
        let batch = (self.tiles / self.ranges.len() as u64 / 16).max(1);
        let n = self.ranges.len();
        loop {
            while let Some(t) = own.take_front(batch) {
                self.run_tiles(t);
            }
            match (1..n).find_map(|d| self.ranges[(me + d) % n].take_back_half()) {
                Some((from, to)) => own.refill(from, to),
                None => return,
            }
        }
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

    /// Runs `launch` over `[0, extent)` in tiles of `grain` elements, shared by up to
    /// [`Team::threads`] threads, and returns when all are done; returns the number of
    /// participants the tiles were split among.
    pub fn run(&self, launch: Launch, extent: u64, grain: u64) -> u64 {
        let grain = grain.max(1);
        let tiles = extent.div_ceil(grain);
        let parts = tiles.clamp(1, self.threads() as u64);
        if parts == 1 || tiles > u64::from(u32::MAX) {
            launch.call(0, extent);
            return 1;
        }
        let s = &self.shared;
        // Only this method (one caller at a time: `Model::run` takes `&mut self`) writes `epoch`.
        let epoch = s.epoch.load(SeqCst) + 1;
        let ranges = (0..parts).map(|c| Range::new(tiles * c / parts, tiles * (c + 1) / parts)).collect();
        let job = Arc::new(Job {
            epoch,
            launch: Arc::new(launch),
            extent,
            grain,
            tiles,
            ranges,
            executed: AtomicU64::new(0),
        });
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&job));
        s.epoch.store(epoch, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _guard = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        job.work(0);
        let mut spins = 0u32;
        while job.executed.load(SeqCst) < tiles {
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        parts
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
            if (idx as usize) < job.ranges.len() {
                job.work(idx as usize);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Per element: how often it ran, and whether a worker (not the caller) ran it.
    struct Record {
        runs: Vec<AtomicU32>,
        by_worker: Vec<AtomicU32>,
        /// When set, the caller's run of element 0 waits (up to 10 s) until a worker has run an
        /// element of `1..hold_until`: a participant stalled until the others steal its work.
        hold_until: u64,
    }

    unsafe extern "C" fn record(
        buffers: *const *mut u8,
        _dims: *const i64,
        _table: *const crate::abi::RuntimeFnTable,
        begin: u64,
        end: u64,
    ) {
        // SAFETY: the tests pass one pointer, to a live `Record`.
        let r = unsafe { &*(*buffers as *const Record) };
        let worker = std::thread::current().name().is_some_and(|n| n.starts_with("ferrumc-worker"));
        for e in begin..end {
            if e == 0 && r.hold_until > 1 && !worker {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while std::time::Instant::now() < deadline
                    && !r.by_worker[1..r.hold_until as usize].iter().any(|w| w.load(SeqCst) > 0)
                {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            r.runs[e as usize].fetch_add(1, SeqCst);
            r.by_worker[e as usize].fetch_add(u32::from(worker), SeqCst);
        }
    }

    fn launch_over(team: &Team, extent: u64, grain: u64, hold_until: u64) -> Record {
        let mut rec = Record {
            runs: (0..extent).map(|_| AtomicU32::new(0)).collect(),
            by_worker: (0..extent).map(|_| AtomicU32::new(0)).collect(),
            hold_until,
        };
        let launch = Launch {
            f: record,
            buffers: vec![(&mut rec as *mut Record).cast()],
            dims: Vec::new(),
            table: std::ptr::null(),
        };
        team.run(launch, extent, grain);
        rec
    }

    #[test]
    fn every_element_runs_exactly_once_for_any_extent_grain_and_team() {
        for threads in [1, 2, 3, 5] {
            let team = Team::new(threads).unwrap();
            for extent in [1u64, 2, 7, 64, 100, 1000] {
                for grain in [1u64, 3, 16, 64, 2000] {
                    let rec = launch_over(&team, extent, grain, 0);
                    for (e, n) in rec.runs.iter().enumerate() {
                        assert_eq!(n.load(SeqCst), 1, "threads {threads} extent {extent} grain {grain}: element {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_slow_participant_has_its_range_finished_by_the_others() {
        // The caller's range is elements 0..32 and it stalls in element 0 until the worker,
        // done with 32..64, has stolen from the back of that range (without stealing the
        // caller would give up waiting after 10 s and the check below fails).
        let team = Team::new(2).unwrap();
        let rec = launch_over(&team, 64, 1, 32);
        assert!(rec.runs.iter().all(|n| n.load(SeqCst) == 1));
        let stolen = rec.by_worker[..32].iter().filter(|w| w.load(SeqCst) == 1).count();
        assert!(stolen > 0, "the worker ran none of the slow caller's tiles");
    }
}
