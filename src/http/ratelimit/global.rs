//! Envoy's `ratelimit` filter on one request, with the counters in Redis (`--redis`): the
//! window the plan picked is counted with envoyproxy/ratelimit's fixed-window commands on this
//! core's connection; over its quota the request is answered 429 with `x-envoy-ratelimited`;
//! a failed or timed-out count lets it through (fail-open, Envoy's default) or, with
//! `failure_mode_deny`, answers 500 as Envoy's filter does.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use super::super::local::Answer;
use crate::percore::WorkerCtx;
use crate::snapshot::{GlobalLimitId, Snapshot, WindowIndex};
use crate::upstream::redis::RedisError;

/// Response code details of Envoy's ratelimit filter: over the limit, and a failed check
/// under `failure_mode_deny`.
pub(in crate::http) const RATE_LIMITED: &str = "request_rate_limited";
pub(in crate::http) const ERROR: &str = "rate_limiter_error";
/// The flag a failed check under `failure_mode_deny` is logged with.
pub(in crate::http) const ERROR_FLAG: &str = "RLSE";

/// Counts the request in its window: the gateway's answer and its details when the request is
/// refused, none when it goes on. Without `--redis` nothing is counted (the load warned).
pub(in crate::http) async fn check(
    ctx: &WorkerCtx,
    snap: &Snapshot,
    (id, at): (GlobalLimitId, WindowIndex),
) -> Option<(Answer<'static>, &'static str)> {
    let redis = ctx.redis.as_ref()?;
    let limit = snap.global_rate_limit(id);
    let window = limit.window(at);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // The key is one allocation per check, as the reply's channel is.
    let key = window.key(now);
    let stats = &ctx.stats.ratelimit;
    let failed = match redis.hit(&key, window.unit_s, limit.timeout).await {
        Ok(count) if count > i64::from(window.quota) => {
            stats.over_limit.inc();
            let headers = vec![("x-envoy-ratelimited", Cow::Borrowed("true"))];
            return Some((Answer { status: 429, headers, body: b"", omit_body: false }, RATE_LIMITED));
        }
        Ok(_) => {
            stats.ok.inc();
            return None;
        }
        Err(e) => e,
    };
    stats.error.inc();
    if failed == RedisError::Timeout {
        stats.timeout.inc();
    }
    tracing::debug!(limit = %limit.key, "global rate limit check failed: {failed:?}");
    if redis.failure_mode_deny {
        return Some((Answer::simple(500, b""), ERROR));
    }
    stats.failure_mode_allowed.inc();
    None
}
