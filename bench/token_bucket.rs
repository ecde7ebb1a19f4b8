//! Token bucket bench: what the local rate limit's shared bucket costs a worker when another
//! worker takes tokens from it too (its one cache line moving between cores), beside the same
//! loop with a bucket per worker.
//!
//! `cargo bench --bench token_bucket`. Each worker thread, pinned to its own CPU, runs `ROUNDS`
//! iterations of a stand-in for a request's other work (`WORK` steps of arithmetic on its own
//! memory) then one `consume(now())`, as a request through a limited route does. Reported: ns
//! per iteration for one worker, for two on one shared bucket, and two with a bucket each; the
//! shared bucket's cost is the difference between the last two. Medians of `RUNS`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use strait::snapshot::{now, TokenBucket, TokenBucketConfig};

const RUNS: usize = 7;
const ROUNDS: u32 = 200_000;
/// About a microsecond of work between two takes: a worker at 1 M requests/s, more often than
/// any real worker takes a token, so the line moves at least as often as it would under load.
const WORK: u64 = 300;

fn bucket() -> TokenBucket {
    // A quota no run exhausts: every take succeeds, as on a route under its limit.
    let config =
        TokenBucketConfig { max_tokens: u32::MAX, tokens_per_fill: u32::MAX, fill_interval: Duration::from_secs(1) };
    TokenBucket::full(&config, now())
}

/// One worker's loop: ns per iteration.
fn worker(bucket: &TokenBucket, take: bool) -> f64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for _ in 0..WORK {
            x = black_box(x.rotate_left(5) ^ 0x2545_f491_4f6c_dd1d);
        }
        if take {
            assert!(bucket.consume(now()));
        }
    }
    black_box(x);
    start.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
}

/// `buckets.len()` workers pinned to CPUs 0, 1, …, worker `i` taking from `buckets[i]`: the
/// slowest one's ns per iteration.
fn run(buckets: &[&TokenBucket], take: bool) -> f64 {
    let cores = core_affinity::get_core_ids().expect("core ids");
    let barrier = Barrier::new(buckets.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = buckets
            .iter()
            .zip(cores.iter().cycle())
            .map(|(b, core)| {
                let barrier = &barrier;
                s.spawn(move || {
                    core_affinity::set_for_current(*core);
                    barrier.wait();
                    worker(b, take)
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
    let no_take = median(|| run(&[&a.0], false));
    let one = median(|| run(&[&a.0], true));
    let own = median(|| run(&[&a.0, &b.0], true));
    let both = median(|| run(&[&shared.0, &shared.0], true));
    println!("| loop | ns per iteration |");
    println!("|---|---:|");
    println!("| 1 worker, work only | {no_take:.1} |");
    println!("| 1 worker, work + take | {one:.1} |");
    println!("| 2 workers, a bucket each | {own:.1} |");
    println!("| 2 workers, one shared bucket | {both:.1} |");
    println!("take: {:.1} ns alone; the shared line adds {:.1} ns per take at 2 workers", one - no_take, both - own);
}
