//! Envoy's `envoy.filters.http.ratelimit` (`extensions.filters.http.ratelimit.v3.RateLimit`),
//! compiled: the rate limit service a route's descriptors are sent to (by its cluster's name,
//! as `envoy_grpc.cluster_name` names it), the domain, the timeout, what a failure does, the
//! answer to a limited request, and Envoy's `ratelimit.*` counters of the service's cluster.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// One inserted `ratelimit` filter.
#[derive(Debug)]
pub struct RateLimitService {
    /// Where it came from (`EnvoyFilter ns/name configPatches[i]`).
    pub origin: Box<str>,
    pub domain: Box<str>,
    /// `outbound|PORT||HOST`: the cluster a ServiceEntry (or a service) of that host gives.
    pub cluster_name: Box<str>,
    /// The call's `:authority`: `envoy_grpc.authority`, else the cluster's name, as Envoy.
    pub authority: Box<str>,
    /// `timeout`, 20 ms by default.
    pub timeout: Duration,
    /// A failed call answers `status_on_error` instead of letting the request through.
    pub failure_mode_deny: bool,
    /// `rate_limited_status` (429, and 429 for one under 400).
    pub status: u16,
    /// `status_on_error` (500).
    pub status_on_error: u16,
    /// `x-envoy-ratelimited: true` on a limited request's answer, unless
    /// `disable_x_envoy_ratelimited_header`.
    pub x_envoy_ratelimited: bool,
    /// `response_headers_to_add` on a limited request's answer, lower-case names.
    pub response_headers: Box<[(Box<str>, Box<str>)]>,
    /// `cluster.<cluster_name>.[<stat_prefix>.]ratelimit.*`.
    pub stat_prefix: Box<str>,
    pub counters: RlsCounters,
}

/// Envoy's `ratelimit.ok`, `over_limit`, `error` and `failure_mode_allowed` counters. Shared
/// by the workers: a check already costs a round trip to the service, beside which an atomic
/// add on a shared line is nothing.
#[derive(Debug, Default)]
pub struct RlsCounters {
    pub ok: AtomicU64,
    pub over_limit: AtomicU64,
    pub error: AtomicU64,
    pub failure_mode_allowed: AtomicU64,
}
