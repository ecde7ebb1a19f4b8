//! RequestAuthentications → the gateway's [`JwtAuthn`] filter: the policies that apply to this
//! gateway (root namespace first, then the gateway's own, each in config order), one provider
//! per `jwtRules` entry, as istiod builds jwt_authn's providers.

use std::sync::Arc;

use super::dns::Resolve;
use super::CompileOptions;
use crate::config::index::{policy_attaches, ThisGateway};
use crate::config::jwks::Jwks;
use crate::config::request_authentication::JwtRule;
use crate::config::ConfigSet;
use crate::snapshot::jwt::{JwksSource, JwtAuthn, Location, Provider, DEFAULT_FETCH_TIMEOUT};

/// The gateway's JWT filter, `None` when no RequestAuthentication applies to it.
pub(super) fn compile(set: &ConfigSet, opts: &CompileOptions, resolver: &mut dyn Resolve) -> Option<Arc<JwtAuthn>> {
    let root_namespace = set.mesh.root_namespace.as_str();
    let gateway = ThisGateway { namespace: &opts.namespace, root: root_namespace, labels: &opts.labels };
    let applying = |root: bool| {
        let gateway = &gateway;
        set.request_authentications.iter().filter(move |ra| {
            (ra.namespace() == root_namespace) == root
                && policy_attaches(&ra.spec.attachment(ra.namespace()), gateway).is_ok()
        })
    };
    let rules: Vec<&JwtRule> = applying(true).chain(applying(false)).flat_map(|ra| &ra.spec.jwt_rules).collect();
    if rules.is_empty() {
        return None;
    }
    let providers: Box<[Provider]> = rules.into_iter().map(|rule| provider(rule, resolver)).collect();
    let mut sanitize: Vec<Box<str>> = Vec::new();
    for p in providers.iter() {
        for name in p.payload_header.iter().chain(p.claim_headers.iter().map(|(h, _)| h)) {
            if !sanitize.contains(name) {
                sanitize.push(name.clone());
            }
        }
    }
    Some(Arc::new(JwtAuthn { providers, sanitize: sanitize.into() }))
}

fn provider(rule: &JwtRule, resolver: &mut dyn Resolve) -> Provider {
    let mut locations: Vec<Location> = Vec::new();
    locations.extend(
        rule.from_headers
            .iter()
            .map(|h| Location::Header { name: h.name.to_ascii_lowercase().into(), prefix: h.prefix.as_str().into() }),
    );
    locations.extend(rule.from_params.iter().map(|p| Location::Param(p.as_str().into())));
    locations.extend(rule.from_cookies.iter().map(|c| Location::Cookie(c.as_str().into())));
    let locations = if locations.is_empty() { Location::defaults() } else { locations.into() };
    // An inline `jwks` wins over `jwksUri`, as istiod uses it; with neither, the issuer's
    // OpenID discovery document names the key set.
    let (keys, source) = if !rule.jwks.is_empty() {
        (Jwks::parse(&rule.jwks).ok().map(Arc::new), None)
    } else {
        let timeout = rule.timeout.map_or(DEFAULT_FETCH_TIMEOUT, |t| t.get());
        let source = if rule.jwks_uri.is_empty() {
            let issuer = rule.issuer.trim_end_matches('/');
            JwksSource { uri: format!("{issuer}/.well-known/openid-configuration").into(), discovery: true, timeout }
        } else {
            JwksSource { uri: rule.jwks_uri.as_str().into(), discovery: false, timeout }
        };
        (resolver.jwks(&source), Some(source))
    };
    Provider {
        issuer: rule.issuer.as_str().into(),
        audiences: rule.audiences.iter().map(|a| a.as_str().into()).collect(),
        locations,
        keys,
        source,
        forward: rule.forward_original_token,
        payload_header: (!rule.output_payload_to_header.is_empty())
            .then(|| rule.output_payload_to_header.to_ascii_lowercase().into()),
        claim_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| (c.header.to_ascii_lowercase().into(), c.claim.split('.').map(Box::from).collect()))
            .collect(),
    }
}
