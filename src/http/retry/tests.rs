use std::time::Duration;

use super::{backoff, expected_timeout_ms, grpc_status_retried, retries, retries_statuses, status_retried, TryFailure};
use crate::snapshot::{RetryOn, RetryPolicy};

fn policy(on: RetryOn, codes: &[u16]) -> RetryPolicy {
    RetryPolicy { attempts: 2, retry_on: on, retriable_status_codes: codes.to_vec(), ..RetryPolicy::default() }
}

#[test]
fn istio_default_retries_connect_failures_only() {
    let p = RetryPolicy::default();
    assert!(retries(&p, TryFailure::ConnectFailure));
    assert!(!retries(&p, TryFailure::Reset));
    assert!(!status_retried(&p, 503));
    assert!(!status_retried(&p, 500));
    assert!(!retries_statuses(&p, false));
}

#[test]
fn five_xx_retries_resets_and_every_5xx() {
    let p = policy(RetryOn { server_error_5xx: true, ..RetryOn::default() }, &[]);
    assert!(retries(&p, TryFailure::ConnectFailure));
    assert!(retries(&p, TryFailure::Reset));
    assert!(status_retried(&p, 500));
    assert!(status_retried(&p, 599));
    assert!(!status_retried(&p, 404));
}

#[test]
fn gateway_error_retries_502_to_504() {
    let p = policy(RetryOn { gateway_error: true, ..RetryOn::default() }, &[]);
    assert!(!status_retried(&p, 500));
    assert!([502, 503, 504].iter().all(|&s| status_retried(&p, s)));
    assert!(retries(&p, TryFailure::Reset));
}

#[test]
fn connect_failure_alone_does_not_retry_resets() {
    let p = policy(RetryOn { connect_failure: true, ..RetryOn::default() }, &[]);
    assert!(retries(&p, TryFailure::ConnectFailure));
    assert!(!retries(&p, TryFailure::Reset));
}

#[test]
fn reset_retries_resets_not_statuses() {
    let p = policy(RetryOn { reset: true, ..RetryOn::default() }, &[]);
    assert!(retries(&p, TryFailure::Reset));
    assert!(retries(&p, TryFailure::ConnectFailure));
    assert!(!status_retried(&p, 503));
}

#[test]
fn retriable_4xx_is_409() {
    let p = policy(RetryOn { retriable_4xx: true, ..RetryOn::default() }, &[]);
    assert!(status_retried(&p, 409));
    assert!(!status_retried(&p, 404));
}

#[test]
fn listed_codes_need_retriable_status_codes() {
    let p = policy(RetryOn { retriable_status_codes: true, ..RetryOn::default() }, &[418, 503]);
    assert!(status_retried(&p, 418));
    assert!(status_retried(&p, 503));
    assert!(!status_retried(&p, 502));
    assert!(retries_statuses(&p, false));
    let off = policy(RetryOn::default(), &[418]);
    assert!(!status_retried(&off, 418));
}

#[test]
fn backoff_grows_and_is_capped() {
    assert_eq!(backoff(1, 25), Duration::from_millis(25));
    assert_eq!(backoff(1, 26), Duration::ZERO);
    assert_eq!(backoff(2, 75), Duration::from_millis(75));
    assert!((0..1000).all(|d| backoff(9, d * 7919) <= Duration::from_millis(250)));
}

#[test]
fn expected_timeout_is_the_shorter_timeout_bounded_by_what_is_left() {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    assert_eq!(expected_timeout_ms(None, None, ms(0)), None);
    assert_eq!(expected_timeout_ms(Some(s(2)), None, ms(0)), Some(2000));
    assert_eq!(expected_timeout_ms(None, Some(s(1)), ms(5000)), Some(1000), "no route timeout: the per-try one");
    assert_eq!(expected_timeout_ms(Some(s(5)), Some(s(1)), ms(0)), Some(1000));
    assert_eq!(
        expected_timeout_ms(Some(s(1)), Some(s(5)), ms(0)),
        Some(1000),
        "a per-try timeout past the route's is ignored"
    );
    assert_eq!(expected_timeout_ms(Some(s(5)), Some(s(1)), ms(4500)), Some(500), "what is left of the route's");
    assert_eq!(expected_timeout_ms(Some(s(5)), None, ms(6000)), Some(1), "out of time: 1, never 0");
}

#[test]
fn grpc_conditions_retry_their_status_only() {
    let p = policy(RetryOn { unavailable: true, ..RetryOn::default() }, &[]);
    assert!(retries_statuses(&p, true), "a gRPC request stays replayable");
    assert!(!retries_statuses(&p, false), "a gRPC status is read for gRPC requests only");
    assert!(grpc_status_retried(&p, 14));
    assert!(!grpc_status_retried(&p, 4));
    assert!(!grpc_status_retried(&p, 0));
    assert!(!status_retried(&p, 503), "an HTTP status is not a gRPC one");
    assert!(!retries(&p, TryFailure::Reset));
    let all = RetryOn {
        cancelled: true,
        deadline_exceeded: true,
        resource_exhausted: true,
        internal: true,
        ..RetryOn::default()
    };
    let p = policy(all, &[]);
    for code in [1, 4, 8, 13] {
        assert!(grpc_status_retried(&p, code), "{code}");
    }
    for code in [0, 2, 3, 12, 14, 16] {
        assert!(!grpc_status_retried(&p, code), "{code}");
    }
    let istio = RetryPolicy::default();
    assert!(
        grpc_status_retried(&istio, 14) && grpc_status_retried(&istio, 1),
        "Istio's default: unavailable, cancelled"
    );
    assert!(retries_statuses(&istio, true));
}
