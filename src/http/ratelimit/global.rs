//! Envoy's `ratelimit` filter on one request, with the counters in Redis (`--redis`): the
//! window the plan picked is counted with envoyproxy/ratelimit's fixed-window commands on this
//! core's connection; over its quota the request is answered 429 with `x-envoy-ratelimited`;
//! a failed or timed-out count lets it through (fail-open, Envoy's default) or, with
//! `failure_mode_deny`, answers 500 as Envoy's filter does.

use std::time::{SystemTime, UNIX_EPOCH};

use super::super::ext_authz::Verdict;
use super::{ERROR, RATE_LIMITED};
use crate::percore::WorkerCtx;
use crate::snapshot::{GlobalLimitId, Snapshot, WindowIndex};
use crate::upstream::redis::RedisError;

/// Counts the request in its window: the gateway's answer when the request is refused, none
/// when it goes on. Without `--redis` nothing is counted (the load warned).
pub(in crate::http) async fn check(
    ctx: &WorkerCtx,
    snap: &Snapshot,
    (id, at): (GlobalLimitId, WindowIndex),
) -> Option<Verdict> {
    let redis = ctx.redis.as_ref()?;
    let limit = snap.global_rate_limit(id);
    let window = limit.window(at);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let stats = &ctx.stats.ratelimit;
    let failed = match redis.hit(|key| window.write_key(now, key), window.unit_s, limit.timeout).await {
        Ok(count) if count > i64::from(window.quota) => {
            stats.over_limit.inc();
            let headers = vec![("x-envoy-ratelimited".to_string(), "true".to_string())];
            return Some(Verdict::Deny { status: 429, headers, body: Vec::new(), details: RATE_LIMITED });
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
        return Some(Verdict::Deny { status: 500, headers: Vec::new(), body: Vec::new(), details: ERROR });
    }
    stats.failure_mode_allowed.inc();
    None
}
