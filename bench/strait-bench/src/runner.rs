//! Runs a load on pinned threads, one monoio runtime each, for a bounded time or count, with a
//! live progress line, and hands back the merged measurements.

use std::cell::Cell;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use strait::kit::{driver, DriverChoice};

use crate::cli::{Cpus, LoadArgs};
use crate::error::BenchError;
use crate::stats::{Live, Recorder};

/// What one load thread is told.
pub struct Thread {
    pub index: usize,
    /// This thread's share of the connections (they differ by at most one).
    pub connections: usize,
    /// No operation starts after this.
    pub deadline: Instant,
    /// Operations this thread may still start (its share of `--requests`).
    budget: Cell<u64>,
    /// Measurements from here on count; before it is the warm-up.
    pub measure_from: Instant,
    live: Arc<Live>,
}

impl Thread {
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.measure_from, self.live.clone())
    }

    /// Takes one operation from the budget; false once the run is over.
    pub fn start_one(&self, now: Instant) -> bool {
        let left = self.budget.get();
        if now >= self.deadline || left == 0 {
            return false;
        }
        self.budget.set(left - 1);
        true
    }
}

/// The pause before a connection's next try after a failure: from 1 ms, doubling up to 100 ms
/// while failures go on, back to 1 ms after a success. A dead target is probed, not hammered,
/// and its errors stay countable.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(1);
    const MOST: Duration = Duration::from_millis(100);

    pub fn new() -> Self {
        Backoff(Self::FIRST)
    }

    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }

    /// This pause; the next one doubles.
    pub fn next(&mut self) -> Duration {
        let pause = self.0;
        self.0 = (pause * 2).min(Self::MOST);
        pause
    }
}

impl Thread {
    /// Sleeps out the back-off, never past the run's deadline.
    pub async fn pause(&self, backoff: &mut Backoff) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        monoio::time::sleep(backoff.next().min(left)).await;
    }
}

/// Splits `total` as evenly as possible over `parts`.
pub fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

/// The first of part `index`'s share of `total` numbered across all parts: connections are
/// numbered across threads so the open loop spaces them all evenly.
pub fn first(total: u64, parts: usize, index: usize) -> u64 {
    (0..index).map(|i| share(total, parts, i)).sum()
}

/// The merged result of a run and how long its measured part took.
pub struct Outcome {
    pub recorder: Recorder,
    pub elapsed: Duration,
}

/// Runs `load` on `args.threads` threads and merges what they recorded. `load` builds each
/// thread's future on that thread, so the future need not be `Send`.
pub fn run<F, Fut>(args: &LoadArgs, label: &str, load: F) -> Result<Outcome, BenchError>
where
    F: Fn(Thread) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Recorder> + 'static,
{
    if args.threads == 0 || args.connections < args.threads {
        return Err(BenchError::Usage(format!(
            "--connections ({}) must be at least --threads ({}), which must be at least 1",
            args.connections, args.threads
        )));
    }
    let driver = driver::resolve(DriverChoice::Auto).map_err(|e| BenchError::Usage(e.to_string()))?;
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let deadline = measure_from + args.duration;
    let load = Arc::new(load);
    let lives: Vec<Arc<Live>> = (0..args.threads).map(|_| Arc::default()).collect();
    let (done_tx, done_rx) = mpsc::channel();
    for index in 0..args.threads {
        let thread = Thread {
            index,
            connections: share(args.connections as u64, args.threads, index) as usize,
            deadline,
            budget: Cell::new(args.requests.map_or(u64::MAX, |n| share(n, args.threads, index))),
            measure_from,
            live: lives[index].clone(),
        };
        let cpu = args.cpus.as_ref().map(|Cpus(cpus)| cpus[index % cpus.len()]);
        let (load, done_tx) = (load.clone(), done_tx.clone());
        std::thread::Builder::new()
            .name(format!("{label}-{index}"))
            .spawn(move || {
                if let Some(id) = cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                let result = driver::build(driver, DriverChoice::Auto)
                    .map(|(mut rt, _)| rt.block_on(load(thread)))
                    .map(|rec| (rec, Instant::now()));
                let _ = done_tx.send(result);
            })
            .map_err(BenchError::io("spawning a load thread"))?;
    }
    drop(done_tx);
    let mut merged = Recorder::empty();
    let mut ended = measure_from;
    let mut progress = Progress::new(!args.out.quiet, label, measure_from, lives);
    let mut finished = 0;
    while finished < args.threads {
        match done_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(result) => {
                let (rec, at) = result.map_err(BenchError::io("building a load thread's runtime"))?;
                merged.merge(&rec);
                ended = ended.max(at);
                finished += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => progress.tick(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(BenchError::Usage("a load thread panicked".into()));
            }
        }
    }
    progress.finish();
    Ok(Outcome { recorder: merged, elapsed: ended.saturating_duration_since(measure_from) })
}

/// The live line on stderr: a line a second, rewritten in place on a terminal.
struct Progress {
    on: bool,
    tty: bool,
    label: String,
    from: Instant,
    lives: Vec<Arc<Live>>,
    last: (Instant, u64),
}

impl Progress {
    fn new(on: bool, label: &str, from: Instant, lives: Vec<Arc<Live>>) -> Self {
        let tty = std::io::stderr().is_terminal();
        Progress { on, tty, label: label.to_string(), from, lives, last: (from, 0) }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if !self.on || now < self.from {
            return;
        }
        let sum = |f: fn(&Live) -> u64| self.lives.iter().map(|l| f(l)).sum::<u64>();
        let ops = sum(|l| l.operations.load(Relaxed));
        let bytes = sum(|l| l.bytes.load(Relaxed));
        let errors = sum(|l| l.errors.load(Relaxed));
        let rate = (ops - self.last.1) as f64 / now.duration_since(self.last.0).as_secs_f64();
        self.last = (now, ops);
        let line = format!(
            "{} {:>5.1}s  {ops} ops  {rate:.0}/s  {}  {errors} errors",
            self.label,
            now.duration_since(self.from).as_secs_f64(),
            crate::report::human_bytes(bytes as f64),
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty { write!(err, "\r\x1b[K{line}") } else { writeln!(err, "{line}") };
    }

    fn finish(&self) {
        if self.on && self.tty {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let pauses: Vec<u64> = (0..9).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 100, 100]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(1));
    }

    #[test]
    fn shares_add_up_and_differ_by_one() {
        for (total, parts) in [(64, 3), (5, 5), (7, 2), (0, 4), (1000, 7)] {
            let shares: Vec<u64> = (0..parts).map(|i| share(total, parts, i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total);
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }
}
