//! When a failed try is sent again: Envoy's `retry_on` conditions over what went wrong, and
//! its jittered back-off between tries.

use std::time::Duration;

use super::grpc;
use crate::snapshot::RetryPolicy;

#[cfg(test)]
mod tests;

/// Envoy's default back-off base interval; the cap is ten times it.
const BASE_INTERVAL: Duration = Duration::from_millis(25);

/// What ended a try that may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryFailure {
    /// The connection could not be opened (refused, unreachable, connect timeout): nothing
    /// reached the upstream.
    ConnectFailure,
    /// The connection closed, reset or spoke nonsense before a response head, or the
    /// per-try timeout fired: Envoy's stream resets.
    Reset,
}

/// Whether a try that ended in `failure` is retried under `policy` (attempts left aside).
///
/// As Envoy's `RetryStateImpl`: `5xx`, `gateway-error` and `reset` retry every reset
/// (a connect failure and a per-try timeout included); `connect-failure` only connect
/// failures. `refused-stream` never applies to HTTP/1.1; the gRPC conditions are read from a
/// response ([`grpc_status_retried`]).
pub fn retries(policy: &RetryPolicy, failure: TryFailure) -> bool {
    let on = &policy.retry_on;
    match failure {
        TryFailure::ConnectFailure => on.connect_failure || on.server_error_5xx || on.gateway_error || on.reset,
        TryFailure::Reset => on.server_error_5xx || on.gateway_error || on.reset,
    }
}

/// Whether a response with `status` is retried under `policy`: `5xx` any 5xx,
/// `gateway-error` 502/503/504, `retriable-4xx` 409, `retriable-status-codes` the listed codes.
pub fn status_retried(policy: &RetryPolicy, status: u16) -> bool {
    let on = &policy.retry_on;
    (on.server_error_5xx && (500..600).contains(&status))
        || (on.gateway_error && matches!(status, 502..=504))
        || (on.retriable_4xx && status == 409)
        || (on.retriable_status_codes && policy.retriable_status_codes.contains(&status))
}

/// Whether a response whose head carries `grpc-status: code` is retried under `policy`:
/// `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`, `unavailable`, as
/// Envoy's `RetryStateImpl` reads the response headers. A status that arrives in trailers,
/// after the response began, is not: the client already has the head.
pub fn grpc_status_retried(policy: &RetryPolicy, code: u8) -> bool {
    let on = &policy.retry_on;
    match code {
        grpc::CANCELLED => on.cancelled,
        grpc::DEADLINE_EXCEEDED => on.deadline_exceeded,
        grpc::RESOURCE_EXHAUSTED => on.resource_exhausted,
        grpc::INTERNAL => on.internal,
        grpc::UNAVAILABLE => on.unavailable,
        _ => false,
    }
}

/// Whether the policy retries any gRPC status (see [`grpc_status_retried`]).
pub fn retries_grpc_statuses(policy: &RetryPolicy) -> bool {
    let on = &policy.retry_on;
    on.cancelled || on.deadline_exceeded || on.resource_exhausted || on.internal || on.unavailable
}

/// Whether any status at all could be retried for a request, `grpc` when it is a gRPC one:
/// when none can, a response is relayed at once and the request need not stay replayable.
///
/// The gRPC conditions count for gRPC requests only. Envoy reads `grpc-status` from any
/// response, but only gRPC servers send one, and Istio's default policy has `unavailable` and
/// `cancelled`: counted for every request, they would hold every small body and scan every
/// response head on routes that retry nothing else.
pub fn retries_statuses(policy: &RetryPolicy, grpc: bool) -> bool {
    let on = &policy.retry_on;
    on.server_error_5xx
        || on.gateway_error
        || on.retriable_4xx
        || (on.retriable_status_codes && !policy.retriable_status_codes.is_empty())
        || (grpc && retries_grpc_statuses(policy))
}

/// The wait before retry number `retry` (1-based): uniform in `[0, (2^retry - 1) × 25 ms]`,
/// capped at 250 ms, as Envoy's jittered exponential back-off. `draw` is any random number.
pub fn backoff(retry: u32, draw: u32) -> Duration {
    let cap = BASE_INTERVAL * 10;
    let ceiling = BASE_INTERVAL.saturating_mul((1u32 << retry.min(10)) - 1).min(cap);
    let ms = ceiling.as_millis() as u32;
    Duration::from_millis(u64::from(draw % (ms + 1)))
}

/// `x-envoy-expected-rq-timeout-ms` for a try sent `elapsed` into the request, as Envoy's
/// router computes it (`FilterUtility::setTimeoutHeaders`): the per-try timeout when it is
/// shorter than the route's (or the route has none), else the route's; never more than what
/// is left of the route's, and at least 1 ms. `None` when neither timeout is set.
pub fn expected_timeout_ms(route: Option<Duration>, per_try: Option<Duration>, elapsed: Duration) -> Option<u64> {
    let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis() as u64);
    let (global, per_try) = (ms(route), ms(per_try));
    let expected = if per_try > 0 && (global == 0 || per_try < global) { per_try } else { global };
    match (expected, global) {
        (0, _) => None,
        (expected, 0) => Some(expected),
        (expected, global) => Some(expected.min(global.saturating_sub(elapsed.as_millis() as u64)).max(1)),
    }
}
