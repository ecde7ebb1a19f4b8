//! ASM's `ASMGlobalRateLimiter` → global rate limits on the routes it names, with the local
//! limiter's virtual host, route and override matching (the parent module): a config for the
//! virtual host `NAME:PORT` counts every route of it in one window, one naming a route by
//! `name_match` that route's requests (those `header_match` selects); `limit_overrides` count
//! the requests they match in windows of their own, as ASM writes them into the rate limit
//! service's config under the rule's `generic_key`.

use std::collections::BTreeMap;

use super::{header, pick, request_block, vhost_port, Fault, Target};
use crate::config::asm_global_rate_limiter::{GlobalLimit, GlobalRateLimiterConfig};
use crate::config::asm_local_rate_limiter::selects_gateway;
use crate::config::{AsmGlobalRateLimiter, ConfigSet, Diagnostic, Resource, Severity};
use crate::snapshot::ratelimit::global::Window;
use crate::snapshot::ratelimit::DEFAULT_TIMEOUT;
use crate::snapshot::{GlobalLimitId, GlobalRateLimit, MatchBlock, RequestStage, Route};

/// The global rules selecting this gateway; a route's stage names one by its index.
pub(super) struct GlobalLimits {
    targets: Vec<Target>,
    limits: Vec<GlobalRateLimit>,
}

impl GlobalLimits {
    /// The configs of every `ASMGlobalRateLimiter` for a gateway in `namespace` whose
    /// `workloadSelector` selects `labels`, as the local limiter selects its rules.
    pub(super) fn new(
        set: &ConfigSet,
        labels: &BTreeMap<String, String>,
        namespace: &str,
        errors: &mut Vec<Diagnostic>,
    ) -> Self {
        let (mut targets, mut limits) = (Vec::new(), Vec::new());
        for r in &set.asm_global_rate_limiters {
            let selector = r.spec.workload_selector.as_ref();
            if !selects_gateway(r.spec.is_gateway, r.namespace(), selector, namespace, labels) {
                continue;
            }
            let service = r.spec.rate_limit_service.as_ref();
            let Some(domain) = service.map(|s| s.host.as_str()).filter(|h| !h.is_empty()) else {
                let message = "the rate limit service's host is required: it is the limits' domain";
                errors.push(r.diagnostic(Severity::Error, "spec.rateLimitService.host", message));
                continue;
            };
            let timeout = service.and_then(|s| s.timeout).map(|t| t.get()).filter(|t| !t.is_zero());
            for (i, config) in r.spec.configs.iter().enumerate() {
                match rule(r, domain, config) {
                    Ok((target, mut limit)) => {
                        limit.timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
                        targets.push(target);
                        limits.push(limit);
                    }
                    Err((field, message)) => {
                        errors.push(r.diagnostic(Severity::Error, format!("spec.configs[{i}].{field}"), message))
                    }
                }
            }
        }
        Self { targets, limits }
    }

    /// Puts the global limit that applies to `route` (of the virtual host `domain` on `port`)
    /// among its stages, after CORS, fault and the local limits, as Envoy's `ratelimit` filter
    /// runs after `local_ratelimit`.
    pub(super) fn apply(&self, port: u16, domain: &str, route: &mut Route) {
        let Some(target) = pick(&self.targets, |t| t, port, domain, route.name.as_deref()) else {
            return;
        };
        let id = self.targets.iter().position(|t| std::ptr::eq(t, target)).unwrap_or_default() as GlobalLimitId;
        super::insert(route, RequestStage::GlobalRateLimit(id));
    }

    pub(super) fn finish(self) -> Vec<GlobalRateLimit> {
        self.limits
    }
}

fn rule(
    r: &Resource<AsmGlobalRateLimiter>,
    domain: &str,
    config: &GlobalRateLimiterConfig,
) -> Result<(Target, GlobalRateLimit), Fault> {
    let vhost = &config.match_.vhost;
    if vhost.name.is_empty() {
        return Err(("match.vhost.name".into(), "a virtual host name is required".into()));
    }
    let port = vhost_port(vhost)?;
    let mut route_block = MatchBlock::default();
    let route = match &vhost.route {
        Some(route) => {
            for (k, h) in route.header_match.iter().enumerate() {
                header(h, &mut route_block).map_err(|m| (format!("match.vhost.route.header_match[{k}]"), m))?;
            }
            route.name_match.clone().filter(|n| !n.is_empty())
        }
        None => None,
    };
    // The rule's descriptor entry, as ASM names it in the rate limit service's config.
    let generic = format!("{domain}_generic_key_RateLimit[{}.{}]-Id[{}]_", r.name(), r.namespace(), config.name);
    let window = unit_window(&config.limit, generic.clone()).map_err(|(f, m)| (format!("limit.{f}"), m))?;
    let mut overrides = Vec::with_capacity(config.limit_overrides.len());
    for (j, o) in config.limit_overrides.iter().enumerate() {
        let at = |f: &str| format!("limit_overrides[{j}].{f}");
        let matches = request_block(&o.request_match).map_err(|(f, m)| (at(&f), m))?;
        let prefix = format!("{generic}header_match_Override[{j}]_");
        let w = unit_window(&o.limit, prefix).map_err(|(f, m)| (at(&format!("limit.{f}")), m))?;
        overrides.push((matches, w));
    }
    let key = format!(
        "{} ({}) {}:{} {}",
        r.key(),
        r.origin.file.display(),
        vhost.name,
        port.map_or(0, u32::from),
        route.as_deref().unwrap_or("*")
    );
    let limit = GlobalRateLimit {
        key: key.into(),
        route: route_block,
        window,
        overrides: overrides.into(),
        timeout: DEFAULT_TIMEOUT,
    };
    Ok((Target { vhost: vhost.name.clone(), port, route }, limit))
}

/// ASM's `unit` as envoyproxy/ratelimit's divider.
fn unit_window(limit: &GlobalLimit, prefix: String) -> Result<Window, Fault> {
    let unit_s = match limit.unit.to_ascii_uppercase().as_str() {
        "SECOND" => 1,
        "MINUTE" => 60,
        "HOUR" => 3600,
        "DAY" => 86_400,
        other => return Err(("unit".into(), format!("unit {other:?} is not one of SECOND, MINUTE, HOUR, DAY"))),
    };
    Ok(Window { prefix: prefix.into(), quota: limit.quota, unit_s })
}
