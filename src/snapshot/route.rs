//! Compiled routes: what a matched request does (forward, redirect, answer) and its policies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;
use regex::Regex;

use super::matcher::{MatchBlock, StringMatcher};
use super::stage::{RequestStage, ResponseStage};
use super::ClusterId;

/// Where a route came from, so /config_dump and logs can name the file and VirtualService.
#[derive(Debug, Clone)]
pub struct RouteSource {
    pub file: Arc<str>,
    pub document: usize,
    /// `namespace/name` of the VirtualService.
    pub virtual_service: Arc<str>,
    /// Index in the VirtualService's `http`/`tcp`/`tls` list.
    pub index: usize,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: Option<Box<str>>,
    pub source: RouteSource,
    /// OR'ed; empty means "match everything".
    pub matches: Vec<MatchBlock>,
    pub action: RouteAction,
    pub policy: RoutePolicy,
}

impl Route {
    /// The first block that holds, or `Some(None)` for a route without blocks.
    pub fn matches<'s>(&'s self, req: &super::RequestInfo<'_>) -> Option<Option<&'s MatchBlock>> {
        if self.matches.is_empty() {
            return Some(None);
        }
        self.matches.iter().find(|m| m.matches(req)).map(Some)
    }

    pub fn is_catch_all(&self) -> bool {
        self.matches.is_empty() || self.matches.iter().any(MatchBlock::is_catch_all)
    }
}

#[derive(Debug, Clone)]
pub enum RouteAction {
    Forward(WeightedDestinations),
    Redirect(Redirect),
    DirectResponse { status: u16, body: Bytes },
}

/// Weighted destinations with weight 0 already dropped; picking is a walk over ≤ a few entries.
#[derive(Debug, Clone)]
pub struct WeightedDestinations {
    pub destinations: Vec<Destination>,
    pub total_weight: u32,
}

impl WeightedDestinations {
    /// The destination for a uniformly drawn `draw` (any u32): weighted by `weight`.
    pub fn pick(&self, draw: u32) -> Option<&Destination> {
        if self.destinations.len() <= 1 || self.total_weight == 0 {
            return self.destinations.first();
        }
        let mut point = draw % self.total_weight;
        for d in &self.destinations {
            if point < d.weight {
                return Some(d);
            }
            point -= d.weight;
        }
        self.destinations.last()
    }
}

#[derive(Debug, Clone)]
pub struct Destination {
    /// FQDN the VirtualService named (short names expanded), for logs and metrics labels.
    pub host: Arc<str>,
    pub subset: Option<Arc<str>>,
    pub port: u16,
    /// `None` when nothing declares this host/port/subset (a dangling reference): Istio serves
    /// such a destination with 503.
    pub cluster: Option<ClusterId>,
    pub weight: u32,
    pub headers: HeaderOps,
}

/// Request and response header edits (`headers:` at route or destination level).
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    pub request: HeaderEdits,
    pub response: HeaderEdits,
}

#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    /// Lower-case names. `host` in request edits means the authority.
    pub set: Vec<(Box<str>, Box<str>)>,
    pub add: Vec<(Box<str>, Box<str>)>,
    pub remove: Vec<Box<str>>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub uri: Option<Box<str>>,
    pub authority: Option<Box<str>>,
    pub port: RedirectPort,
    pub scheme: Option<Box<str>>,
    pub code: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectPort {
    /// Keep whatever the Host header carried.
    Unchanged,
    Fixed(u16),
    /// `derivePort: FROM_PROTOCOL_DEFAULT`: 80 for http, 443 for https (omitted in Location).
    FromProtocolDefault,
    /// `derivePort: FROM_REQUEST_PORT`: the gateway listener's port.
    FromRequestPort,
}

/// Everything an HTTPRoute sets beside its action: what the exchange needs (timeout, retries)
/// and the route's stages, each in the order it runs. Fields the data plane does not act on
/// yet are still compiled, so nothing in the config is dropped silently.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicy {
    /// Whole-request timeout; Istio's default is none.
    pub timeout: Option<Duration>,
    pub retries: RetryPolicy,
    /// Run by the plan before the route's action.
    pub request: Box<[RequestStage]>,
    /// Run on every answer the route gives, forwarded or local.
    pub response: Box<[ResponseStage]>,
}

/// Each stage's settings, found by kind, for /config_dump and tests; the plan runs the stages
/// in order instead.
impl RoutePolicy {
    pub fn cors(&self) -> Option<&Cors> {
        self.request.iter().find_map(|s| if let RequestStage::Cors(c) = s { Some(c) } else { None })
    }

    pub fn fault(&self) -> Option<&Fault> {
        self.request.iter().find_map(|s| if let RequestStage::Fault(f) = s { Some(f) } else { None })
    }

    pub fn rewrite(&self) -> Option<&Rewrite> {
        self.request.iter().find_map(|s| if let RequestStage::Rewrite(r) = s { Some(r) } else { None })
    }

    pub fn mirrors(&self) -> &[Mirror] {
        self.request
            .iter()
            .find_map(|s| if let RequestStage::Mirror(m) = s { Some(&m[..]) } else { None })
            .unwrap_or(&[])
    }
}

#[derive(Debug, Clone)]
pub struct Rewrite {
    pub uri: Option<Box<str>>,
    pub authority: Option<Box<str>>,
    pub uri_regex: Option<(Regex, Box<str>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try (Istio's `attempts`); 0 disables.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub retry_on: RetryOn,
    pub retriable_status_codes: Vec<u16>,
    pub retry_remote_localities: bool,
}

impl Default for RetryPolicy {
    /// Istio ≥ 1.24's policy for a route that names none: 2 attempts, on connection-level
    /// failures only (no status code is retriable, so 503 and 500 are not retried).
    fn default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            retry_on: RetryOn {
                connect_failure: true,
                refused_stream: true,
                unavailable: true,
                cancelled: true,
                retriable_status_codes: true,
                ..RetryOn::default()
            },
            retriable_status_codes: Vec::new(),
            retry_remote_localities: false,
        }
    }
}

/// Envoy's retry_on conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn {
    pub server_error_5xx: bool,
    pub gateway_error: bool,
    pub reset: bool,
    pub connect_failure: bool,
    pub retriable_4xx: bool,
    pub refused_stream: bool,
    pub retriable_status_codes: bool,
    pub unavailable: bool,
    pub cancelled: bool,
    pub deadline_exceeded: bool,
    pub resource_exhausted: bool,
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// (delay, percent of requests 0..=100).
    pub delay: Option<(Duration, f64)>,
    /// (the answer, percent).
    pub abort: Option<(AbortStatus, f64)>,
}

/// What an aborted request is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortStatus {
    /// `httpStatus`.
    Http(u16),
    /// `grpcStatus`, by code: HTTP 200 carrying it (a gRPC request's answer says it in
    /// `grpc-status`), as Envoy's fault filter answers.
    Grpc(u8),
}

#[derive(Debug, Clone)]
pub struct Mirror {
    pub destination: Destination,
    /// 0..=100.
    pub percent: f64,
}

#[derive(Debug, Clone)]
pub struct Cors {
    pub allow_origins: Vec<StringMatcher>,
    /// Pre-joined with `,` as Envoy sends them.
    pub allow_methods: Option<Box<str>>,
    pub allow_headers: Option<Box<str>>,
    pub expose_headers: Option<Box<str>>,
    pub max_age: Option<Duration>,
    pub allow_credentials: Option<bool>,
    /// `unmatchedPreflights: FORWARD` (default) forwards an unmatched preflight upstream.
    pub forward_unmatched_preflights: bool,
}

/// A `tcp` route of a VirtualService, or a `tls` route (passthrough) when `sni_hosts` is set.
#[derive(Debug, Clone)]
pub struct L4Route {
    /// `namespace/virtual-service/tcp/INDEX` (or `tls`): the route's stat prefix.
    pub name: Arc<str>,
    pub source: RouteSource,
    /// OR'ed; empty means "match everything".
    pub matches: Vec<L4Match>,
    pub destinations: WeightedDestinations,
}

#[derive(Debug, Clone, Default)]
pub struct L4Match {
    /// TLS routes only: SNI patterns (exact or `*.suffix`).
    pub sni_hosts: Vec<Box<str>>,
    pub destination_subnets: Vec<IpNet>,
    pub source_subnet: Option<IpNet>,
}

impl L4Match {
    pub fn matches(&self, sni: Option<&str>, local: std::net::IpAddr, peer: std::net::IpAddr) -> bool {
        let sni_ok = self.sni_hosts.is_empty()
            || sni.is_some_and(|s| self.sni_hosts.iter().any(|p| super::hosts::pattern_covers(p, s)));
        sni_ok
            && (self.destination_subnets.is_empty() || self.destination_subnets.iter().any(|n| n.contains(&local)))
            && self.source_subnet.is_none_or(|n| n.contains(&peer))
    }
}

impl L4Route {
    pub fn matches(&self, sni: Option<&str>, local: std::net::IpAddr, peer: std::net::IpAddr) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(sni, local, peer))
    }
}
