//! The plan of one request: route lookup, the route's actions, and either the upstream
//! request head, written while the parsed head is borrowed, or the gateway's own answer,
//! codec-neutral, for the session to encode.

use std::borrow::Cow;
use std::time::Duration;

use super::affinity;
use super::authz;
use super::codec::{RequestEdits, TryLines};
use super::compress::Accept;
use super::cors;
use super::exchange::{Extras, H2Request};
use super::ext_authz::Check;
use super::fault::{self, Injected};
use super::grpc;
use super::head::{ReqMeta, RequestView};
use super::headers::{self, Merged};
use super::jwt::{self, Authn};
use super::local::{self, Answer};
use super::mirror;
use super::normalize;
use super::peer::Peer;
use super::ratelimit::{self, rls};
use super::retry;
use super::rewrite;
use crate::config::proxy_config::ForwardClientCert;
use crate::percore::access_log::Record;
use crate::percore::jwt::JwtCore;
use crate::snapshot::authz::remote_ip;
use crate::snapshot::jwt::JwtAuthn;
use crate::snapshot::{
    ActionContext, Destination, FilterStage, HeaderEdits, Mirror, RateLimitDescriptor, RateLimitPolicy, RequestInfo,
    RequestStage, Route, RouteAction, RouteDecision, Snapshot, UpstreamProtocol,
};

#[cfg(test)]
mod tests;

/// Response code details of the gateway's own answers, as Envoy logs them.
pub(super) const NO_ROUTE: &str = "route_not_found";
/// A path `pathNormalization` cannot read (Envoy's details).
pub(super) const PATH_INVALID: &str = "path_normalization_failed";
/// A request for a host that another server of the connection's port serves (421).
pub(super) const MISDIRECTED: &str = "misdirected_request";
pub(super) const DIRECT: &str = "direct_response";
pub(super) const NO_UPSTREAM: &str = "no_healthy_upstream";
pub(super) const FAULT_ABORT: &str = "fault_filter_abort";
pub(super) const CORS_PREFLIGHT: &str = "cors_response";
pub(super) const LOCAL_RATE_LIMITED: &str = "local_rate_limited";

/// The route-level request edits of a route that sets none.
static NO_EDITS: HeaderEdits = HeaderEdits { set: Vec::new(), add: Vec::new(), remove: Vec::new() };

/// The routing outcome, decided while the head is borrowed. `A`: the gateway's own answer, an
/// [`Answer`] as planned (it may borrow the head), its status once the session encoded it.
pub(super) enum Disposition<'s, A> {
    /// The gateway answers; `close`: the connection ends after it whatever the request asked
    /// (the session adds its own reasons), and the answer says so.
    Local { answer: A, close: bool, details: &'static str },
    /// `out` holds the upstream request head.
    Forward { route: &'s Route, dest: &'s Destination, extras: Extras },
}

/// What the plan is handed besides the snapshot and the request: it does no I/O, draws only
/// from `random` (the worker's generator; fixed draws in tests), and reads the time only from
/// `clock` (for a route with a rate limit) and to check a token's times.
pub(super) struct Inputs<'a, R> {
    /// Mirrored requests carry `HOST-shadow` (`--mirror-shadow-suffix`).
    pub(super) mirror_shadow_suffix: bool,
    pub(super) random: R,
    /// [`crate::snapshot::now`]; a fixed instant in tests.
    pub(super) clock: fn() -> u64,
    /// This core's verified tokens and asks for key sets.
    pub(super) jwt: &'a JwtCore,
    /// The worker's id: its own reservoirs and counters in the shared rate limits.
    pub(super) worker: usize,
}

/// Routes the request and either returns the local answer or writes the upstream head into
/// `out`; also draws the route's faults.
pub(super) fn plan<'s: 'h, 'h, R: Fn() -> u32>(
    snap: &'s Snapshot,
    head: &'h impl RequestView,
    out: &mut Vec<u8>,
    peer: &Peer,
    inputs: &Inputs<'_, R>,
    log: Option<&mut Record>,
) -> (ReqMeta, Disposition<'s, Answer<'h>>, Injected, Option<Check>, Option<rls::Call>) {
    let (mut check, mut call) = (None, None);
    let (meta, planned, fault) = decide(snap, head, out, peer, inputs, log, &mut check, &mut call);
    // Envoy's connection manager makes every local reply to a gRPC request a gRPC answer,
    // whichever filter gave it.
    let planned = match planned {
        Disposition::Local { answer, close, details } if meta.grpc => {
            Disposition::Local { answer: answer.grpc(None), close, details }
        }
        planned => planned,
    };
    (meta, planned, fault, check, call)
}

/// [`plan`] before the gRPC form of its local answers. `check`: the external authorization a
/// CUSTOM policy asks for; it stays set whatever the later stages decide, since Envoy's
/// ext_authz filter runs before them and its denial is the one the client sees. `call`: the
/// rate limit service's, for a forwarded request whose route's actions wrote descriptors.
#[allow(clippy::too_many_arguments)]
fn decide<'s: 'h, 'h, R: Fn() -> u32>(
    snap: &'s Snapshot,
    head: &'h impl RequestView,
    out: &mut Vec<u8>,
    peer: &Peer,
    inputs: &Inputs<'_, R>,
    mut log: Option<&mut Record>,
    check: &mut Option<Check>,
    call: &mut Option<rls::Call>,
) -> (ReqMeta, Disposition<'s, Answer<'h>>, Injected) {
    let random = &inputs.random;
    // Envoy's connection manager gives every request its id before routing, so the access log
    // shows one for the gateway's own answers too; a client's own is replaced (see `Peer`).
    let request_id = RequestId::new(random(), random(), random(), random());
    let mut meta = head.meta();
    let scheme = if peer.tls.is_some() { "https" } else { "http" };
    let info = head.info(scheme);
    // MeshConfig `pathNormalization`, before routing and policy; the upstream receives the
    // normalized path. Allocates only for a path not already normal.
    let normalized = match normalize::path(info.path, snap.path_normalization) {
        Ok(n) => n,
        Err(normalize::Invalid) => {
            let plan = Disposition::Local { answer: local::bad_request(), close: false, details: PATH_INVALID };
            return (meta, plan, Injected::default());
        }
    };
    // `sent` keeps the head's lifetime for what answers borrow (CORS lines); it differs from
    // `info` in the path alone.
    let sent = info;
    let info = RequestInfo { path: normalized.as_deref().unwrap_or(sent.path), ..sent };
    // A scan of the request's lines: gRPC changes its answers, timeout and retries.
    meta.grpc = grpc::is_grpc(info.header("content-type"));
    // The client as Envoy derives it (`numTrustedProxies`); formatted anew only when it is not
    // the connection's client, which happens only behind trusted proxies.
    let remote = remote_ip(peer.conn.client.ip(), info.headers, snap.num_trusted_proxies);
    let remote_text: Cow<'_, str> =
        if remote == peer.conn.client.ip() { Cow::Borrowed(&peer.ip) } else { Cow::Owned(remote.to_string()) };
    if let Some(r) = log.as_deref_mut() {
        r.begin(&info, head.target(), head.protocol(), peer, remote, request_id.as_str());
    }
    out.clear();
    let Some(listener) = snap.listener(peer.conn.listener_port) else {
        // The port was removed by a reload while this connection lived.
        let plan = Disposition::Local { answer: local::not_found(), close: true, details: NO_ROUTE };
        return (meta, plan, Injected::default());
    };
    // The gateway's own filters run before routing, as Envoy's run ahead of the router: a
    // refused token gets its 401, and a request the policies deny its 403, whether or not a
    // route would match. `authn` is what a later
    // stage (AuthorizationPolicy's `request.auth.*`) reads: a verified token's claims.
    let mut authn: Option<(&'s JwtAuthn, Authn<'s>)> = None;
    for filter in snap.filters.iter() {
        match filter {
            FilterStage::Jwt(filter) => match jwt::authenticate(filter, &info, inputs.jwt, snap.generation) {
                Authn::Denied(failure) => {
                    let answer = jwt::denied(failure, &info);
                    let plan = Disposition::Local { answer, close: false, details: failure.text().1 };
                    return (meta, plan, Injected::default());
                }
                outcome => authn = Some((filter, outcome)),
            },
            FilterStage::Authz(by_port) => {
                let Some(policies) = by_port.get(peer.conn.listener_port) else {
                    continue;
                };
                // `requestPrincipals` and `request.auth.*` read the token the JWT filter verified.
                let claims = match &authn {
                    Some((_, Authn::Verified { verified, .. })) => Some(&verified.claims),
                    _ => None,
                };
                let req = authz::request(&info, peer, remote, claims);
                match authz::run(policies, &req, &mut meta.rbac, log.as_deref_mut()) {
                    authz::Outcome::Allowed(provider) => {
                        if let Some(provider) = provider {
                            *check = Some(Check::new(provider, &info, head.target(), peer, head.protocol()));
                        }
                    }
                    authz::Outcome::Denied => {
                        let plan =
                            Disposition::Local { answer: authz::denied(), close: false, details: authz::RBAC_DENIED };
                        return (meta, plan, Injected::default());
                    }
                }
            }
        }
    }
    // HTTPS: the routes of the server the connection's SNI picks, in this request's snapshot.
    let server = peer.tls.as_ref().map(|tls| listener.server_for_sni(tls.sni.as_deref()));
    let routes = match server {
        None => Some(&listener.http_routes),
        Some(server) => server.map(|s| &s.routes),
    };
    let decision = routes.map_or(RouteDecision::NoVirtualHost, |r| r.route(&info));
    let (route, block) = match decision {
        // A client that coalesced this connection for a host that another of the port's servers
        // serves (a certificate shared by both, or a wildcard) is sent to a connection of its
        // own: 421 (RFC 9110 §15.5.20, RFC 9113 §9.1.2). Envoy answers 404 here, which a
        // browser takes as the page's answer.
        RouteDecision::NoVirtualHost
            if head.coalesces()
                && server.flatten().is_some_and(|current| {
                    listener.server_for_sni(Some(info.host)).is_some_and(|other| !std::ptr::eq(other, current))
                }) =>
        {
            let plan = Disposition::Local { answer: local::misdirected(), close: false, details: MISDIRECTED };
            return (meta, plan, Injected::default());
        }
        RouteDecision::NoVirtualHost | RouteDecision::NoRoute(_) => {
            let plan = Disposition::Local { answer: local::not_found(), close: false, details: NO_ROUTE };
            return (meta, plan, Injected::default());
        }
        RouteDecision::HttpsRedirect(_) => {
            let plan = Disposition::Local { answer: local::https_redirect(&info), close: false, details: DIRECT };
            return (meta, plan, Injected::default());
        }
        RouteDecision::Matched { route, block, .. } => (route, block),
    };
    // The route's request stages, in Envoy's filter order (CORS answers preflights before the
    // fault filter sees them); what they set for upstream waits for the router below.
    let mut fault = Injected::default();
    let mut cors_lines = Vec::new();
    let (mut rewrite, mut route_headers, mut mirrors) = (None, &NO_EDITS, &[][..]);
    let (mut accept, mut drop_accept_encoding) = (Accept::default(), false);
    let mut rate_limit = None;
    for stage in route.policy.request.iter() {
        match stage {
            RequestStage::Cors(c) => match cors::preflight(c, &sent) {
                cors::Preflight::Answer(lines) => {
                    let answer = Answer { headers: lines, ..Answer::simple(200, b"") };
                    let plan = Disposition::Local { answer, close: false, details: CORS_PREFLIGHT };
                    return (meta, plan, Injected::default());
                }
                // Envoy's CORS filter also sees the gateway's own answers: an allowed Origin
                // gets its lines.
                cors::Preflight::NotPreflight | cors::Preflight::Forward => {
                    cors_lines = cors::response_headers(c, &sent);
                }
            },
            RequestStage::Fault(f) => fault = fault::inject(f, random(), random()),
            // Envoy's fault filter answers an abort before the rate limit filter sees the
            // request: no token is taken for it.
            RequestStage::LocalRateLimit(id, actions) if fault.abort.is_none() => {
                let limit = snap.local_rate_limit(*id);
                // Before the router picks among weighted destinations, only a route's single
                // one is its cluster.
                let single = match &route.action {
                    RouteAction::Forward(d) if d.destinations.len() == 1 => d.destinations[0].cluster,
                    _ => None,
                };
                let written = actions.as_ref().map(|a| descriptors(snap, a, &info, &remote_text, single));
                let written = written.as_deref().unwrap_or_default();
                if ratelimit::limited(limit, &info, written, &peer.buckets, (inputs.worker, (inputs.clock)()), random) {
                    let answer = ratelimit::answer(limit, meta.is_head);
                    let plan = Disposition::Local { answer, close: false, details: LOCAL_RATE_LIMITED };
                    return (meta, plan, fault);
                }
            }
            RequestStage::LocalRateLimit(..) => {}
            RequestStage::GlobalRateLimit(id) if fault.abort.is_none() => {
                meta.global_limit = snap.global_rate_limit(*id).pick(&info).map(|w| (*id, w));
            }
            RequestStage::GlobalRateLimit(_) => {}
            // Asked once the router has picked the cluster `destination_cluster` names.
            RequestStage::RateLimit(service, actions) if fault.abort.is_none() => rate_limit = Some((service, actions)),
            RequestStage::RateLimit(..) => {}
            RequestStage::Rewrite(r) => rewrite = Some(r),
            RequestStage::RequestHeaders(edits) => route_headers = edits,
            RequestStage::Mirror(m) => mirrors = m,
            RequestStage::Compress(c) => {
                accept = Accept::parse(info.header("accept-encoding"));
                drop_accept_encoding = c.remove_accept_encoding;
            }
        }
    }
    let response_headers = || headers::local(&route.policy.response, &cors_lines);
    let plan = match &route.action {
        RouteAction::DirectResponse { status, body } => {
            let answer = Answer { status: *status, headers: response_headers(), body, omit_body: meta.is_head };
            Disposition::Local { answer, close: false, details: DIRECT }
        }
        RouteAction::Redirect(r) => {
            let answer = local::redirect(r, &info, peer.conn.listener_port, response_headers());
            Disposition::Local { answer, close: false, details: DIRECT }
        }
        RouteAction::Forward(dests) => match dests.pick(random()) {
            Some(dest) => {
                // Envoy's router hashes the downstream remote address its connection manager
                // derived (port 0 when taken from `x-forwarded-for`).
                let remote_addr = if remote == peer.conn.client.ip() {
                    peer.conn.client
                } else {
                    std::net::SocketAddr::new(remote, 0)
                };
                let affinity = dest
                    .cluster
                    .map(|c| affinity::request_affinity(snap.cluster(c), &info, remote_addr))
                    .unwrap_or_default();
                meta.affinity = affinity.hash;
                let path = rewrite.and_then(|r| rewrite::path(r, block, &info)).or_else(|| {
                    normalized.as_ref().map(|p| match info.query {
                        Some(q) => format!("{p}?{q}"),
                        None => p.clone(),
                    })
                });
                // JWT's upstream edits come first: the route's own edits act on them.
                let jwt = authn.as_ref().and_then(|(filter, outcome)| jwt::Upstream::new(filter, outcome));
                let path = match jwt.as_ref().and_then(|j| j.strip_param) {
                    Some(name) => jwt::strip_param(path.as_deref(), &info, name),
                    None => path,
                };
                // A gRPC request's `grpc-timeout` is its timeout, as istiod configures gateway routes.
                let grpc_timeout = meta.grpc.then(|| info.header("grpc-timeout")).flatten();
                let timeout = grpc::request_timeout(route.policy.timeout, grpc_timeout);
                let try_lines = TryLines {
                    attempt: Some(1),
                    expected_timeout_ms: retry::expected_timeout_ms(
                        timeout,
                        route.policy.retries.per_try_timeout,
                        Duration::ZERO,
                    ),
                    grpc_timeout: meta.grpc,
                };
                // The proxy answers `100-continue` itself; the try lines say `grpc-timeout` anew;
                // a compressor may keep the upstream from compressing (`remove_accept_encoding_header`).
                let mut dropped = [""; 3];
                let mut n = 0;
                for (name, drop) in [
                    ("expect", head.expects_continue()),
                    ("grpc-timeout", try_lines.writes_grpc_timeout()),
                    ("accept-encoding", drop_accept_encoding),
                ] {
                    if drop {
                        dropped[n] = name;
                        n += 1;
                    }
                }
                let base_remove = &dropped[..n];
                let levels = [&dest.headers.request, route_headers];
                // Nothing to merge on most routes: no allocation then. JWT's edits (a verified
                // token's lines, output headers every request loses) need the merged lists.
                let merged = match jwt {
                    Some(j) => {
                        let remove = base_remove.iter().copied().chain(j.remove).collect();
                        Some(Merged { remove, add: j.add, authority: None, compress: None }.then(&levels))
                    }
                    None => levels.iter().any(|l| !l.is_empty()).then(|| Merged::new(base_remove, &levels)),
                };
                let (add, remove, header_authority) = match &merged {
                    Some(m) => (&m.add[..], &m.remove[..], m.authority),
                    None => (&[][..], base_remove, None),
                };
                // `rewrite.authority` wins over a `host` set in `headers`, as istiod orders them.
                let authority = rewrite.and_then(|r| r.authority.as_deref()).or(header_authority);
                let (xfcc, keep_client_cert) = client_cert(snap.forward_client_cert, peer);
                let edits = RequestEdits {
                    path: path.as_deref(),
                    authority,
                    x_forwarded_proto: scheme,
                    keep_client_proto: snap.num_trusted_proxies > 0,
                    x_forwarded_for_append: &peer.ip,
                    request_id: Some(request_id.as_bytes()),
                    x_envoy_external_address: Some(&remote_text),
                    x_forwarded_client_cert: xfcc,
                    keep_client_cert,
                    add,
                    remove,
                    keep_alive: true,
                    allow_upgrade: head.upgrade(),
                    try_lines,
                };
                head.write_upstream(out, &edits);
                // An HTTP/2 upstream takes an HTTP/2 client's fields as they came, edited.
                let h2 = dest
                    .cluster
                    .map(|c| &snap.cluster(c).policy)
                    .filter(|p| p.upstream_protocol != UpstreamProtocol::Http1)
                    .and_then(|p| head.upstream_h2(&edits, p.tls.is_some()))
                    .map(|(request, framing)| Box::new(H2Request { request, head_len: out.len(), framing }));
                let extras = Extras {
                    cors: cors_lines.iter().map(|(n, v)| (*n, v.to_string())).collect(),
                    mirrors: if head.upgrade() {
                        Vec::new()
                    } else {
                        mirror_copies(mirrors, head, info.host, &edits, inputs)
                    },
                    set_cookie: affinity.set_cookie,
                    try_lines,
                    timeout,
                    accept,
                    on_allow: Vec::new(),
                    h2,
                };
                if let Some(r) = log {
                    r.forwarded(route.name.as_deref());
                }
                *call = rate_limit
                    .and_then(|(s, a)| rls::Call::new(s, descriptors(snap, a, &info, &remote_text, dest.cluster)));
                Disposition::Forward { route, dest, extras }
            }
            None => Disposition::Local { answer: Answer::simple(503, b""), close: false, details: NO_UPSTREAM },
        },
    };
    (meta, plan, fault)
}

/// The descriptors `actions` write for the request (`cluster`: the route's, when known).
/// Allocates: only routes with `rate_limits` read by a rate limit filter come here.
fn descriptors(
    snap: &Snapshot,
    actions: &RateLimitPolicy,
    info: &RequestInfo<'_>,
    remote: &str,
    cluster: Option<crate::snapshot::ClusterId>,
) -> Vec<RateLimitDescriptor> {
    // istiod names a gateway's node cluster `WORKLOAD.NAMESPACE`.
    let source = format!("{}.{}", snap.source_workload, snap.source_namespace);
    let cx =
        ActionContext { remote, destination_cluster: cluster.map(|c| &*snap.cluster(c).name), source_cluster: &source };
    actions.descriptors(info, &cx)
}

/// The heads of this request's mirror copies, one per mirror drawn: the upstream head as
/// sent, with `connection: close` (and `HOST-shadow` with `--mirror-shadow-suffix`).
fn mirror_copies(
    mirrors: &[Mirror],
    head: &impl RequestView,
    host: &str,
    edits: &RequestEdits<'_>,
    inputs: &Inputs<'_, impl Fn() -> u32>,
) -> Vec<mirror::Copy> {
    let mut copies = Vec::new();
    for m in mirrors {
        let Some(cluster) = m.destination.cluster else {
            continue;
        };
        if !fault::drawn(m.percent, (inputs.random)()) {
            continue;
        }
        let shadow = inputs.mirror_shadow_suffix.then(|| mirror::shadow_host(edits.authority.unwrap_or(host)));
        let edits = RequestEdits { authority: shadow.as_deref().or(edits.authority), keep_alive: false, ..*edits };
        let mut bytes = Vec::with_capacity(1024);
        head.write_upstream(&mut bytes, &edits);
        copies.push(mirror::Copy { cluster, bytes });
    }
    copies
}

/// A UUID v4 request id formatted on the stack.
struct RequestId([u8; 36]);

impl RequestId {
    fn new(a: u32, b: u32, c: u32, d: u32) -> Self {
        let mut bytes = [0u8; 16];
        for (i, w) in [a, b, c, d].into_iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        // The version and variant bits as a v4 UUID has them; the text as `uuid` writes it
        // (8-4-4-4-12 lowercase digits), eight digits at a time, at under half its cost.
        let v = uuid::Builder::from_random_bytes(bytes).into_uuid().as_u128();
        let (hi, lo) = ((v >> 64) as u64, v as u64);
        let mut out = [b'-'; 36];
        let (second, fourth) = (hex32(hi as u32), hex32((lo >> 32) as u32));
        out[..8].copy_from_slice(&hex32((hi >> 32) as u32));
        out[9..13].copy_from_slice(&second[..4]);
        out[14..18].copy_from_slice(&second[4..]);
        out[19..23].copy_from_slice(&fourth[..4]);
        out[24..28].copy_from_slice(&fourth[4..]);
        out[28..].copy_from_slice(&hex32(lo as u32));
        Self(out)
    }

    /// As the upstream head carries it.
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// As the access log keeps it.
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The 8 lowercase hex digits of `x`, most significant first: each nibble spread to a byte of
/// its own, then made its digit with neither a branch nor a table.
fn hex32(x: u32) -> [u8; 8] {
    let x = u64::from(x);
    let x = (x & 0xffff_0000) << 16 | (x & 0xffff);
    let x = (x & 0x0000_ff00_0000_ff00) << 8 | (x & 0x0000_00ff_0000_00ff);
    let x = (x & 0x00f0_00f0_00f0_00f0) << 4 | (x & 0x000f_000f_000f_000f);
    // Nibbles above 9 carry into bit 4 when 6 is added: those go 0x27 past '9' + 1, to 'a'.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 0x27).to_be_bytes()
}

/// `x-forwarded-client-cert` as Envoy's `forward_client_cert_details` mode writes it: (the
/// gateway's value to write, whether the client's lines are kept). The gateway's value exists
/// on an mTLS connection only; without one every mode but ALWAYS_FORWARD_ONLY drops the
/// client's. APPEND_FORWARD joins the gateway's to the client's value (the codec's writer).
fn client_cert(mode: ForwardClientCert, peer: &Peer) -> (Option<&str>, bool) {
    let ours = peer.tls.as_ref().and_then(|t| t.xfcc.as_deref());
    match mode {
        ForwardClientCert::AlwaysForwardOnly => (None, true),
        _ if ours.is_none() => (None, false),
        ForwardClientCert::ForwardOnly => (None, true),
        ForwardClientCert::Sanitize => (None, false),
        ForwardClientCert::AppendForward => (ours, true),
        ForwardClientCert::SanitizeSet => (ours, false),
    }
}
