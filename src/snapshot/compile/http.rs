//! HTTP routes. A VirtualService's `http` list (delegates merged in) is compiled once into
//! templates, matchers and regexes built; a template is then instantiated per Gateway server,
//! where match-level `gateways`, `port` and `sourceLabels` are decided and destinations get
//! their clusters, as istiod's `BuildHTTPRoutesForVirtualService` does per listener.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;
use regex::Regex;

use crate::config::virtual_service::{
    Destination as ConfigDestination, HttpMatchRequest, HttpRoute, RedirectPortSelection, StringMatch,
};
use crate::snapshot::{
    AbortStatus, Destination, Fault, HeaderMatcher, HeaderOps, MatchBlock, Mirror, QueryMatcher, Redirect,
    RedirectPort, RequestStage, ResponseStage, Rewrite, Route, RouteAction, RoutePolicy, RouteSource, StringMatcher,
    ValueMatcher, WeightedDestinations,
};

use super::cluster::{Clusters, Ctx};
use crate::config::index::{expand_host, labels_subset, resolve_gateway_name};
use route_policy::{cors, header_ops, retry_policy};

mod delegate;
mod route_policy;

pub(super) use delegate::{merge_delegate, resolved};

/// A field path (relative to the route) and why it could not be compiled.
pub(super) type RouteError = (String, String);

/// One HTTP route of a VirtualService, compiled but not yet bound to a server.
pub(super) struct HttpTemplate {
    source: RouteSource,
    name: Option<Box<str>>,
    /// `None`: the route has no `match` and takes every request.
    blocks: Option<Vec<Block>>,
    action: Action,
    policy: RoutePolicy,
    mirrors: Vec<(Target, f64)>,
}

/// A match block and the conditions decided per server rather than per request.
struct Block {
    block: MatchBlock,
    /// istiod's `IsCatchAllRoute`: path `/` or `.*`, no header or query condition.
    catch_all: bool,
    port: Option<u32>,
    gateways: Vec<String>,
    source_labels: BTreeMap<String, String>,
    source_namespace: Option<String>,
}

enum Action {
    Forward(Vec<(Target, u32, HeaderOps)>),
    Redirect(Redirect),
    DirectResponse { status: u16, body: Bytes },
}

/// A destination before its cluster is known (that depends on the listener port and consumer).
struct Target {
    host: Arc<str>,
    subset: Option<Arc<str>>,
    port: Option<u16>,
}

/// The server a template is instantiated for.
pub(super) struct Instance<'c> {
    /// `namespace/name` of the server's Gateway.
    pub gateway: &'c str,
    pub labels: &'c BTreeMap<String, String>,
    pub ctx: Ctx<'c>,
}

/// A route ready for a virtual host, with istiod's catch-all flag for the final ordering.
#[derive(Clone)]
pub(super) struct CompiledRoute {
    pub route: Route,
    pub catch_all: bool,
}

/// Regexes built once per compile and shared by every route spelling the same pattern:
/// generated configs repeat patterns, and building a regex costs far more than cloning one.
#[derive(Default)]
pub(super) struct Regexes {
    full_match: HashMap<String, StringMatcher>,
    plain: HashMap<String, Regex>,
}

impl Regexes {
    /// `StringMatch.regex`: an RE2 full match.
    fn full_match(&mut self, pattern: &str) -> Result<StringMatcher, String> {
        if let Some(m) = self.full_match.get(pattern) {
            return Ok(m.clone());
        }
        let m = StringMatcher::regex(pattern).map_err(|e| e.to_string())?;
        self.full_match.insert(pattern.to_string(), m.clone());
        Ok(m)
    }

    /// A search regex, as Envoy's `regex_rewrite` uses it.
    fn plain(&mut self, pattern: &str) -> Result<Regex, String> {
        if let Some(re) = self.plain.get(pattern) {
            return Ok(re.clone());
        }
        let re = Regex::new(pattern).map_err(|e| e.to_string())?;
        self.plain.insert(pattern.to_string(), re.clone());
        Ok(re)
    }
}

/// Compiles one route; `namespace` resolves short names (a no-op on already resolved routes).
/// `Ok(None)` for a route without an action (validation refuses those; nothing to serve).
pub(super) fn compile_route(
    route: &HttpRoute,
    namespace: &str,
    source: RouteSource,
    regexes: &mut Regexes,
) -> Result<Option<HttpTemplate>, RouteError> {
    let blocks = if route.matches.is_empty() {
        None
    } else {
        let blocks = route
            .matches
            .iter()
            .enumerate()
            .map(|(i, m)| compile_block(m, namespace, regexes).map_err(|(f, e)| (format!("match[{i}].{f}"), e)));
        Some(blocks.collect::<Result<Vec<_>, _>>()?)
    };
    let action = if let Some(r) = &route.redirect {
        Action::Redirect(Redirect {
            uri: r.uri.as_deref().map(Box::from),
            authority: r.authority.as_deref().map(Box::from),
            port: match (r.port.and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0), r.derive_port) {
                (Some(p), _) => RedirectPort::Fixed(p),
                (None, Some(RedirectPortSelection::FromRequestPort)) => RedirectPort::FromRequestPort,
                (None, Some(RedirectPortSelection::FromProtocolDefault)) => RedirectPort::FromProtocolDefault,
                (None, None) => RedirectPort::Unchanged,
            },
            scheme: r.scheme.as_deref().map(Box::from),
            code: r.redirect_code.and_then(|c| u16::try_from(c).ok()).filter(|&c| c != 0).unwrap_or(301),
        })
    } else if let Some(d) = &route.direct_response {
        let body = match &d.body {
            Some(b) if b.bytes.is_some() => {
                // Proto JSON accepts standard or URL-safe base64, padded or not.
                let raw = b.bytes.as_deref().unwrap_or_default();
                let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
                let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
                let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
                let bytes = standard
                    .decode(raw)
                    .or_else(|_| url_safe.decode(raw))
                    .map_err(|e| ("directResponse.body.bytes".to_string(), format!("invalid base64: {e}")))?;
                Bytes::from(bytes)
            }
            Some(b) => Bytes::from(b.string.clone().unwrap_or_default()),
            None => Bytes::new(),
        };
        Action::DirectResponse { status: u16::try_from(d.status).unwrap_or(500), body }
    } else if !route.route.is_empty() {
        // A lone destination takes everything whatever its weight; among several, weight 0 (or
        // none) drops one, as istiod does.
        let single = route.route.len() == 1;
        let targets = route
            .route
            .iter()
            .filter_map(|r| {
                let weight = if single { 100 } else { u32::try_from(r.weight.unwrap_or(0)).ok().filter(|&w| w > 0)? };
                Some((
                    target(&r.destination, namespace),
                    weight,
                    r.headers.as_ref().map(header_ops).unwrap_or_default(),
                ))
            })
            .collect();
        Action::Forward(targets)
    } else {
        return Ok(None);
    };
    let mut mirrors = Vec::new();
    if let Some(m) = &route.mirror {
        let percent = route.mirror_percentage.map(|p| p.value).or(route.mirror_percent.map(f64::from)).unwrap_or(100.0);
        mirrors.push((target(m, namespace), percent));
    }
    for m in &route.mirrors {
        mirrors.push((target(&m.destination, namespace), m.percentage.map_or(100.0, |p| p.value)));
    }
    // An explicit 0% mirrors nothing: istiod leaves such a mirror out.
    mirrors.retain(|(_, p)| *p > 0.0);
    let rewrite = match &route.rewrite {
        Some(rw) => {
            let uri_regex = match &rw.uri_regex_rewrite {
                Some(rr) => {
                    let pattern = rr.pattern.as_deref().unwrap_or_default();
                    let re = regexes.plain(pattern).map_err(|e| ("rewrite.uriRegexRewrite.match".to_string(), e))?;
                    Some((re, envoy_substitution(rr.rewrite.as_deref().unwrap_or_default()).into()))
                }
                None => None,
            };
            Some(Rewrite {
                uri: rw.uri.as_deref().filter(|u| !u.is_empty()).map(Box::from),
                authority: rw.authority.as_deref().filter(|a| !a.is_empty()).map(Box::from),
                uri_regex,
            })
        }
        None => None,
    };
    let fault = route.fault.as_ref().and_then(|f| {
        let delay = f.delay.as_ref().and_then(|d| {
            let percent = d.percentage.map(|p| p.value).unwrap_or(f64::from(d.percent.unwrap_or(0)));
            Some((d.fixed_delay?.get(), percent.clamp(0.0, 100.0)))
        });
        let abort = f.abort.as_ref().and_then(|a| {
            // Validation refused a grpcStatus Istio does not name.
            let status = match a.http_status {
                Some(s) => AbortStatus::Http(u16::try_from(s).ok()?),
                None => AbortStatus::Grpc(a.grpc_code()?),
            };
            Some((status, a.percentage.map_or(0.0, |p| p.value).clamp(0.0, 100.0)))
        });
        (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
    });
    let cors = route.cors_policy.as_ref().map(|c| cors(c, regexes)).transpose()?;
    let headers = route.headers.as_ref().map(header_ops).unwrap_or_default();
    // Envoy's filter order as istiod builds the chain: CORS, fault, then the router's edits;
    // the mirror stage is added per server, where its destinations get their clusters.
    let request_stages = [
        cors.clone().map(RequestStage::Cors),
        fault.map(RequestStage::Fault),
        rewrite.map(RequestStage::Rewrite),
        Some(headers.request).filter(|h| !h.is_empty()).map(RequestStage::RequestHeaders),
    ];
    let response_stages = [
        Some(headers.response).filter(|h| !h.is_empty()).map(ResponseStage::Headers),
        cors.map(|_| ResponseStage::Cors),
    ];
    let policy = RoutePolicy {
        // `0s` is Envoy's "no timeout", which is also Istio's default.
        timeout: route.timeout.map(|t| t.get()).filter(|t| !t.is_zero()),
        retries: retry_policy(route.retries.as_ref()),
        request: request_stages.into_iter().flatten().collect(),
        response: response_stages.into_iter().flatten().collect(),
    };
    Ok(Some(HttpTemplate { source, name: route.name.as_deref().map(Box::from), blocks, action, policy, mirrors }))
}

fn target(d: &ConfigDestination, namespace: &str) -> Target {
    Target {
        host: expand_host(&d.host, namespace).into(),
        subset: d.subset.as_deref().filter(|s| !s.is_empty()).map(Arc::from),
        port: d.port.as_ref().and_then(|p| u16::try_from(p.number).ok()).filter(|&p| p != 0),
    }
}

/// Envoy's `regex_rewrite` substitution (`\1`, RE2 style) → the `regex` crate's (`${1}`), so
/// the data plane can hand it to `Regex::replace_all` as is.
fn envoy_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

fn string_matcher(m: &StringMatch, regexes: &mut Regexes) -> Result<Option<StringMatcher>, String> {
    Ok(if let Some(e) = &m.exact {
        Some(StringMatcher::Exact(e.as_str().into()))
    } else if let Some(p) = &m.prefix {
        Some(StringMatcher::Prefix(p.as_str().into()))
    } else if let Some(r) = &m.regex {
        Some(regexes.full_match(r)?)
    } else {
        None
    })
}

/// `{}` or regex `*` means "present" (istiod's `canBeConvertedToPresentMatch`).
fn value_matcher(m: &StringMatch, regexes: &mut Regexes) -> Result<ValueMatcher, String> {
    if m.regex.as_deref() == Some("*") {
        return Ok(ValueMatcher::Present);
    }
    Ok(string_matcher(m, regexes)?.map_or(ValueMatcher::Present, ValueMatcher::Value))
}

fn compile_block(m: &HttpMatchRequest, namespace: &str, regexes: &mut Regexes) -> Result<Block, RouteError> {
    let mut sm = |m: &Option<StringMatch>, field: &str| -> Result<Option<StringMatcher>, RouteError> {
        match m {
            Some(m) => string_matcher(m, regexes).map_err(|e| (field.to_string(), e)),
            None => Ok(None),
        }
    };
    let mut block = MatchBlock {
        name: m.name.as_deref().map(Box::from),
        uri: sm(&m.uri, "uri")?,
        ignore_uri_case: m.ignore_uri_case,
        scheme: sm(&m.scheme, "scheme")?,
        method: sm(&m.method, "method")?,
        authority: sm(&m.authority, "authority")?,
        headers: Vec::new(),
        query_params: Vec::new(),
    };
    for (invert, map, field) in [(false, &m.headers, "headers"), (true, &m.without_headers, "withoutHeaders")] {
        for (name, value) in map {
            let value = value_matcher(value, regexes).map_err(|e| (format!("{field}.{name}"), e))?;
            let name = name.to_ascii_lowercase();
            // Pseudo-headers are request attributes, not header lines in HTTP/1.1: Envoy's
            // `:authority` is the Host header; `:method`/`:scheme`/`:path` become the block's own
            // conditions when those are free (a second condition on them cannot be expressed).
            let name = if name == ":authority" { "host".to_string() } else { name };
            match (name.as_str(), invert, value) {
                (":method" | ":scheme" | ":path", false, ValueMatcher::Present) => {}
                (":method", false, ValueMatcher::Value(v)) if block.method.is_none() => block.method = Some(v),
                (":scheme", false, ValueMatcher::Value(v)) if block.scheme.is_none() => block.scheme = Some(v),
                (":path", false, ValueMatcher::Value(v)) if block.uri.is_none() && !block.ignore_uri_case => {
                    block.uri = Some(v)
                }
                (_, _, value) => block.headers.push(HeaderMatcher { name: name.into(), value, invert }),
            }
        }
    }
    for (name, value) in &m.query_params {
        let value = value_matcher(value, regexes).map_err(|e| (format!("queryParams.{name}"), e))?;
        block.query_params.push(QueryMatcher { name: name.as_str().into(), value });
    }
    let catch_all = m.uri.as_ref().is_none_or(|u| u.prefix.as_deref() == Some("/") || u.regex.as_deref() == Some(".*"))
        && m.headers.is_empty()
        && m.without_headers.is_empty()
        && m.query_params.is_empty()
        && m.method.is_none()
        && m.scheme.is_none()
        && m.authority.is_none();
    Ok(Block {
        block,
        catch_all,
        port: m.port.filter(|&p| p != 0),
        gateways: m.gateways.iter().map(|g| resolve_gateway_name(g, namespace)).collect(),
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone().filter(|s| !s.is_empty()),
    })
}

impl Block {
    /// istiod's `translateRoute` guards: the block's `port` must be the listener's, and its
    /// `gateways` must name this one; without gateways, `sourceLabels` must select this
    /// instance and `sourceNamespace` must be the consumer's (`sourceMatchHTTP`).
    fn applies(&self, inst: &Instance<'_>) -> bool {
        if self.port.is_some_and(|p| p != u32::from(inst.ctx.listener_port)) {
            return false;
        }
        if !self.gateways.is_empty() {
            return self.gateways.iter().any(|g| g == inst.gateway);
        }
        labels_subset(&self.source_labels, inst.labels)
            && self.source_namespace.as_deref().is_none_or(|ns| ns == inst.ctx.consumer_ns)
    }
}

/// The routes of one VirtualService for one server, in order. As istiod emits one Envoy route
/// per block and stops after the first catch-all, a route is split at its catch-all block so
/// that the catch-all alone can later move behind other VirtualServices' routes.
pub(super) fn instantiate(
    templates: &[HttpTemplate],
    inst: &Instance<'_>,
    clusters: &mut Clusters<'_>,
) -> Vec<CompiledRoute> {
    let mut out = Vec::new();
    for t in templates {
        let Some(blocks) = &t.blocks else {
            out.push(CompiledRoute { route: build(t, Vec::new(), inst, clusters), catch_all: true });
            break;
        };
        let mut kept = Vec::new();
        let mut catch_all = None;
        for b in blocks.iter().filter(|b| b.applies(inst)) {
            if b.catch_all {
                catch_all = Some(b.block.clone());
                break;
            }
            kept.push(b.block.clone());
        }
        if !kept.is_empty() {
            out.push(CompiledRoute { route: build(t, kept, inst, clusters), catch_all: false });
        }
        if let Some(block) = catch_all {
            out.push(CompiledRoute { route: build(t, vec![block], inst, clusters), catch_all: true });
            break;
        }
    }
    out
}

fn destination(
    t: &Target,
    weight: u32,
    headers: HeaderOps,
    inst: &Instance<'_>,
    clusters: &mut Clusters<'_>,
) -> Destination {
    let (port, cluster) = clusters.resolve(&t.host, t.subset.as_deref(), t.port, &inst.ctx);
    Destination { host: t.host.clone(), subset: t.subset.clone(), port, cluster, weight, headers }
}

fn build(t: &HttpTemplate, matches: Vec<MatchBlock>, inst: &Instance<'_>, clusters: &mut Clusters<'_>) -> Route {
    let action = match &t.action {
        Action::Forward(targets) => {
            let destinations: Vec<Destination> = targets
                .iter()
                .map(|(target, weight, headers)| destination(target, *weight, headers.clone(), inst, clusters))
                .collect();
            // Weights are relative (a destination gets weight/sum); validation keeps the sum within
            // u32, saturating only guards odd input.
            let total_weight = destinations.iter().fold(0u32, |t, d| t.saturating_add(d.weight));
            RouteAction::Forward(WeightedDestinations { destinations, total_weight })
        }
        Action::Redirect(r) => RouteAction::Redirect(r.clone()),
        Action::DirectResponse { status, body } => RouteAction::DirectResponse { status: *status, body: body.clone() },
    };
    let mirrors: Box<[Mirror]> = t
        .mirrors
        .iter()
        .map(|(target, percent)| Mirror {
            destination: destination(target, 0, HeaderOps::default(), inst, clusters),
            percent: percent.min(100.0),
        })
        .collect();
    let mut policy = t.policy.clone();
    // Mirrors are the router's, last.
    if !mirrors.is_empty() {
        policy.request = policy.request.iter().cloned().chain([RequestStage::Mirror(mirrors)]).collect();
    }
    Route { name: t.name.clone(), source: t.source.clone(), matches, action, policy }
}
