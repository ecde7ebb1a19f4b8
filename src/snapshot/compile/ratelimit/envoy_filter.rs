//! EnvoyFilter's `envoy.filters.http.local_ratelimit` patches → the routes' local rate limits,
//! as Envoy runs what istiod patches in: the filter inserted into a listener's HTTP connection
//! manager holds the listener's config (its bucket shared by every route there), and a route's
//! or virtual host's `typed_per_filter_config` replaces it for that route (Envoy's most
//! specific per-route config). A per-route config acts only where the filter is inserted.
//! The same route patches' `rate_limits` write the descriptors the local limit's `descriptors`
//! and an inserted `envoy.filters.http.ratelimit` read.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Template, LIMITED_BODY};
use crate::config::envoy_filter::{
    ConfigPatch, LocalRateLimit as Config, RateLimit, Recognised, RouteConfigurationMatch,
};
use crate::config::ConfigSet;
use crate::snapshot::compile::compress::{applying, http_filter_port};
use crate::snapshot::{Descriptor, DescriptorMatch, Fraction, RateLimitService, Route, RouteAction, TokenBucketConfig};

/// A config read from a patch: `None` when it has no `token_bucket`, which limits nothing
/// (Envoy's filter without a bucket admits every request its descriptors do not name).
pub(super) struct Limit {
    /// The config as written: a reload keeps the bucket while it is the same.
    pub(super) source: String,
    pub(super) template: Option<Template>,
    /// The `rate_limits` entries its descriptors read are those of this `stage`.
    pub(super) stage: u32,
}

/// An `HTTP_FILTER` insert: the listener port it is limited to (`None`: every port).
pub(super) struct Filter {
    pub(super) origin: String,
    port: Option<u32>,
    pub(super) limit: Limit,
}

/// An `HTTP_ROUTE` or `VIRTUAL_HOST` `MERGE` of the local filter's `typed_per_filter_config`
/// and of `rate_limits`.
pub(super) struct PerRoute {
    pub(super) origin: String,
    pub(super) virtual_host: bool,
    matches: RouteConfigurationMatch,
    pub(super) limit: Option<Limit>,
    pub(super) rate_limits: Vec<RateLimit>,
}

/// An `envoy.filters.http.ratelimit` insert: the listener port it is limited to.
pub(super) struct RlsFilter {
    port: Option<u32>,
    /// The `rate_limits` entries it sends are those of this `stage`.
    pub(super) stage: u32,
    pub(super) service: Arc<RateLimitService>,
}

impl RlsFilter {
    pub(super) fn on(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == u32::from(port))
    }
}

/// The patches of the EnvoyFilters reaching this gateway, in istiod's order.
pub(super) fn read(
    set: &ConfigSet,
    labels: &BTreeMap<String, String>,
    namespace: &str,
) -> (Vec<Filter>, Vec<PerRoute>, Vec<RlsFilter>) {
    let (mut filters, mut routes, mut services) = (Vec::new(), Vec::new(), Vec::new());
    for ef in applying(set, labels, namespace) {
        for (i, p) in ef.spec.config_patches.iter().enumerate() {
            let origin = format!("EnvoyFilter {} configPatches[{i}]", ef.key());
            match p.recognise() {
                Ok(Recognised::LocalRateLimitFilter(config)) => {
                    if let Some(port) = http_filter_port(p.match_.as_ref()) {
                        filters.push(Filter { origin, port, limit: limit(&config) });
                    }
                }
                Ok(Recognised::RateLimitFilter(config)) => {
                    if let Some(port) = http_filter_port(p.match_.as_ref()) {
                        let service = super::rls::service(&origin, &config);
                        services.push(RlsFilter { port, stage: config.stage, service });
                    }
                }
                Ok(Recognised::RoutePatch { virtual_host, config, rate_limits }) => {
                    if let Some(matches) = route_match(p) {
                        let limit = config.map(|c| limit(&c));
                        routes.push(PerRoute { origin, virtual_host, matches, limit, rate_limits });
                    }
                }
                _ => {}
            }
        }
    }
    (filters, routes, services)
}

impl Filter {
    pub(super) fn on(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == u32::from(port))
    }
}

impl PerRoute {
    /// Whether the patch reaches `route` (the `index`th of virtual host `domain` on `port`), as
    /// istiod matches a gateway's route configuration `http.PORT`, its virtual hosts, named
    /// `domain:port`, and their routes.
    pub(super) fn reaches(&self, port: u16, domain: &str, route: &Route) -> bool {
        let m = &self.matches;
        if m.port_number.is_some_and(|p| p != u32::from(port)) {
            return false;
        }
        let Some(vhost) = &m.vhost else {
            return true;
        };
        // istiod reads an empty name or domain as none (the task's `name: ""`).
        if vhost.name.as_deref().is_some_and(|n| !n.is_empty() && n != format!("{domain}:{port}")) {
            return false;
        }
        if vhost.domain_name.as_deref().is_some_and(|d| !d.is_empty() && d != domain) {
            return false;
        }
        // istiod reads the route match of HTTP_ROUTE patches only.
        let Some(r) = vhost.route.as_ref().filter(|_| !self.virtual_host) else {
            return true;
        };
        if r.name.as_deref().is_some_and(|n| !n.is_empty() && route.name.as_deref() != Some(n)) {
            return false;
        }
        match r.action.as_deref() {
            Some("ROUTE") => matches!(route.action, RouteAction::Forward(_)),
            Some("REDIRECT") => matches!(route.action, RouteAction::Redirect(_)),
            Some("DIRECT_RESPONSE") => matches!(route.action, RouteAction::DirectResponse { .. }),
            _ => true,
        }
    }
}

/// The route configuration match of a patch that reaches a gateway's routes, or `None` when its
/// context is another proxy's, or it names the route configuration, port name or gateway
/// (which Strait does not match: `validate` lists them).
fn route_match(p: &ConfigPatch) -> Option<RouteConfigurationMatch> {
    let Some(m) = p.match_.as_ref() else {
        return Some(RouteConfigurationMatch::default());
    };
    if !matches!(m.context.as_deref(), None | Some("ANY" | "GATEWAY")) {
        return None;
    }
    let rc = m.route_configuration.clone().unwrap_or_default();
    if rc.name.is_some() || rc.port_name.is_some() || rc.gateway.is_some() {
        return None;
    }
    Some(rc)
}

fn limit(c: &Config) -> Limit {
    // Envoy's filter_enabled and filter_enforced default to 0% "for safety".
    let fraction = |f: &Option<crate::config::envoy_filter::RuntimeFractionalPercent>| {
        f.as_ref().map_or(Fraction::NONE, |f| Fraction {
            per_million: (f.default_value.fraction() * 1_000_000.0).round() as u32,
        })
    };
    let template = c.token_bucket.as_ref().map(|b| Template {
        token_bucket: TokenBucketConfig {
            max_tokens: b.max_tokens,
            tokens_per_fill: b.tokens_per_fill.unwrap_or(1),
            fill_interval: b.fill_interval.get(),
        },
        descriptors: c
            .descriptors
            .iter()
            .map(|d| Descriptor {
                matches: DescriptorMatch::Entries(
                    d.entries.iter().map(|e| (e.key.as_str().into(), e.value.as_str().into())).collect(),
                ),
                token_bucket: TokenBucketConfig {
                    max_tokens: d.token_bucket.max_tokens,
                    tokens_per_fill: d.token_bucket.tokens_per_fill.unwrap_or(1),
                    fill_interval: d.token_bucket.fill_interval.get(),
                },
            })
            .collect(),
        per_connection: c.local_rate_limit_per_downstream_connection,
        body: LIMITED_BODY.into(),
        response_headers: c
            .response_headers_to_add
            .iter()
            .map(|h| (h.header.key.to_ascii_lowercase().into(), h.header.value.as_str().into()))
            .collect(),
        stat_prefix: Arc::from(c.stat_prefix.as_str()),
        filter_enabled: fraction(&c.filter_enabled),
        filter_enforced: fraction(&c.filter_enforced),
        // Envoy answers 429 for a status under 400.
        status: c.status.as_ref().map(|s| s.code).filter(|&s| (400..=599).contains(&s)).map_or(429, |s| s as u16),
        always_consume_default: c.always_consume_default_token_bucket.unwrap_or(true),
    });
    Limit { source: format!("{c:?}"), template, stage: c.stage }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn patch(yaml: &str) -> ConfigPatch {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_config_without_a_bucket_limits_nothing() {
        assert!(limit(&config("stat_prefix: p")).template.is_none());
    }

    #[test]
    fn envoys_defaults_enable_and_enforce_nothing_and_answer_429() {
        let c = config("stat_prefix: p\ntoken_bucket: {max_tokens: 3, fill_interval: 1s}\nstatus: {code: 200}");
        let t = limit(&c).template.unwrap();
        assert_eq!((t.filter_enabled, t.filter_enforced), (Fraction::NONE, Fraction::NONE));
        assert_eq!(t.token_bucket.tokens_per_fill, 1);
        assert_eq!(t.status, 429, "a status under 400 is 429, as Envoy answers");
        let c = config(
            "stat_prefix: p
token_bucket: {max_tokens: 3, fill_interval: 1s}
status: {code: 503}
filter_enabled: {default_value: {numerator: 100}}
filter_enforced: {default_value: {numerator: 25, denominator: TEN_THOUSAND}}",
        );
        let t = limit(&c).template.unwrap();
        assert_eq!((t.filter_enabled, t.filter_enforced), (Fraction::ALL, Fraction { per_million: 2_500 }));
        assert_eq!(t.status, 503);
    }

    #[test]
    fn route_patches_reach_a_gateway_unless_they_name_what_strait_does_not_match() {
        let at = |m: &str| route_match(&patch(&format!("applyTo: HTTP_ROUTE\nmatch:\n{m}")));
        assert!(at("  context: GATEWAY\n  routeConfiguration: {portNumber: 80}").is_some());
        assert!(at("  context: ANY").is_some());
        assert!(at("  context: SIDECAR_INBOUND").is_none());
        assert!(at("  routeConfiguration: {gateway: istio-system/gw}").is_none());
        assert!(at("  routeConfiguration: {name: http.80}").is_none());
        assert!(at("  routeConfiguration: {portName: http}").is_none());
    }
}
