//! The AuthorizationPolicy stage of a request: what the compiled policies
//! ([`crate::snapshot::authz`]) see of it, and Envoy's RBAC answer when they deny it.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::local::Answer;
use super::peer::Peer;
use crate::snapshot::authz::{Authz, Custom, Decision, HttpRequest, Request};
use crate::snapshot::RequestInfo;

/// Response code details of a request the RBAC filter denied, as Envoy logs one no ALLOW
/// policy matched. (Envoy names the matched DENY rule in the brackets; Strait's details are
/// static strings, so a DENY match is logged with the same details.)
pub(super) const RBAC_DENIED: &str = "rbac_access_denied_matched_policy[none]";

/// Envoy's RBAC filter's local reply body.
const DENIED_BODY: &[u8] = b"RBAC: access denied";

/// `remote`: the derived client address ([`crate::snapshot::authz::remote_ip`]); `jwt`: the
/// verified token's payload, when RequestAuthentication verified one.
pub(super) fn decide<'s>(
    authz: &'s Authz,
    info: &RequestInfo<'_>,
    peer: &Peer,
    remote: IpAddr,
    jwt: Option<&Map<String, Value>>,
) -> Decision<'s> {
    authz.decide(&request(info, peer, remote, jwt))
}

/// The CUSTOM policy that matches the request, if any: its provider is asked before DENY and
/// ALLOW decide.
pub(super) fn custom<'s>(
    authz: &'s Authz,
    info: &RequestInfo<'_>,
    peer: &Peer,
    remote: IpAddr,
    jwt: Option<&Map<String, Value>>,
) -> Option<&'s Custom> {
    authz.custom(&request(info, peer, remote, jwt))
}

fn request<'a>(
    info: &RequestInfo<'a>,
    peer: &'a Peer,
    remote: IpAddr,
    jwt: Option<&'a Map<String, Value>>,
) -> Request<'a> {
    let tls = peer.tls.as_ref();
    Request {
        http: Some(HttpRequest { host: info.host, method: info.method, path: info.path, headers: info.headers }),
        port: peer.conn.listener_port,
        local: peer.conn.local.ip(),
        peer: peer.conn.peer.ip(),
        remote,
        sni: tls.and_then(|t| t.sni.as_deref()),
        peer_uri: tls.and_then(|t| t.peer_uri.as_deref()),
        jwt,
    }
}

/// Envoy's answer to a denied request: 403 `RBAC: access denied` (a gRPC request gets it as
/// `grpc-status: 7`, as every local reply, in the plan).
pub(super) fn denied() -> Answer<'static> {
    Answer::simple(403, DENIED_BODY)
}
