//! A route's stages: what it does to a request before the router forwards or answers it, and
//! to the response, compiled once per route and run in order by the HTTP plan.

use std::sync::Arc;

use super::authz::AuthzByPort;
use super::jwt::JwtAuthn;
use super::{
    Compression, Cors, Fault, GlobalLimitId, HeaderEdits, Mirror, RateLimitId, RateLimitPolicy, RateLimitService,
    Rewrite,
};

/// One of the gateway's own HTTP filters: what every request of every HTTP server meets before
/// routing, as istiod puts its authentication and authorization filters ahead of the router in
/// every gateway listener's filter chain (so a host with no route gets their answer, not 404).
#[derive(Debug, Clone)]
pub enum FilterStage {
    /// RequestAuthentication: a token found is verified, a bad one answered 401 (403 for an
    /// audience not allowed); a verified one's payload is the request's identity.
    Jwt(Arc<JwtAuthn>),
    /// AuthorizationPolicy, by listener port: CUSTOM, AUDIT, DENY, ALLOW in Envoy's order; a
    /// denied request is answered 403 (`RBAC: access denied`), routed or not.
    Authz(AuthzByPort),
}

/// One step of a route's request path, in the order Envoy's filter chain runs them as istiod
/// builds it (after the [`FilterStage`]s): CORS, then fault, then a local rate limit (inserted
/// before the router, as ASM and Istio's rate-limit task patch it in), then the router's
/// per-route edits (rewrite, header edits,
/// mirrors). The plan runs a route's stages in order with one `match`; a stage may answer the
/// request itself (a CORS preflight), decide something the session acts on (a fault's delay
/// and abort), or edit what goes upstream. Redirects, direct responses and forwarding stay
/// the route's [`RouteAction`](super::RouteAction): the router's own choice, as in Envoy.
///
/// Later policies (rate limits, compression) are new variants here, placed
/// where Envoy's filter chain runs them, never branches in the plan or the exchange.
#[derive(Debug, Clone)]
pub enum RequestStage {
    /// `corsPolicy`: answers a preflight locally; otherwise the lines for an allowed origin go
    /// on the response through [`ResponseStage::Cors`].
    Cors(Cors),
    /// `fault`: a delay and an abort, each drawn per request.
    Fault(Fault),
    /// Envoy's `local_ratelimit` on this route: the limit (in
    /// [`Snapshot::local_rate_limits`](super::Snapshot::local_rate_limits)) takes a token or
    /// answers 429; the route's `rate_limits`, when the limit has descriptors matched by
    /// entries, write the request's descriptors.
    LocalRateLimit(RateLimitId, Option<Arc<RateLimitPolicy>>),
    /// Envoy's `ratelimit` filter on this route, after the local one: the descriptors the
    /// route's `rate_limits` write are sent to the rate limit service, which may answer 429.
    RateLimit(Arc<RateLimitService>, Arc<RateLimitPolicy>),
    /// Envoy's `ratelimit` filter, after the local one (ASM's `ASMGlobalRateLimiter`): the
    /// limit (in [`Snapshot::global_rate_limits`](super::Snapshot::global_rate_limits)) counts
    /// the request in Redis, which the session asks once the plan is made.
    GlobalRateLimit(GlobalLimitId),
    /// `rewrite`: the path and authority sent upstream.
    Rewrite(Rewrite),
    /// `headers.request`: the route's edits, applied after the chosen destination's.
    RequestHeaders(HeaderEdits),
    /// `mirror`/`mirrors`: copies drawn once the upstream head is written.
    Mirror(Box<[Mirror]>),
    /// The compressor filters' request half (an EnvoyFilter inserts them before the router):
    /// `accept-encoding` noted for the response, and removed when one says so.
    Compress(Arc<Compression>),
}

/// One step of a route's response path, in order, after the chosen destination's own edits.
#[derive(Debug, Clone)]
pub enum ResponseStage {
    /// `headers.response`: the route's edits.
    Headers(HeaderEdits),
    /// The CORS lines the request's [`RequestStage::Cors`] allowed, replacing any of the same
    /// name (Envoy's `setInline`).
    Cors,
    /// The compressor filters' response half, after the router's edits: `vary`, and a body
    /// compressed in the encoding the request's `accept-encoding` chose.
    Compress(Arc<Compression>),
}
