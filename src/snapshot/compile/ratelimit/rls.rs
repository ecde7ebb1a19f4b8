//! EnvoyFilter's `envoy.filters.http.ratelimit` insert, compiled into the rate limit service a
//! route's descriptors are sent to.

use std::sync::Arc;

use crate::config::envoy_filter::RateLimitFilter;
use crate::snapshot::ratelimit::DEFAULT_TIMEOUT;
use crate::snapshot::{RateLimitService, RlsCounters};

pub(super) fn service(origin: &str, c: &RateLimitFilter) -> Arc<RateLimitService> {
    // The patch's check made sure of an `envoy_grpc` service.
    let grpc = c.rate_limit_service.as_ref().and_then(|s| s.grpc_service.envoy_grpc.as_ref());
    let cluster_name = grpc.map_or("", |g| g.cluster_name.as_str());
    Arc::new(RateLimitService {
        origin: origin.into(),
        domain: c.domain.as_str().into(),
        cluster_name: cluster_name.into(),
        authority: grpc.and_then(|g| g.authority.as_deref()).filter(|a| !a.is_empty()).unwrap_or(cluster_name).into(),
        timeout: c.timeout.map_or(DEFAULT_TIMEOUT, |t| t.get()),
        failure_mode_deny: c.failure_mode_deny,
        // Envoy answers 429 for a `rate_limited_status` under 400.
        status: c
            .rate_limited_status
            .as_ref()
            .map(|s| s.code)
            .filter(|s| (400..=599).contains(s))
            .map_or(429, |s| s as u16),
        status_on_error: c
            .status_on_error
            .as_ref()
            .map(|s| s.code)
            .filter(|s| (200..=599).contains(s))
            .map_or(500, |s| s as u16),
        x_envoy_ratelimited: !c.disable_x_envoy_ratelimited_header,
        response_headers: c
            .response_headers_to_add
            .iter()
            .map(|h| (h.header.key.to_ascii_lowercase().into(), h.header.value.as_str().into()))
            .collect(),
        stat_prefix: c.stat_prefix.as_str().into(),
        counters: RlsCounters::default(),
    })
}
