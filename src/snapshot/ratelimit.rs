//! Local rate limits in Envoy's terms (`envoy.extensions.filters.http.local_ratelimit.v3`
//! `LocalRateLimit`): a token bucket, `filter_enabled`/`filter_enforced` fractions,
//! descriptors with buckets of their own, the lines and body of the 429, a bucket per
//! connection or one for the instance, and the stat prefix. ASM's `ASMLocalRateLimiter` (and
//! EnvoyFilter patches of the same filter) compile onto [`LocalRateLimit`].
//!
//! The bucket is live state: one per limit, shared by every worker without a lock (an atomic,
//! as Envoy's `AtomicTokenBucketImpl`, drawn from in small batches while it is well filled),
//! referenced from the immutable snapshot and handed on to the next snapshot while the limit's
//! config is unchanged ([`super::Snapshot::inherit`]), so a reload neither refills nor empties
//! it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::matcher::{MatchBlock, RequestInfo};
use crate::counter::Counter;

pub mod actions;
mod descriptor;
pub mod global;
pub mod rls;

pub use actions::{Action, Context as ActionContext, RateLimitPolicy};
pub use descriptor::RateLimitDescriptor;
pub use global::{GlobalLimitId, GlobalRateLimit, WindowIndex};
pub use rls::{RateLimitService, RlsCounters};

/// Envoy's ratelimit filter's default `timeout`, for ASM's limits counted in Redis and a
/// rate limit service's call alike.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(20);

/// Index into [`super::Snapshot::local_rate_limits`].
pub type RateLimitId = u32;

/// Envoy's `token_bucket`: `max_tokens`, refilled by `tokens_per_fill` every `fill_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucketConfig {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval: Duration,
}

impl TokenBucketConfig {
    /// Tokens per nanosecond: Envoy refills continuously at `tokens_per_fill / fill_interval`
    /// (its atomic bucket, the default since the timer-based one was retired).
    fn rate(&self) -> f64 {
        f64::from(self.tokens_per_fill) / (self.fill_interval.as_nanos().max(1) as f64)
    }
}

/// Envoy's `FractionalPercent` as a share of `1_000_000` (HUNDRED, TEN_THOUSAND and MILLION
/// denominators scaled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub per_million: u32,
}

impl Fraction {
    pub const ALL: Fraction = Fraction { per_million: 1_000_000 };
    pub const NONE: Fraction = Fraction { per_million: 0 };

    /// Whether a uniform draw falls in the fraction (Envoy's runtime `featureEnabled`); the
    /// whole or nothing draws nothing.
    pub fn drawn(self, draw: impl FnOnce() -> u32) -> bool {
        match self.per_million {
            0 => false,
            1_000_000.. => true,
            share => draw() % 1_000_000 < share,
        }
    }
}

/// A descriptor of the limit: the requests it matches take its bucket instead of the
/// limit's (`always_consume_default_token_bucket: false`) or besides it (`true`).
#[derive(Debug, Clone)]
pub struct Descriptor {
    pub matches: DescriptorMatch,
    pub token_bucket: TokenBucketConfig,
}

/// What a descriptor of a local limit matches.
#[derive(Debug, Clone)]
pub enum DescriptorMatch {
    /// The `header_value_match` and `query_parameter_value_match` actions ASM's overrides
    /// compile to, kept as the block they match with.
    Block(Box<MatchBlock>),
    /// `descriptors[].entries` of Envoy's filter: a request descriptor its route's
    /// `rate_limits` actions wrote with exactly these entries.
    Entries(Box<[(Box<str>, Box<str>)]>),
}

/// One `local_ratelimit` configuration, as one route (or one virtual host's routes) applies it.
#[derive(Debug)]
pub struct LocalRateLimit {
    /// Where it came from, and which route or virtual host it applies to: a reload keeps the
    /// bucket of the limit with the same key and the same `source`.
    pub key: Box<str>,
    /// The config as written (its YAML, normalised): two limits are the same when it is.
    pub source: Box<str>,
    /// `<stat_prefix>.http_local_rate_limit.*`.
    pub stat_prefix: Arc<str>,
    pub token_bucket: TokenBucketConfig,
    pub filter_enabled: Fraction,
    pub filter_enforced: Fraction,
    pub descriptors: Box<[Descriptor]>,
    pub always_consume_default_token_bucket: bool,
    /// `local_rate_limit_per_downstream_connection`.
    pub per_connection: bool,
    /// The answer's status (`status`, 429 by default) and body.
    pub status: u16,
    pub body: Box<str>,
    /// `response_headers_to_add`, lower-case names, on a limited request's answer.
    pub response_headers: Box<[(Box<str>, Box<str>)]>,
    /// The buckets and counters every worker shares.
    pub live: LiveLimit,
}

impl LocalRateLimit {
    /// The descriptors the request matches, by index: `written` are those its route's
    /// `rate_limits` actions wrote.
    pub fn matched<'a>(
        &'a self,
        req: &'a RequestInfo<'_>,
        written: &'a [RateLimitDescriptor],
    ) -> impl Iterator<Item = usize> + 'a {
        self.descriptors
            .iter()
            .enumerate()
            .filter(|(_, d)| match &d.matches {
                DescriptorMatch::Block(b) => b.matches(req),
                DescriptorMatch::Entries(e) => written.iter().any(|w| w.is(e)),
            })
            .map(|(i, _)| i)
    }

    /// Whether a descriptor matches by entries: the route's actions must be run for it.
    pub fn reads_actions(&self) -> bool {
        self.descriptors.iter().any(|d| matches!(d.matches, DescriptorMatch::Entries(_)))
    }
}

/// Envoy's `local_rate_limit` stats of one limit on one worker: `enabled`, `enforced`,
/// `rate_limited`, `ok`. Single writer (that worker), on a line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct LimitCounters {
    pub enabled: Counter,
    pub enforced: Counter,
    pub rate_limited: Counter,
    pub ok: Counter,
}

/// A limit's live state: its buckets, which every worker shares, and Envoy's stats as a
/// single-writer set per worker, summed when scraped.
#[derive(Debug)]
pub struct LiveLimit {
    /// Tells per-connection buckets of this limit from those of another, across reloads.
    pub id: u64,
    pub bucket: SharedBucket,
    /// One per descriptor, in order.
    pub descriptors: Box<[SharedBucket]>,
    /// Indexed by worker.
    counters: Box<[LimitCounters]>,
}

impl LiveLimit {
    /// Full buckets at `now`, for `workers` workers (worker ids `0..workers`).
    pub fn new(token_bucket: &TokenBucketConfig, descriptors: &[Descriptor], workers: usize, now: u64) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let workers = workers.max(1);
        Self {
            id: NEXT.fetch_add(1, Relaxed),
            bucket: SharedBucket::full(token_bucket, workers, now),
            descriptors: descriptors.iter().map(|d| SharedBucket::full(&d.token_bucket, workers, now)).collect(),
            counters: (0..workers).map(|_| LimitCounters::default()).collect(),
        }
    }

    /// `worker`'s own counters; `None` for an id past the workers the limit was made for.
    #[inline]
    pub fn counters(&self, worker: usize) -> Option<&LimitCounters> {
        self.counters.get(worker)
    }

    /// Every worker's counts summed: `[enabled, enforced, rate_limited, ok]`.
    pub fn totals(&self) -> [u64; 4] {
        let mut sum = [0; 4];
        for c in self.counters.iter() {
            for (total, n) in sum.iter_mut().zip([&c.enabled, &c.enforced, &c.rate_limited, &c.ok]) {
                *total += n.get();
            }
        }
        sum
    }
}

/// A bucket every worker of the instance takes from, each through a small reservoir of its
/// own: while the bucket holds at least half its `max_tokens`, a worker draws `batch` tokens
/// with one compare-and-swap and spends them from a line only it touches, so at 2+ workers the
/// bucket's line moves between cores once a batch rather than once a request
/// (`bench/token_bucket.rs`). Below half, every token comes straight from the bucket, as in
/// Envoy's, and a worker that finds it empty takes from the others' reservoirs: a request is
/// refused only when no token is left anywhere. Tokens held while the bucket refills to its
/// maximum are the one difference from Envoy's count (its bucket would have stopped
/// refilling); `batch` bounds it: at most a sixteenth of the smaller of `max_tokens` and
/// `tokens_per_fill`, shared among the workers (and 64), and 1, no reservoir, for quotas too
/// small to spare one.
#[derive(Debug)]
pub struct SharedBucket {
    pub bucket: TokenBucket,
    batch: u32,
    /// Tokens drawn and not yet spent, by worker: filled only by its worker, taken by it and,
    /// once the bucket is empty, by the others.
    held: Box<[Held]>,
}

/// A worker's reservoir, on a line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Held(AtomicU32);

impl SharedBucket {
    /// The most tokens a worker draws at once.
    const MAX_BATCH: u32 = 64;

    pub fn full(config: &TokenBucketConfig, workers: usize, now: u64) -> Self {
        let spare = config.max_tokens.min(config.tokens_per_fill) as usize / (16 * workers.max(1));
        let batch = spare.clamp(1, Self::MAX_BATCH as usize) as u32;
        let held = if batch > 1 { (0..workers).map(|_| Held::default()).collect() } else { Box::default() };
        Self { bucket: TokenBucket::full(config, now), batch, held }
    }

    /// Takes a token for `worker` at `now`; false when none is left. Only `worker`'s own
    /// thread may take for it (only it fills its reservoir); an id past the workers the bucket
    /// was made for takes straight from the bucket.
    #[inline]
    pub fn consume(&self, worker: usize, now: u64) -> bool {
        let Some(held) = self.held.get(worker) else {
            return self.bucket.consume(now);
        };
        if held.take() {
            return true;
        }
        match self.bucket.draw(now, self.batch) {
            // The reservoir was empty and only this worker fills it: nobody took from it since.
            0 => self.held.iter().any(Held::take),
            drawn => {
                held.0.fetch_add(drawn - 1, Relaxed);
                true
            }
        }
    }
}

impl Held {
    /// Takes one token held here; false when there is none.
    #[inline]
    fn take(&self) -> bool {
        self.0.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok()
    }
}

/// Envoy's `AtomicTokenBucketImpl`: the whole state is one instant, `t`, such that the bucket
/// holds `min(max, (now - t) × rate)` tokens; taking a token moves `t` forward by `1 / rate`.
/// One word, so a compare-and-swap takes a token for any worker without a lock.
#[derive(Debug)]
pub struct TokenBucket {
    t: AtomicU64,
    max: f64,
    /// Tokens per nanosecond.
    rate: f64,
}

impl TokenBucket {
    /// A bucket holding `max_tokens` at `now` (Envoy starts its buckets full).
    pub fn full(config: &TokenBucketConfig, now: u64) -> Self {
        let max = f64::from(config.max_tokens);
        let rate = config.rate();
        let t = now.saturating_sub((max / rate).ceil() as u64);
        Self { t: AtomicU64::new(t), max, rate }
    }

    /// Takes one token at `now` (nanoseconds on [`now`]'s clock); false when none is left.
    #[inline]
    pub fn consume(&self, now: u64) -> bool {
        self.take(now, |_| 1.0) > 0.0
    }

    /// Takes `batch` tokens at `now` while the bucket holds at least half its maximum, else
    /// one: how many it took (0 when none is left).
    #[inline]
    fn draw(&self, now: u64, batch: u32) -> u32 {
        let (batch, half) = (f64::from(batch), self.max / 2.0);
        self.take(now, |tokens| if tokens >= half.max(batch) { batch } else { 1.0 }) as u32
    }

    /// Takes `wanted(tokens held)` whole tokens, at least one held, in one compare-and-swap:
    /// how many it took.
    #[inline]
    fn take(&self, now: u64, wanted: impl Fn(f64) -> f64) -> f64 {
        let mut t = self.t.load(Relaxed);
        loop {
            if now <= t {
                return 0.0;
            }
            let tokens = ((now - t) as f64 * self.rate).min(self.max);
            // A whole token less a rounding error of the float arithmetic is a whole token.
            if tokens < 1.0 - 1e-9 {
                return 0.0;
            }
            let n = wanted(tokens);
            let next = now - ((tokens - n).max(0.0) / self.rate) as u64;
            match self.t.compare_exchange_weak(t, next, Relaxed, Relaxed) {
                Ok(_) => return n,
                Err(seen) => t = seen,
            }
        }
    }

    /// Tokens left at `now`, for tests and the admin's dumps.
    pub fn remaining(&self, now: u64) -> f64 {
        (now.saturating_sub(self.t.load(Relaxed)) as f64 * self.rate).min(self.max)
    }
}

/// Nanoseconds on the monotonic clock (the one `Instant` reads), offset far enough that a full
/// bucket's start (`now - max / rate`) never goes below zero for a bucket of up to a century's
/// worth of refills. Read straight from `clock_gettime`: every limited request reads it, and
/// `Instant::elapsed` from a stored epoch cost as much again as the read (checked subtraction,
/// 128-bit nanoseconds, the epoch's once-cell).
pub fn now() -> u64 {
    const OFFSET: u64 = 1 << 62;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on every Linux, so the
    // call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    OFFSET + ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    /// Where [`now`] starts.
    const START: u64 = 1 << 62;

    fn bucket(max: u32, per_fill: u32, interval_s: u64) -> TokenBucket {
        let c = TokenBucketConfig {
            max_tokens: max,
            tokens_per_fill: per_fill,
            fill_interval: Duration::from_secs(interval_s),
        };
        TokenBucket::full(&c, START)
    }

    #[test]
    fn a_full_bucket_admits_max_tokens_then_refuses() {
        let b = bucket(10, 10, 1);
        let now = START;
        assert_eq!((0..25).filter(|_| b.consume(now)).count(), 10);
    }

    #[test]
    fn tokens_come_back_at_tokens_per_fill_per_interval() {
        let b = bucket(10, 10, 1);
        let now = START;
        while b.consume(now) {}
        // Half an interval later, half the fill is back.
        assert_eq!((0..25).filter(|_| b.consume(now + SECOND / 2)).count(), 5);
        // Ten intervals later the bucket is full again, never fuller.
        assert_eq!((0..25).filter(|_| b.consume(now + 11 * SECOND)).count(), 10);
    }

    #[test]
    fn a_bucket_smaller_than_its_fill_holds_only_max() {
        let b = bucket(2, 10, 1);
        let now = START;
        assert_eq!((0..25).filter(|_| b.consume(now + 5 * SECOND)).count(), 2);
    }

    #[test]
    fn workers_share_one_bucket_without_losing_or_minting_tokens() {
        let b = std::sync::Arc::new(bucket(10_000, 1, 3600));
        let now = START;
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..5_000).filter(|_| b.consume(now)).count())
            })
            .collect();
        let taken: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(taken, 10_000);
    }

    /// A shared bucket for `workers` whose batch is 64.
    fn shared(workers: usize) -> SharedBucket {
        let c = TokenBucketConfig { max_tokens: 3200, tokens_per_fill: 3200, fill_interval: Duration::from_secs(3600) };
        SharedBucket::full(&c, workers, START)
    }

    #[test]
    fn a_worker_draws_a_batch_while_the_bucket_is_well_filled_then_single_tokens() {
        let b = shared(2);
        assert!(b.consume(0, START));
        assert_eq!(b.bucket.remaining(START).round(), 3200.0 - 64.0, "one draw of 64");
        assert!((0..63).all(|_| b.consume(0, START)));
        assert_eq!(b.bucket.remaining(START).round(), 3136.0, "63 more spent from the reservoir");
        while b.bucket.remaining(START) >= 1600.0 {
            assert!(b.consume(1, START));
        }
        let before = b.bucket.remaining(START).round();
        for worker in [0, 1] {
            while b.held[worker].0.load(Relaxed) > 0 {
                assert!(b.consume(worker, START));
            }
        }
        assert!(b.consume(0, START));
        assert_eq!(b.bucket.remaining(START).round(), before - 1.0, "below half, one token at a time");
    }

    #[test]
    fn workers_taking_in_turn_take_exactly_max_tokens() {
        let b = shared(2);
        let taken = (0..10_000).filter(|i| b.consume(i % 2, START)).count();
        assert_eq!(taken, 3200);
    }

    #[test]
    fn workers_sharing_one_bucket_never_mint_tokens() {
        let b = std::sync::Arc::new(shared(4));
        let handles: Vec<_> = (0..4)
            .map(|worker| {
                let b = b.clone();
                std::thread::spawn(move || (0..2_000).filter(|_| b.consume(worker, START)).count())
            })
            .collect();
        let taken: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let unspent: u32 = b.held.iter().map(|h| h.0.load(Relaxed)).sum();
        assert_eq!(taken + unspent as usize, 3200, "every token is spent or held, none made");
        assert!(unspent < 4 * 50, "{unspent} unspent");
        assert!(taken >= 3200 - 4 * 50, "a worker refused only when no token was left: {taken}");
    }

    #[test]
    fn a_worker_finding_the_bucket_empty_takes_what_another_holds() {
        let b = shared(2);
        assert!(b.consume(0, START), "worker 0 draws 64 and holds 63");
        let taken = (0..5_000).filter(|_| b.consume(1, START)).count();
        assert_eq!(taken, 3199, "worker 1 gets every token left, worker 0's included");
        assert!(!b.consume(0, START));
    }

    #[test]
    fn small_quotas_and_unknown_workers_take_straight_from_the_bucket() {
        let c = TokenBucketConfig { max_tokens: 10, tokens_per_fill: 10, fill_interval: Duration::from_secs(1) };
        assert_eq!(SharedBucket::full(&c, 2, START).batch, 1);
        let b = shared(2);
        assert!(b.consume(7, START));
        assert_eq!(b.bucket.remaining(START).round(), 3199.0);
    }

    #[test]
    fn fractions_draw_their_share() {
        let half = Fraction { per_million: 500_000 };
        assert_eq!((0..1_000_000u32).filter(|&d| half.drawn(|| d)).count(), 500_000);
        assert!(!Fraction::NONE.drawn(|| 0));
        assert!(Fraction::ALL.drawn(|| u32::MAX));
    }
}
