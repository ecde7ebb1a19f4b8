//! ASM's `ASMLocalRateLimiter` → local rate limits on the routes it names, as ASM writes each
//! config into Envoy: a `local_ratelimit` filter before the router, and per-filter config on
//! the virtual host `NAME:PORT` (every route of it sharing one bucket) or on its routes named
//! `name_match` (each such route's own), `limit_overrides` as descriptors with buckets of their
//! own that replace the config's for the requests they match. EnvoyFilter's local rate limit
//! patches (`envoy_filter`) compile onto the same limits.

use std::collections::HashMap;
use std::sync::Arc;

use super::CompileOptions;
use crate::config::asm_local_rate_limiter::selects_gateway;
use crate::config::asm_local_rate_limiter::{
    HeaderMatcher as AsmHeader, LimitConfig, LocalRateLimiterConfig, QueryMatcher as AsmQuery, RequestMatcher,
    VirtualHostMatch,
};
use crate::config::{AsmLocalRateLimiter, ConfigSet, Diagnostic, Resource, Severity};
use crate::snapshot::{
    now, Descriptor, DescriptorMatch, Fraction, HeaderMatcher, LiveLimit, LocalRateLimit, MatchBlock, QueryMatcher,
    RateLimitId, RateLimitService, RequestStage, Route, RouteAction, StringMatcher, TokenBucketConfig, ValueMatcher,
};

mod actions;
pub mod envoy_filter;
mod global;
mod rls;

/// Envoy's body for a locally rate-limited request.
const LIMITED_BODY: &str = "local_rate_limited";
/// The stat prefix of the filter ASM (and Istio's rate-limit task) inserts.
const ASM_STAT_PREFIX: &str = "http_local_rate_limiter";
/// Envoy refuses a shorter `fill_interval`.
const MIN_FILL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// One config of a rule that selects this gateway, compiled once.
struct Rule {
    /// `ns/name configs[i]`.
    origin: String,
    target: Target,
    /// The config's YAML, normalised: a reload keeps the bucket while it is the same.
    source: String,
    limit: Template,
}

/// The virtual host (its name and, if given, port) and route an ASM config names.
struct Target {
    vhost: String,
    port: Option<u16>,
    route: Option<String>,
}

/// A limit before it gets its live state: made once per virtual host or route it applies to.
struct Template {
    token_bucket: TokenBucketConfig,
    descriptors: Vec<Descriptor>,
    per_connection: bool,
    body: Box<str>,
    response_headers: Box<[(Box<str>, Box<str>)]>,
    stat_prefix: Arc<str>,
    filter_enabled: Fraction,
    filter_enforced: Fraction,
    status: u16,
    /// Envoy's `always_consume_default_token_bucket` (true unless set; ASM's overrides replace
    /// the config's quota, so false for them).
    always_consume_default: bool,
}

/// The rules selecting this gateway, and the limits made of them so far.
pub(super) struct LocalLimits {
    rules: Vec<Rule>,
    /// EnvoyFilter's `local_ratelimit` inserts and per-route configs.
    filters: Vec<envoy_filter::Filter>,
    per_route: Vec<envoy_filter::PerRoute>,
    /// EnvoyFilter's `ratelimit` inserts.
    services: Vec<envoy_filter::RlsFilter>,
    limits: Vec<Arc<LocalRateLimit>>,
    by_key: HashMap<String, RateLimitId>,
    /// ASMGlobalRateLimiter's rules.
    global: global::GlobalLimits,
    /// The workers the limits' live state is made for.
    workers: usize,
}

impl LocalLimits {
    /// The configs of every `ASMLocalRateLimiter` for a gateway in `namespace` whose
    /// `workloadSelector` selects `labels` (none selects every workload of the namespace).
    pub(super) fn new(set: &ConfigSet, opts: &CompileOptions, errors: &mut Vec<Diagnostic>) -> Self {
        let (labels, namespace) = (&opts.labels, opts.namespace.as_str());
        let mut rules = Vec::new();
        for r in &set.asm_local_rate_limiters {
            let selector = r.spec.workload_selector.as_ref();
            if !selects_gateway(r.spec.is_gateway, r.namespace(), selector, namespace, labels) {
                continue;
            }
            for (i, config) in r.spec.configs.iter().enumerate() {
                match rule(r, i, config) {
                    Ok(rule) => rules.push(rule),
                    Err((field, message)) => {
                        errors.push(r.diagnostic(Severity::Error, format!("spec.configs[{i}].{field}"), message))
                    }
                }
            }
        }
        let (filters, per_route, services) = envoy_filter::read(set, labels, namespace);
        let global = global::GlobalLimits::new(set, labels, namespace, errors);
        Self {
            rules,
            filters,
            per_route,
            services,
            limits: Vec::new(),
            by_key: HashMap::new(),
            global,
            workers: opts.workers,
        }
    }

    /// Puts the limits that apply to `route` (the `index`th of the virtual host `domain` of
    /// listener `port`) among its stages, where Envoy's chain runs the filter: after CORS and
    /// fault, before the router. Of ASM's configs, one naming the route wins over one for the
    /// whole virtual host, as Envoy's per-route config wins over the virtual host's; likewise
    /// for EnvoyFilter's, whose per-route config replaces the inserted filter's own.
    pub(super) fn apply(&mut self, port: u16, domain: &str, index: usize, route: &mut Route) {
        let Self { rules, filters, per_route, services, limits, by_key, global, workers } = self;
        global.apply(port, domain, route);
        let mut intern = |key: String, t: &Template, source: &str| {
            *by_key.entry(key).or_insert_with_key(|key| {
                limits.push(Arc::new(instantiate(t, key.clone(), source, *workers)));
                (limits.len() - 1) as RateLimitId
            })
        };
        if let Some(rule) = pick(rules, |r| &r.target, port, domain, route.name.as_deref()) {
            let key = format!("{} {domain}:{port} {}", rule.origin, rule.target.route.as_deref().unwrap_or("*"));
            let id = intern(key, &rule.limit, &rule.source);
            insert(route, RequestStage::LocalRateLimit(id, None));
        }
        // The patches reaching the route itself, and its virtual host, in order.
        let at: &Route = route;
        let reaching: [Vec<&envoy_filter::PerRoute>; 2] = [false, true]
            .map(|vh| per_route.iter().filter(|p| p.virtual_host == vh && p.reaches(port, domain, at)).collect());
        // The route's `rate_limits` of a filter's `stage`, else its virtual host's (Envoy's
        // `vh_rate_limits` OVERRIDE default); MERGE patches append to the list. Envoy's rate
        // limit filters read them only on a route that forwards (one with a route entry).
        let forwards = matches!(route.action, RouteAction::Forward(_));
        let actions = |stage: u32| {
            let [own, vhost] = &reaching;
            let own = actions::policy(own.iter().flat_map(|p| &p.rate_limits), stage);
            let policy = own.or_else(|| actions::policy(vhost.iter().flat_map(|p| &p.rate_limits), stage));
            policy.filter(|_| forwards).map(Arc::new)
        };
        if let Some(filter) = filters.iter().find(|f| f.on(port)) {
            // A later MERGE of the per-route config replaces an earlier one's.
            let last = |vh: usize| reaching[vh].iter().filter_map(|p| Some((p, p.limit.as_ref()?))).next_back();
            let (key, limit) = if let Some((p, limit)) = last(0) {
                let which = route.name.as_deref().map_or_else(|| format!("#{index}"), str::to_owned);
                (format!("{} {domain}:{port} {which}", p.origin), limit)
            } else if let Some((p, limit)) = last(1) {
                (format!("{} {domain}:{port}", p.origin), limit)
            } else {
                // The listener's own config: one bucket for every route of its connection manager.
                (format!("{} :{port}", filter.origin), &filter.limit)
            };
            if let Some(template) = &limit.template {
                let id = intern(key, template, &limit.source);
                let reads = limits[id as usize].reads_actions().then(|| actions(limit.stage)).flatten();
                insert(route, RequestStage::LocalRateLimit(id, reads));
            }
        }
        // Envoy's `ratelimit` filter asks its service only for a request with descriptors.
        if let Some(rls) = services.iter().find(|s| s.on(port)) {
            if let Some(actions) = actions(rls.stage) {
                insert(route, RequestStage::RateLimit(rls.service.clone(), actions));
            }
        }
    }

    /// The rate limit services inserted, for their counters.
    pub(super) fn services(&self) -> Vec<Arc<RateLimitService>> {
        self.services.iter().map(|s| s.service.clone()).collect()
    }

    /// The local limits, and the global ones.
    pub(super) fn finish(self) -> (Vec<Arc<LocalRateLimit>>, Vec<crate::snapshot::GlobalRateLimit>) {
        (self.limits, self.global.finish())
    }
}

/// Puts a rate limit stage among the route's after CORS, fault and the limits Envoy's chain
/// runs before it: the local limits come before the global ones (`local_ratelimit` before
/// `ratelimit`: ASM's counted in Redis, EnvoyFilter's asking a service), whichever is placed
/// first.
fn insert(route: &mut Route, stage: RequestStage) {
    let local = matches!(stage, RequestStage::LocalRateLimit(..));
    let stages = &route.policy.request;
    let at = stages.iter().position(|s| match s {
        RequestStage::Cors(_) | RequestStage::Fault(_) | RequestStage::LocalRateLimit(..) => false,
        RequestStage::GlobalRateLimit(_) | RequestStage::RateLimit(..) => local,
        _ => true,
    });
    let at = at.unwrap_or(stages.len());
    let mut with = Vec::with_capacity(stages.len() + 1);
    with.extend(stages[..at].iter().cloned());
    with.push(stage);
    with.extend(stages[at..].iter().cloned());
    route.policy.request = with.into();
}

fn instantiate(t: &Template, key: String, source: &str, workers: usize) -> LocalRateLimit {
    LocalRateLimit {
        key: key.into(),
        source: source.into(),
        stat_prefix: t.stat_prefix.clone(),
        token_bucket: t.token_bucket,
        filter_enabled: t.filter_enabled,
        filter_enforced: t.filter_enforced,
        descriptors: t.descriptors.clone().into(),
        always_consume_default_token_bucket: t.always_consume_default,
        per_connection: t.per_connection,
        status: t.status,
        body: t.body.clone(),
        response_headers: t.response_headers.clone(),
        live: LiveLimit::new(&t.token_bucket, &t.descriptors, workers, now()),
    }
}

type Fault = (String, String);

fn rule(r: &Resource<AsmLocalRateLimiter>, i: usize, config: &LocalRateLimiterConfig) -> Result<Rule, Fault> {
    let vhost = &config.match_.vhost;
    if vhost.name.is_empty() {
        return Err(("match.vhost.name".into(), "a virtual host name is required".into()));
    }
    let port = vhost_port(vhost)?;
    let route = match &vhost.route {
        Some(route) if !route.header_match.is_empty() => {
            return Err((
                "match.vhost.route.header_match".into(),
                "header_match is deprecated by ASM and not supported: use limit_overrides".into(),
            ))
        }
        Some(route) => route.name_match.clone().filter(|n| !n.is_empty()),
        None => None,
    };
    let token_bucket = bucket(&config.limit).map_err(|(f, m)| (format!("limit.{f}"), m))?;
    let mut descriptors = Vec::with_capacity(config.limit_overrides.len());
    for (j, o) in config.limit_overrides.iter().enumerate() {
        let at = |f: &str| format!("limit_overrides[{j}].{f}");
        let token_bucket = bucket(&o.limit).map_err(|(f, m)| (at(&format!("limit.{f}")), m))?;
        let matches = request_block(&o.request_match).map_err(|(f, m)| (at(&f), m))?;
        descriptors.push(Descriptor { matches: DescriptorMatch::Block(Box::new(matches)), token_bucket });
    }
    let limit = Template {
        token_bucket,
        descriptors,
        per_connection: config.limit.per_downstream_connection,
        body: config.limit.custom_response_body.as_deref().unwrap_or(LIMITED_BODY).into(),
        response_headers: config
            .limit
            .response_header_to_add
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase().into(), v.as_str().into()))
            .collect(),
        stat_prefix: Arc::from(ASM_STAT_PREFIX),
        filter_enabled: Fraction::ALL,
        filter_enforced: Fraction::ALL,
        status: 429,
        always_consume_default: false,
    };
    Ok(Rule {
        origin: format!("{} configs[{i}]", r.key()),
        target: Target { vhost: vhost.name.clone(), port, route },
        source: format!("{config:?}"),
        limit,
    })
}

/// `match.vhost.port`: none matches the virtual host on every port.
fn vhost_port(vhost: &VirtualHostMatch) -> Result<Option<u16>, Fault> {
    match vhost.port {
        None => Ok(None),
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|&p| p != 0)
            .map(Some)
            .ok_or_else(|| ("match.vhost.port".to_string(), format!("port {p} is not a port number (1-65535)"))),
    }
}

/// An override's `request_match` (every header and query matcher must hold) as one block;
/// the fault's field is relative to the override.
fn request_block(m: &RequestMatcher) -> Result<MatchBlock, Fault> {
    let mut block = MatchBlock::default();
    for (k, h) in m.header_match.iter().enumerate() {
        header(h, &mut block).map_err(|e| (format!("request_match.header_match[{k}]"), e))?;
    }
    for (k, q) in m.query_match.iter().enumerate() {
        let value = query_value(q).map_err(|e| (format!("request_match.query_match[{k}]"), e))?;
        block.query_params.push(QueryMatcher { name: q.name.as_str().into(), value });
    }
    Ok(block)
}

/// Of the rules for virtual host `domain` on `port`, the one naming the route wins over one
/// for the whole virtual host, as Envoy's per-route config wins over the virtual host's.
fn pick<'r, R>(
    rules: &'r [R],
    target: impl Fn(&R) -> &Target,
    port: u16,
    domain: &str,
    route: Option<&str>,
) -> Option<&'r R> {
    let applies = |r: &&R| {
        let t = target(r);
        t.vhost.eq_ignore_ascii_case(domain) && t.port.is_none_or(|p| p == port)
    };
    rules
        .iter()
        .filter(applies)
        .find(|r| target(r).route.is_some() && target(r).route.as_deref() == route)
        .or_else(|| rules.iter().filter(applies).find(|r| target(r).route.is_none()))
}

/// ASM's `quota` per `fill_interval`: a bucket of `quota` tokens refilled by `quota`.
fn bucket(limit: &LimitConfig) -> Result<TokenBucketConfig, Fault> {
    if limit.quota == 0 {
        return Err(("quota".into(), "quota must be at least 1".into()));
    }
    let fill_interval = limit.fill_interval.get();
    if fill_interval < MIN_FILL_INTERVAL {
        let message = format!("fill_interval {fill_interval:?} is under Envoy's minimum of 50ms");
        return Err(("fill_interval".into(), message));
    }
    Ok(TokenBucketConfig { max_tokens: limit.quota, tokens_per_fill: limit.quota, fill_interval })
}

/// One value matcher of Envoy's `HeaderMatcher`/`QueryParameterMatcher`: the single one set,
/// or presence when none is.
fn value(
    exact: Option<&str>,
    prefix: Option<&str>,
    suffix: Option<&str>,
    regex: Option<&str>,
    present: Option<bool>,
) -> Result<ValueMatcher, String> {
    let set = [exact.is_some(), prefix.is_some(), suffix.is_some(), regex.is_some(), present.is_some()];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err("set only one of exact_match, prefix_match, suffix_match, regex_match, present_match".into());
    }
    let bad_regex = |e: regex::Error| format!("invalid regex_match: {e}");
    Ok(match (exact, prefix, suffix, regex, present) {
        (Some(e), ..) => ValueMatcher::Value(StringMatcher::Exact(e.into())),
        (_, Some(p), ..) => ValueMatcher::Value(StringMatcher::Prefix(p.into())),
        (_, _, Some(s), ..) => {
            ValueMatcher::Value(StringMatcher::regex(&format!(".*{}", regex::escape(s))).map_err(bad_regex)?)
        }
        (_, _, _, Some(r), _) => ValueMatcher::Value(StringMatcher::regex(r).map_err(bad_regex)?),
        (_, _, _, _, Some(false)) => return Err("present_match: false matches nothing".into()),
        _ => ValueMatcher::Present,
    })
}

fn header(h: &AsmHeader, block: &mut MatchBlock) -> Result<(), String> {
    let value = value(
        h.exact_match.as_deref(),
        h.prefix_match.as_deref(),
        h.suffix_match.as_deref(),
        h.regex_match.as_deref(),
        h.present_match,
    )?;
    matcher(&h.name, value, h.invert_match, block)
}

/// A header matcher onto the block; Envoy's pseudo-headers match the request's path, method,
/// authority and scheme (`:path` without its query string: ASM's examples match it by prefix).
fn matcher(name: &str, value: ValueMatcher, invert: bool, block: &mut MatchBlock) -> Result<(), String> {
    let name = name.to_ascii_lowercase();
    let pseudo = match name.as_str() {
        ":path" => Some(&mut block.uri),
        ":method" => Some(&mut block.method),
        ":authority" | "host" => Some(&mut block.authority),
        ":scheme" => Some(&mut block.scheme),
        _ => None,
    };
    match (pseudo, value) {
        (None, value) => block.headers.push(HeaderMatcher { name: name.into(), value, invert }),
        (Some(_), _) if invert => return Err(format!("invert_match on {name} is not supported")),
        (Some(slot), ValueMatcher::Value(m)) => *slot = Some(m),
        // Every request has a path, method, authority and scheme.
        (Some(_), ValueMatcher::Present) => {}
    }
    Ok(())
}

fn query_value(q: &AsmQuery) -> Result<ValueMatcher, String> {
    value(
        q.exact_match.as_deref(),
        q.prefix_match.as_deref(),
        q.suffix_match.as_deref(),
        q.regex_match.as_deref(),
        q.present_match,
    )
}
