//! The gateway's JWT authentication, compiled from the RequestAuthentications that apply to it:
//! one provider per `jwtRules` entry, as istiod turns each into a jwt_authn provider, with the
//! key set it verifies with.

use std::sync::Arc;
use std::time::Duration;

use crate::config::jwks::Jwks;

/// Envoy's jwt_authn default `clock_skew_seconds` (istiod sets none).
pub const CLOCK_SKEW_SECS: u64 = 60;

/// istiod's default `timeout` of a `jwksUri` fetch.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Every provider of the gateway; a request is checked against them before routing.
#[derive(Debug)]
pub struct JwtAuthn {
    pub providers: Box<[Provider]>,
    /// Every provider's `outputPayloadToHeader` and `outputClaimToHeaders` names: removed from
    /// every request, so that a client cannot send an identity of its own (Envoy's
    /// `sanitizePayloadHeaders`).
    pub sanitize: Box<[Box<str>]>,
}

/// One `jwtRules` entry.
#[derive(Debug)]
pub struct Provider {
    pub issuer: Box<str>,
    /// Empty: any audience.
    pub audiences: Box<[Box<str>]>,
    /// Where its token is looked for, in order; Envoy's defaults when the rule names none.
    pub locations: Box<[Location]>,
    /// The keys, `None` while a `jwksUri` was never fetched (every token then fails).
    pub keys: Option<Arc<Jwks>>,
    /// Where the keys come from when fetched: an unknown `kid` asks for them again.
    pub source: Option<JwksSource>,
    /// `forwardOriginalToken`: keep the token's header (and query parameter) upstream.
    pub forward: bool,
    /// `outputPayloadToHeader`, lower-case.
    pub payload_header: Option<Box<str>>,
    /// `outputClaimToHeaders`.
    pub claim_headers: Box<[ClaimHeader]>,
}

/// One `outputClaimToHeaders` entry: (header, lower-case; claim path, split on `.`).
pub type ClaimHeader = (Box<str>, Box<[Box<str>]>);

/// Where a token is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A header (lower-case name); the token follows `prefix`, and a value without the
    /// prefix holds no token.
    Header { name: Box<str>, prefix: Box<str> },
    /// A query parameter.
    Param(Box<str>),
    /// A cookie.
    Cookie(Box<str>),
}

impl Location {
    /// Envoy's default locations: `Authorization: Bearer <token>`, then `?access_token=`.
    pub fn defaults() -> Box<[Location]> {
        Box::new([
            Location::Header { name: "authorization".into(), prefix: "Bearer ".into() },
            Location::Param("access_token".into()),
        ])
    }
}

/// A remote key set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwksSource {
    /// `jwksUri`; or, for a rule with neither `jwks` nor `jwksUri`, the issuer's OpenID
    /// discovery document, which names it (as istiod resolves such a rule).
    pub uri: Arc<str>,
    pub discovery: bool,
    pub timeout: Duration,
}
