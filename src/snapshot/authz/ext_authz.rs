//! MeshConfig `extensionProviders` of the external authorization kinds, compiled as istiod's
//! `authz/builder/extauthz.go` configures Envoy's `ext_authz` filter: the authorization
//! server's cluster, the check request's headers, which of the answer's headers go where, and
//! what a failed check does.

use std::sync::Arc;
use std::time::Duration;

use super::Pattern;
use crate::config::mesh_config::{BodyInCheck, ExtAuthzHttp, ExtensionProvider};
use crate::snapshot::ClusterId;

/// istiod's `timeoutOrDefault`: a provider without `timeout` waits 600 s.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Envoy's `status_on_error` default: 403.
const DEFAULT_STATUS_ON_ERROR: u16 = 403;

/// One provider, as the request path uses it.
#[derive(Debug, Clone)]
pub struct ExtAuthz {
    pub name: Arc<str>,
    /// `outbound|PORT||SERVICE`; `None` when no ServiceEntry declares the service and port:
    /// every check then fails (Envoy's "no healthy upstream" for the check).
    pub cluster: Option<ClusterId>,
    pub timeout: Duration,
    pub fail_open: bool,
    pub status_on_error: u16,
    /// `includeRequestBodyInCheck`: the request body the check carries.
    pub body: Option<WithBody>,
    pub kind: Kind,
}

/// Envoy's `with_request_body` as istiod fills it from `includeRequestBodyInCheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithBody {
    /// `maxRequestBytes`: the most of the body buffered and sent.
    pub max: usize,
    /// `allowPartialMessage`: a longer body is checked by its first `max` bytes instead of
    /// refused with 413.
    pub partial: bool,
    /// `packAsBytes`: a gRPC check carries it as `raw_body` rather than `body`.
    pub raw: bool,
}

impl WithBody {
    fn of(b: Option<&BodyInCheck>) -> Option<WithBody> {
        b.map(|b| WithBody {
            max: b.max_request_bytes as usize,
            partial: b.allow_partial_message,
            raw: b.pack_as_bytes,
        })
    }
}

#[derive(Debug, Clone)]
pub enum Kind {
    Http(HttpService),
    /// `envoyExtAuthzGrpc`: envoy.service.auth.v3 `Authorization/Check` over HTTP/2, with this
    /// `:authority` (istiod's: the cluster name, `|` made `_.`).
    Grpc {
        authority: Box<str>,
    },
}

/// Envoy's `http_service` as istiod fills it.
#[derive(Debug, Clone, Default)]
pub struct HttpService {
    pub path_prefix: Box<str>,
    /// `includeRequestHeadersInCheck` (else the deprecated `includeHeadersInCheck`), beside the
    /// lines Envoy always sends.
    pub allowed_headers: Box<[Pattern]>,
    /// `includeAdditionalHeadersInCheck`, sorted by name as istiod writes them.
    pub headers_to_add: Box<[(Box<str>, Box<str>)]>,
    pub upstream_on_allow: Box<[Pattern]>,
    pub downstream_on_allow: Box<[Pattern]>,
    /// Empty: every line of the denial goes to the client, as Envoy's `allowed_client_headers`
    /// unset does.
    pub downstream_on_deny: Box<[Pattern]>,
}

impl ExtAuthz {
    /// The provider `p` (an `envoyExtAuthzHttp` one; `None` for the other kinds) reaching its
    /// service through `cluster`.
    pub fn compile(p: &ExtensionProvider, cluster: Option<ClusterId>) -> Option<ExtAuthz> {
        if let Some(g) = &p.envoy_ext_authz_grpc {
            let (host, port) = Self::service(p)?;
            return Some(ExtAuthz {
                name: p.name.as_str().into(),
                cluster,
                timeout: g.timeout.map_or(DEFAULT_TIMEOUT, |t| t.get()),
                fail_open: g.fail_open,
                status_on_error: status_on_error(g.status_on_error.as_deref()),
                body: WithBody::of(g.include_request_body_in_check.as_ref()),
                kind: Kind::Grpc { authority: format!("outbound_.{port}_._.{host}").into() },
            });
        }
        let h: &ExtAuthzHttp = p.envoy_ext_authz_http.as_ref()?;
        let request_headers = if h.include_request_headers_in_check.is_empty() {
            &h.include_headers_in_check
        } else {
            &h.include_request_headers_in_check
        };
        let service = HttpService {
            path_prefix: h.path_prefix.as_deref().unwrap_or_default().into(),
            allowed_headers: header_patterns(request_headers),
            headers_to_add: h
                .include_additional_headers_in_check
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase().into(), v.as_str().into()))
                .collect(),
            upstream_on_allow: header_patterns(&h.headers_to_upstream_on_allow),
            downstream_on_allow: header_patterns(&h.headers_to_downstream_on_allow),
            downstream_on_deny: header_patterns(&h.headers_to_downstream_on_deny),
        };
        Some(ExtAuthz {
            name: p.name.as_str().into(),
            cluster,
            timeout: h.timeout.map_or(DEFAULT_TIMEOUT, |t| t.get()),
            fail_open: h.fail_open,
            status_on_error: status_on_error(h.status_on_error.as_deref()),
            body: WithBody::of(h.include_request_body_in_check.as_ref()),
            kind: Kind::Http(service),
        })
    }

    /// The provider's `service` and `port`, the service without the optional `NAMESPACE/`.
    pub fn service(p: &ExtensionProvider) -> Option<(&str, u16)> {
        let (service, port) = match (&p.envoy_ext_authz_http, &p.envoy_ext_authz_grpc) {
            (Some(h), _) => (&h.service, h.port),
            (None, Some(g)) => (&g.service, g.port),
            (None, None) => return None,
        };
        let host = service.rsplit_once('/').map_or(service.as_str(), |(_, host)| host);
        Some((host, u16::try_from(port).ok()?))
    }
}

fn status_on_error(s: Option<&str>) -> u16 {
    s.and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_STATUS_ON_ERROR)
}

/// istiod's `generateHeaders`: `*x` a suffix, `x*` a prefix, else the exact name, all
/// case-insensitive.
fn header_patterns(names: &[String]) -> Box<[Pattern]> {
    names
        .iter()
        .map(|n| {
            if let Some(suffix) = n.strip_prefix('*') {
                Pattern::SuffixIgnoreCase(suffix.into())
            } else if let Some(prefix) = n.strip_suffix('*') {
                Pattern::PrefixIgnoreCase(prefix.into())
            } else {
                Pattern::ExactIgnoreCase(n.as_str().into())
            }
        })
        .collect()
}

/// Whether a header `name` is one of `patterns`.
pub fn listed(patterns: &[Pattern], name: &str) -> bool {
    patterns.iter().any(|p| p.matches_str(name))
}
