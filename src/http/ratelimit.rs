//! Envoy's `local_ratelimit` filter on one request: `filter_enabled`, a token from the limit's
//! bucket (the instance's, or the connection's own with `per_downstream_connection`), the
//! descriptors' buckets for the requests they match, `filter_enforced`, and the counters.

use std::borrow::Cow;

pub(super) mod rls;

use super::local::Answer;
pub(super) mod global;

/// Response code details of Envoy's `ratelimit` filter, whether ASM's limits counted in Redis
/// ([`global`]) or a rate limit service ([`rls`]) decided: over the limit (flag `RL`), and a
/// failed check under `failure_mode_deny` (flag [`ERROR_FLAG`]).
pub(super) const RATE_LIMITED: &str = "request_rate_limited";
pub(super) const ERROR: &str = "rate_limiter_error";
pub(super) const ERROR_FLAG: &str = "RLSE";

use super::peer::ConnBuckets;
use crate::counter::Counter;
use crate::snapshot::{LimitCounters, LocalRateLimit, RateLimitDescriptor, RequestInfo, TokenBucket};

/// Whether `limit` refuses the request at `now` ([`crate::snapshot::now`]'s clock): counts it
/// as Envoy's filter does, and says true only when the refusal is enforced. `random` draws the
/// `filter_enabled` and `filter_enforced` fractions; `written`: the descriptors the route's
/// `rate_limits` wrote for the request; `worker`: the id of the worker asking, whose
/// reservoirs and counters only it writes.
pub(super) fn limited(
    limit: &LocalRateLimit,
    info: &RequestInfo<'_>,
    written: &[RateLimitDescriptor],
    conn: &ConnBuckets,
    (worker, now): (usize, u64),
    random: impl Fn() -> u32,
) -> bool {
    if !limit.filter_enabled.drawn(&random) {
        return false;
    }
    let counters = limit.live.counters(worker);
    count(counters, |c| &c.enabled);
    let allowed = if limit.per_connection {
        let mut buckets = conn.buckets.borrow_mut();
        let at = match buckets.iter().position(|(id, ..)| *id == limit.live.id) {
            Some(at) => at,
            None => {
                let own = limit.descriptors.iter().map(|d| TokenBucket::full(&d.token_bucket, now)).collect();
                buckets.push((limit.live.id, TokenBucket::full(&limit.token_bucket, now), own));
                buckets.len() - 1
            }
        };
        let (_, bucket, descriptors) = &buckets[at];
        take(limit, info, written, |i| match i {
            Some(i) => descriptors[i].consume(now),
            None => bucket.consume(now),
        })
    } else {
        let live = &limit.live;
        take(limit, info, written, |i| match i {
            Some(i) => live.descriptors[i].consume(worker, now),
            None => live.bucket.consume(worker, now),
        })
    };
    if allowed {
        count(counters, |c| &c.ok);
        return false;
    }
    count(counters, |c| &c.rate_limited);
    if !limit.filter_enforced.drawn(&random) {
        return false;
    }
    count(counters, |c| &c.enforced);
    true
}

/// Envoy's `requestAllowed`: a token from each descriptor the request matches, and from the
/// limit's own bucket when none matched or `always_consume_default_token_bucket`.
/// `consume(Some(i))` takes from descriptor `i`'s bucket, `consume(None)` from the limit's.
fn take(
    limit: &LocalRateLimit,
    info: &RequestInfo<'_>,
    written: &[RateLimitDescriptor],
    consume: impl Fn(Option<usize>) -> bool,
) -> bool {
    let mut matched = false;
    for i in limit.matched(info, written) {
        matched = true;
        if !consume(Some(i)) {
            return false;
        }
    }
    if matched && !limit.always_consume_default_token_bucket {
        return true;
    }
    consume(None)
}

/// Adds one to the worker's own counter, if it has one.
fn count(counters: Option<&LimitCounters>, which: impl Fn(&LimitCounters) -> &Counter) {
    if let Some(c) = counters.map(which) {
        c.inc();
    }
}

/// The filter's answer: its status (429), body (`local_rate_limited`, or ASM's
/// `custom_response_body`) and `response_headers_to_add`.
pub(super) fn answer(limit: &LocalRateLimit, head: bool) -> Answer<'_> {
    let headers = limit.response_headers.iter().map(|(n, v)| (&**n, Cow::Borrowed(&**v))).collect();
    Answer { status: limit.status, headers, body: limit.body.as_bytes(), omit_body: head }
}
