//! Token bucket bench: what the local rate limit's shared bucket costs a worker when another
//! worker takes tokens from it too (its one cache line moving between cores), beside the same
//! loop with a bucket per worker, and what the workers' reservoirs ([`SharedBucket`]) leave of
//! that cost.
//!
//! `cargo bench --bench token_bucket`. Each worker thread, pinned to its own CPU, runs `ROUNDS`
//! iterations of a stand-in for a request's other work (`WORK` steps of arithmetic on its own
//! memory) then one take at `now()`, as a request through a limited route does. Reported: ns
//! per iteration for one worker, for two with a bucket each, two on one bucket taking every
//! token from it, and two on one [`SharedBucket`] through their reservoirs; a shared bucket's
//! cost is its row less "a bucket each". Medians of `RUNS`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use strait::snapshot::{now, SharedBucket, TokenBucket, TokenBucketConfig};

const RUNS: usize = 7;
const ROUNDS: u32 = 200_000;
/// About a microsecond of work between two takes: a worker at 1 M requests/s, more often than
/// any real worker takes a token, so the line moves at least as often as it would under load.
const WORK: u64 = 300;

/// A quota no run exhausts: every take succeeds, as on a route under its limit.
const CONFIG: TokenBucketConfig =
    TokenBucketConfig { max_tokens: u32::MAX, tokens_per_fill: u32::MAX, fill_interval: Duration::from_secs(1) };

fn bucket() -> TokenBucket {
    TokenBucket::full(&CONFIG, now())
}

/// One worker's loop, taking with `take` when it is given: ns per iteration.
fn worker(take: Option<&dyn Fn() -> bool>) -> f64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for _ in 0..WORK {
            x = black_box(x.rotate_left(5) ^ 0x2545_f491_4f6c_dd1d);
        }
        if let Some(take) = take {
            assert!(take());
        }
    }
    black_box(x);
    start.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
}

/// `takes.len()` workers pinned to CPUs 0, 1, …, worker `i` taking with `takes[i]`: the
/// slowest one's ns per iteration.
fn run(takes: &[Option<&(dyn Fn() -> bool + Sync)>]) -> f64 {
    let cores = core_affinity::get_core_ids().expect("core ids");
    let barrier = Barrier::new(takes.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = takes
            .iter()
            .zip(cores.iter().cycle())
            .map(|(take, core)| {
                let barrier = &barrier;
                s.spawn(move || {
                    core_affinity::set_for_current(*core);
                    barrier.wait();
                    worker(take.map(|t| t as &dyn Fn() -> bool))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).fold(0.0, f64::max)
    })
}

fn median(f: impl Fn() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..RUNS).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Keeps each bucket on a cache line of its own, so that "a bucket each" shares nothing.
#[repr(align(128))]
struct Padded(TokenBucket);

fn main() {
    let (shared, a, b) = (Padded(bucket()), Padded(bucket()), Padded(bucket()));
    let reservoirs = SharedBucket::full(&CONFIG, 2, now());
    let take_a = || a.0.consume(now());
    let take_b = || b.0.consume(now());
    let take_shared = || shared.0.consume(now());
    let (take_0, take_1) = (|| reservoirs.consume(0, now()), || reservoirs.consume(1, now()));
    let no_take = median(|| run(&[None]));
    let one = median(|| run(&[Some(&take_a)]));
    let own = median(|| run(&[Some(&take_a), Some(&take_b)]));
    let both = median(|| run(&[Some(&take_shared), Some(&take_shared)]));
    let drawn = median(|| run(&[Some(&take_0), Some(&take_1)]));
    println!("| loop | ns per iteration |");
    println!("|---|---:|");
    println!("| 1 worker, work only | {no_take:.1} |");
    println!("| 1 worker, work + take | {one:.1} |");
    println!("| 2 workers, a bucket each | {own:.1} |");
    println!("| 2 workers, one bucket, every token from it | {both:.1} |");
    println!("| 2 workers, one bucket through reservoirs | {drawn:.1} |");
    println!(
        "take: {:.1} ns alone; a shared bucket adds {:.1} ns per take at 2 workers, {:.1} through reservoirs",
        one - no_take,
        both - own,
        drawn - own
    );
}
