//! AuthorizationPolicy compiled for one gateway port, as istiod builds Envoy's RBAC filters
//! (`pilot/pkg/security/authz/builder`, `model`): per policy its rules, each an OR of
//! permissions (`to`, with `destination.port`, `destination.ip`, `connection.sni` of `when`)
//! and an OR of principals (`from`, with the other `when` keys), each an AND of conditions,
//! each condition "one of `values`" and "none of `notValues`". The request path evaluates
//! CUSTOM (whether to ask the external authorization server), then DENY, then ALLOW; AUDIT
//! only marks.
//!
//! What cannot match where the policies run is compiled away (`destination.port` is known per
//! listener), so a request pays only for policies that can apply on its port. HTTP requests
//! meet the policies before routing, as Envoy's RBAC filters run ahead of the router for every
//! request of the listener, routed or not. Evaluation borrows the request and
//! allocates nothing, save for a header sent several times, whose values Envoy's matcher sees
//! joined by `,`.

mod compile;
pub mod ext_authz;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use regex::Regex;
use serde_json::{Map, Value};

pub use compile::{compile, Layer, Scope};

use ext_authz::ExtAuthz;

/// The policies that apply to one port, by action.
#[derive(Debug, Clone, Default)]
pub struct Authz {
    /// CUSTOM policies: when one matches, its provider is asked (Envoy's ext_authz filter,
    /// which istiod enables through a shadow RBAC filter built from these rules).
    pub custom: Box<[Custom]>,
    /// One policy per rule, in the order of the rules' names: Envoy's RBAC engine keeps its
    /// policies in a `std::map` and names the first that matches, so a request two DENY rules
    /// match is logged with the name that sorts first.
    pub deny: Box<[Policy]>,
    pub allow: Box<[Policy]>,
    pub audit: Box<[Policy]>,
    /// An ALLOW policy applies here (even one that can match nothing on this port): a request
    /// no ALLOW rule matches is denied.
    pub allow_applies: bool,
    /// A DENY (or AUDIT) policy applies here: istiod builds that RBAC filter, which counts
    /// every request it sees, matching or not.
    pub deny_applies: bool,
    pub audit_applies: bool,
}

/// The HTTP policies of each listener port (sorted by port), as one filter stage that runs
/// before routing.
#[derive(Debug, Clone, Default)]
pub struct AuthzByPort(pub Box<[(u16, Arc<Authz>)]>);

impl AuthzByPort {
    /// The policies that apply on `port`, if any.
    pub fn get(&self, port: u16) -> Option<&Authz> {
        self.0.binary_search_by_key(&port, |(p, _)| *p).ok().map(|i| &*self.0[i].1)
    }
}

/// A CUSTOM policy and the MeshConfig provider it names.
#[derive(Debug, Clone)]
pub struct Custom {
    pub policy: Policy,
    /// `None`: MeshConfig has no such provider; istiod then builds a DENY policy from the
    /// rules, so what they match is denied.
    pub provider: Option<Arc<ExtAuthz>>,
}

/// One policy: matches when any of its rules does.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `ns[NS]-policy[NAME]`, the prefix of istiod's RBAC policy names.
    pub name: Arc<str>,
    pub rules: Box<[Rule]>,
}

/// One rule: some permission and some principal match.
#[derive(Debug, Clone)]
pub struct Rule {
    /// istiod's RBAC policy name for it, `ns[NS]-policy[NAME]-rule[N]` (N counts every rule
    /// of the policy), which a DENY logs in its response code details.
    pub name: Arc<str>,
    pub permissions: Box<[Box<[Condition]>]>,
    pub principals: Box<[Box<[Condition]>]>,
}

/// One key of a rule: one of `any` matches (when there are any) and none of `none` does.
#[derive(Debug, Clone)]
pub struct Condition {
    pub attribute: Attribute,
    pub any: Box<[Pattern]>,
    pub none: Box<[Pattern]>,
}

/// What a condition reads of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Host,
    Method,
    Path,
    /// The listener port; compiled away on listeners, kept for the tests of the evaluator.
    Port,
    DestinationIp,
    Sni,
    /// The peer's address (`ipBlocks`, `source.ip`).
    SourceIp,
    /// The client address Strait derives ([`Request::remote`]): `remoteIpBlocks`, `remote.ip`.
    RemoteIp,
    /// The mTLS client certificate's SPIFFE ID, without `spiffe://`.
    Principal,
    /// The whole URI SAN, matched by a regex (`namespaces`, `serviceAccounts`).
    PrincipalUri,
    /// `iss/sub` of the verified JWT.
    RequestPrincipal,
    Audiences,
    Presenter,
    /// `request.auth.claims[a][b]`: a path into the JWT payload.
    Claim(Box<[Box<str>]>),
    Header(Box<str>),
}

/// Envoy's string matchers as istiod generates them from a policy's value.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// `*`: present and non-empty (istiod's `.+`, or a header's presence).
    Present,
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// Hosts: case-insensitive.
    ExactIgnoreCase(Box<str>),
    PrefixIgnoreCase(Box<str>),
    SuffixIgnoreCase(Box<str>),
    /// Path templates, namespaces and service accounts, as a whole-string regex.
    Regex(Regex),
    Cidr(IpNet),
    Port(u16),
    /// A JWT principal: `iss` and `sub` each matched.
    IssSub(Box<Pattern>, Box<Pattern>),
}

impl Pattern {
    pub(crate) fn matches_str(&self, s: &str) -> bool {
        match self {
            Pattern::Present => !s.is_empty(),
            Pattern::Exact(v) => s == &**v,
            Pattern::Prefix(v) => s.starts_with(&**v),
            Pattern::Suffix(v) => s.ends_with(&**v),
            Pattern::ExactIgnoreCase(v) => s.eq_ignore_ascii_case(v),
            Pattern::PrefixIgnoreCase(v) => {
                s.len() >= v.len() && s.as_bytes()[..v.len()].eq_ignore_ascii_case(v.as_bytes())
            }
            Pattern::SuffixIgnoreCase(v) => {
                s.len() >= v.len() && s.as_bytes()[s.len() - v.len()..].eq_ignore_ascii_case(v.as_bytes())
            }
            Pattern::Regex(re) => re.is_match(s),
            Pattern::Cidr(_) | Pattern::Port(_) | Pattern::IssSub(..) => false,
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            Pattern::Cidr(net) => net.contains(&canonical(ip)),
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 peer (a dual-stack socket) is matched as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a policy sees of a request, or of a TCP connection (`http: None`).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub http: Option<HttpRequest<'a>>,
    /// The listener port the connection came in on.
    pub port: u16,
    pub local: IpAddr,
    pub peer: IpAddr,
    /// The derived client address; see [`remote_ip`].
    pub remote: IpAddr,
    pub sni: Option<&'a str>,
    /// The verified client certificate's first URI SAN.
    pub peer_uri: Option<&'a str>,
    /// The verified JWT's payload, when a RequestAuthentication verified one.
    pub jwt: Option<&'a Map<String, Value>>,
}

#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// `:authority` / `Host` as sent.
    pub host: &'a str,
    pub method: &'a str,
    /// Without the query.
    pub path: &'a str,
    pub headers: &'a [httparse::Header<'a>],
}

/// The derived client address `remote.ip` and `remoteIpBlocks` read, `x-envoy-external-address`
/// carries and the access log shows, as Envoy's connection manager derives it under istiod's
/// `use_remote_address: true` and `xff_num_trusted_hops: trusted_hops`: the `trusted_hops`th
/// address from the right of `x-forwarded-for` as the client sent it (its lines joined, as
/// Envoy's header map joins them), or `peer` (the PROXY header's source where one was read)
/// when there are no trusted hops, too few addresses, or the one found does not parse.
pub fn remote_ip(peer: IpAddr, headers: &[httparse::Header<'_>], trusted_hops: u32) -> IpAddr {
    let Some(skip) = (trusted_hops as usize).checked_sub(1) else {
        return peer;
    };
    headers
        .iter()
        .rev()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|h| h.value.rsplit(|b| *b == b','))
        .nth(skip)
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(peer)
}

/// The outcome of the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'s> {
    Allow,
    /// Denied: the name of the DENY rule that matched, or `None` when ALLOW policies apply and
    /// none matched (Envoy's `rbac_access_denied_matched_policy[none]`).
    Deny(Option<&'s str>),
}

/// What the stage's RBAC filters did to one request, as Envoy counts and marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'s> {
    pub decision: Decision<'s>,
    /// The AUDIT filter's `access_log_hint` (`envoy.common` dynamic metadata): whether an
    /// AUDIT rule matched; `None` when no AUDIT policy applies (no such filter).
    pub audit: Option<bool>,
    /// How many of the RBAC filters the request met let it pass: each of the AUDIT, DENY and
    /// ALLOW filters counts `rbac.allowed` or `rbac.denied` (an AUDIT filter always allows),
    /// and a denial ends the chain.
    pub passed: u8,
}

impl Authz {
    /// Envoy's order as istiod builds the filters: AUDIT (marks, always allows), DENY, ALLOW.
    pub fn decide(&self, req: &Request<'_>) -> Verdict<'_> {
        let audit = self.audit_applies.then(|| self.audit.iter().any(|p| p.matches(req)));
        let mut passed = u8::from(audit.is_some());
        if self.deny_applies {
            if let Some(rule) = self.deny.iter().find_map(|p| p.matching_rule(req)) {
                return Verdict { decision: Decision::Deny(Some(&rule.name)), audit, passed };
            }
            passed += 1;
        }
        if self.allow_applies {
            if !self.allow.iter().any(|p| p.matches(req)) {
                return Verdict { decision: Decision::Deny(None), audit, passed };
            }
            passed += 1;
        }
        Verdict { decision: Decision::Allow, audit, passed }
    }

    /// The first CUSTOM policy matching `req`: the external check to make before DENY and
    /// ALLOW (istiod allows one provider per gateway).
    pub fn custom(&self, req: &Request<'_>) -> Option<&Custom> {
        self.custom.iter().find(|c| c.policy.matches(req))
    }

    /// Nothing to evaluate: no policy applies.
    pub fn is_empty(&self) -> bool {
        !self.deny_applies && !self.allow_applies && !self.audit_applies && self.custom.is_empty()
    }
}

impl Policy {
    pub fn matches(&self, req: &Request<'_>) -> bool {
        self.matching_rule(req).is_some()
    }

    /// The first of the policy's rules `req` matches.
    pub fn matching_rule(&self, req: &Request<'_>) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(req))
    }
}

impl Rule {
    fn matches(&self, req: &Request<'_>) -> bool {
        let all = |conds: &[Condition]| conds.iter().all(|c| c.matches(req));
        self.permissions.iter().any(|c| all(c)) && self.principals.iter().any(|c| all(c))
    }
}

impl Condition {
    fn matches(&self, req: &Request<'_>) -> bool {
        (self.any.is_empty() || self.any.iter().any(|p| self.attribute.matches(p, req)))
            && !self.none.iter().any(|p| self.attribute.matches(p, req))
    }
}

impl Attribute {
    fn matches(&self, p: &Pattern, req: &Request<'_>) -> bool {
        let http = req.http.as_ref();
        match self {
            Attribute::Host => http.is_some_and(|h| p.matches_str(h.host)),
            Attribute::Method => http.is_some_and(|h| p.matches_str(h.method)),
            Attribute::Path => http.is_some_and(|h| p.matches_str(h.path)),
            Attribute::Port => matches!(p, Pattern::Port(port) if *port == req.port),
            Attribute::DestinationIp => p.matches_ip(req.local),
            Attribute::Sni => p.matches_str(req.sni.unwrap_or_default()),
            Attribute::SourceIp => p.matches_ip(req.peer),
            Attribute::RemoteIp => p.matches_ip(req.remote),
            // Envoy's `authenticated` principal: only a verified client certificate has one.
            Attribute::Principal => req.peer_uri.is_some_and(|uri| match p {
                Pattern::Present => !uri.is_empty(),
                _ => uri.strip_prefix(SPIFFE).is_some_and(|id| p.matches_str(id)),
            }),
            Attribute::PrincipalUri => req.peer_uri.is_some_and(|uri| p.matches_str(uri)),
            Attribute::RequestPrincipal => jwt_principal(req.jwt, p),
            Attribute::Audiences => claim_matches(req.jwt, &["aud"], p),
            Attribute::Presenter => claim_matches(req.jwt, &["azp"], p),
            Attribute::Claim(path) => claim_matches(req.jwt, path, p),
            Attribute::Header(name) => http.is_some_and(|h| header_matches(h.headers, name, p)),
        }
    }
}

const SPIFFE: &str = "spiffe://";

/// Envoy's header matcher: `*` is presence; several lines of one name are matched as their
/// values joined by `,` (the one allocation of the stage, for a repeated header only).
fn header_matches(headers: &[httparse::Header<'_>], name: &str, p: &Pattern) -> bool {
    let mut values = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let Some(first) = values.next() else {
        return false;
    };
    if matches!(p, Pattern::Present) {
        return true;
    }
    let text = |v: &[u8]| std::str::from_utf8(v).map(str::to_owned).unwrap_or_default();
    match values.next() {
        None => std::str::from_utf8(first).is_ok_and(|v| p.matches_str(v)),
        Some(second) => {
            let mut joined = text(first);
            for v in std::iter::once(second).chain(values) {
                joined.push(',');
                joined.push_str(&text(v));
            }
            p.matches_str(&joined)
        }
    }
}

/// `request.auth.principal` / `requestPrincipals`: the token's `iss` and `sub`, each matched
/// as istiod splits the value at its last `/`.
fn jwt_principal(jwt: Option<&Map<String, Value>>, p: &Pattern) -> bool {
    let Some(jwt) = jwt else {
        return false;
    };
    let iss = jwt.get("iss").and_then(Value::as_str).unwrap_or_default();
    let sub = jwt.get("sub").and_then(Value::as_str).unwrap_or_default();
    match p {
        Pattern::IssSub(i, s) => i.matches_str(iss) && s.matches_str(sub),
        _ => false,
    }
}

/// A claim at `path` (nested objects), as Istio's authn filter exposes it: a string, or each
/// string of an array; other values match nothing.
fn claim_matches<S: AsRef<str>>(jwt: Option<&Map<String, Value>>, path: &[S], p: &Pattern) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut map = match jwt {
        Some(m) => m,
        None => return false,
    };
    for key in parents {
        match map.get(key.as_ref()) {
            Some(Value::Object(inner)) => map = inner,
            _ => return false,
        }
    }
    match map.get(last.as_ref()) {
        Some(Value::String(s)) => p.matches_str(s),
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str().is_some_and(|s| p.matches_str(s))),
        _ => false,
    }
}
