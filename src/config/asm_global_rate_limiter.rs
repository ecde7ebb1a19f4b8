//! `istio.alibabacloud.com` `ASMGlobalRateLimiter` (Alibaba Cloud Service Mesh's global
//! throttling resource, its "Description of ASMGlobalRateLimiter fields" page): which workload,
//! which virtual host, port and route, the quota per SECOND/MINUTE/HOUR/DAY every instance shares,
//! and overrides by header and query. ASM points Envoy's `ratelimit` filter at its rate limit
//! service (`rateLimitService`); Strait keeps the same fixed-window counters in Redis itself
//! (`--redis`), reading `rateLimitService.host` as the domain and `timeout` as the call's.
//! The vhost, route and override matchers are the local limiter's types.

use serde::{Deserialize, Serialize};

use super::asm_local_rate_limiter::{AsmWorkloadSelector, ProtoDuration, RequestMatcher, VirtualHostMatch};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AsmGlobalRateLimiter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<AsmWorkloadSelector>,
    #[serde(default)]
    pub is_gateway: bool,
    /// ASM's rate limit service; Strait reads `host` as the descriptors' domain (as ASM writes
    /// it into the service's config) and `timeout` as each Redis call's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_service: Option<RateLimitService>,
    #[serde(default)]
    pub configs: Vec<GlobalRateLimiterConfig>,
    /// ASM 1.25's `sidecar_inbound`/`sidecar_outbound`/waypoint choice: a gateway has one kind
    /// of traffic, so the field is read and has no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_to_traffic: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitService {
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ProtoDuration>,
}

/// One global rule. ASM's fields are snake_case.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRateLimiterConfig {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "match", default)]
    pub match_: GlobalMatch,
    pub limit: GlobalLimit,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit_overrides: Vec<GlobalOverride>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalMatch {
    #[serde(default)]
    pub vhost: VirtualHostMatch,
}

/// `quota` requests per `unit`, shared by every instance.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalLimit {
    pub unit: String,
    pub quota: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalOverride {
    pub request_match: RequestMatcher,
    pub limit: GlobalLimit,
}
