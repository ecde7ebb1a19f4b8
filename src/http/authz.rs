//! The AuthorizationPolicy stage of a request: what the compiled policies
//! ([`crate::snapshot::authz`]) see of it, and Envoy's RBAC answer when they deny it.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::local::Answer;
use super::peer::Peer;
use crate::percore::access_log::{self, Record};
use crate::snapshot::authz::ext_authz::ExtAuthz;
use crate::snapshot::authz::{Authz, Decision, HttpRequest, Request};
use crate::snapshot::RequestInfo;
use crate::stats::RbacCount;

/// Response code details of a request the RBAC filter denied when no ALLOW policy matched;
/// a DENY rule's name replaces `none` in the access log ([`Record::rbac_denied`]).
pub(super) const RBAC_DENIED: &str = access_log::RBAC_DENIED;

/// Envoy's RBAC filter's local reply body.
const DENIED_BODY: &[u8] = b"RBAC: access denied";

/// What the stage decided for the plan.
pub(super) enum Outcome<'s> {
    /// On to routing; with the provider a matching CUSTOM policy asks.
    Allowed(Option<&'s Arc<ExtAuthz>>),
    /// Answer [`denied`].
    Denied,
}

/// Runs the port's policies on a request, as istiod's filters run in Envoy's chain: the CUSTOM
/// match (ext_authz, asked later by the session), then the AUDIT, DENY and ALLOW RBAC filters.
/// Counts into `count` what Envoy's filters count, and marks `log` (a DENY rule's name, the
/// AUDIT hint); nothing allocates on the way.
pub(super) fn run<'s>(
    authz: &'s Authz,
    req: &Request<'_>,
    count: &mut RbacCount,
    log: Option<&mut Record>,
) -> Outcome<'s> {
    let mut provider = None;
    if let Some(custom) = authz.custom(req) {
        match custom.provider.as_ref() {
            Some(p) => provider = Some(p),
            // A provider MeshConfig lacks: istiod builds a DENY filter of the policy's rules.
            None => {
                let rule = custom.policy.matching_rule(req).map(|r| &*r.name);
                *count = RbacCount { allowed: 0, denied: true };
                return deny(rule, log);
            }
        }
    }
    let verdict = authz.decide(req);
    *count = RbacCount { allowed: verdict.passed, denied: verdict.decision != Decision::Allow };
    let mut log = log;
    if let Some(r) = log.as_deref_mut() {
        r.access_log_hint = verdict.audit;
    }
    match verdict.decision {
        Decision::Allow => Outcome::Allowed(provider),
        Decision::Deny(rule) => deny(rule, log),
    }
}

fn deny<'s>(rule: Option<&str>, log: Option<&mut Record>) -> Outcome<'s> {
    tracing::debug!(policy = rule.unwrap_or("none"), "RBAC: access denied");
    if let (Some(r), Some(rule)) = (log, rule) {
        r.rbac_denied(rule);
    }
    Outcome::Denied
}

/// What the policies see of a request. `remote`: the derived client address
/// ([`crate::snapshot::authz::remote_ip`]); `jwt`: the verified token's payload, when
/// RequestAuthentication verified one.
pub(super) fn request<'a>(
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
