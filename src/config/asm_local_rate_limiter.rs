//! `istio.alibabacloud.com` `ASMLocalRateLimiter` (Alibaba Cloud Service Mesh's local throttling
//! resource, its "ASMLocalRateLimiter CRD fields" page): which workload, which virtual host,
//! port and route, and the token bucket each applies, with overrides by header and query.
//! ASM writes each config as Envoy's `local_ratelimit` filter; Strait compiles it onto the same
//! machinery (`snapshot::ratelimit`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::index::labels_subset;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AsmLocalRateLimiter {
    /// The workloads the rule applies to; none selects every workload of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<AsmWorkloadSelector>,
    /// The rule is for a gateway (its configs match the gateway's virtual hosts).
    #[serde(default)]
    pub is_gateway: bool,
    #[serde(default)]
    pub configs: Vec<LocalRateLimiterConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AsmWorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Whether an ASM limiter (local or global) in `own_namespace` applies to the gateway in
/// `namespace` labelled `labels`: it says `isGateway`, sits in the gateway's namespace, and
/// its `workloadSelector` (none: every workload there) selects the gateway.
pub fn selects_gateway(
    is_gateway: bool,
    own_namespace: &str,
    selector: Option<&AsmWorkloadSelector>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    is_gateway && own_namespace == namespace && selector.is_none_or(|s| labels_subset(&s.labels, labels))
}

/// One throttling rule: where it applies and its quota. ASM's fields are snake_case.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimiterConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub match_: RateLimitMatch,
    pub limit: LimitConfig,
    /// Requests matching an override take its quota instead of the config's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit_overrides: Vec<RateLimitOverride>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitMatch {
    #[serde(default)]
    pub vhost: VirtualHostMatch,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHostMatch {
    /// A host of the gateway's servers (a VirtualService's host as bound to the gateway).
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// A route of the virtual host; absent, the whole virtual host (every route) shares one
    /// bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// The `name` of an HTTPRoute of a VirtualService bound to the virtual host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_match: Option<String>,
    /// Deprecated by ASM in favour of `limit_overrides`: only requests of the route that carry
    /// these headers are throttled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_match: Vec<HeaderMatcher>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub fill_interval: ProtoDuration,
    /// Tokens per `fill_interval`, and the bucket's size.
    pub quota: u32,
    /// A bucket per client connection instead of one for the gateway.
    #[serde(default)]
    pub per_downstream_connection: bool,
    /// The body of a throttled request's 429 instead of Envoy's `local_rate_limited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_response_body: Option<String>,
    /// Lines added to a throttled request's 429.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_header_to_add: BTreeMap<String, String>,
}

/// protobuf `Duration` as ASM writes it: `{seconds, nanos}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtoDuration {
    #[serde(default)]
    pub seconds: u64,
    #[serde(default)]
    pub nanos: u32,
}

impl ProtoDuration {
    pub fn get(self) -> std::time::Duration {
        std::time::Duration::new(self.seconds, self.nanos)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    pub request_match: RequestMatcher,
    pub limit: LimitConfig,
}

/// Every matcher present must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestMatcher {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_match: Vec<HeaderMatcher>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_match: Vec<QueryMatcher>,
}

/// Envoy's `config.route.v3.HeaderMatcher`, the fields ASM documents: one of the value
/// matchers (none: the header must be present), optionally inverted.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatcher {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present_match: Option<bool>,
    #[serde(default)]
    pub invert_match: bool,
}

/// Envoy's `config.route.v3.QueryParameterMatcher`, as ASM documents it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryMatcher {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present_match: Option<bool>,
}
