//! RequestAuthentication rules (Istio's `ValidateRequestAuthentication` and `validateJwtRule`),
//! and a warning for a policy that can never apply to this gateway.

use std::collections::BTreeMap;

use super::At;
use crate::config::index::{policy_attaches, NotAttached, ThisGateway};
use crate::config::jwks::Jwks;
use crate::config::meta::LabelSelector;
use crate::config::request_authentication::RequestAuthentication;
use crate::config::{ConfigSet, Diagnostics, Resource, Severity};

pub(super) fn check(set: &ConfigSet, labels: &BTreeMap<String, String>, namespace: &str, out: &mut Diagnostics) {
    for ra in &set.request_authentications {
        let mut at = At { resource: ra, out: &mut *out };
        rules(&mut at, ra);
        scope(&mut at, ra, labels, namespace, &set.mesh.root_namespace);
    }
}

fn rules(at: &mut At<'_, RequestAuthentication>, ra: &Resource<RequestAuthentication>) {
    let spec = &ra.spec;
    let set = [spec.selector.is_some(), spec.target_ref.is_some(), !spec.target_refs.is_empty()];
    if set.iter().filter(|s| **s).count() > 1 {
        at.error("spec", "only one of targetRefs, workloadSelector or targetRef can be set");
    }
    if let Some(selector) = &spec.selector {
        workload_selector(at, selector);
    }
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        let p = format!("spec.jwtRules[{i}]");
        for (j, audience) in rule.audiences.iter().enumerate() {
            if audience.is_empty() {
                at.error(format!("{p}.audiences[{j}]"), "audience must be non-empty string");
            }
        }
        if rule.issuer.is_empty() && rule.jwks_uri.is_empty() {
            at.error(format!("{p}.issuer"), "issuer or jwksUri must be non-empty string");
        }
        if !rule.jwks_uri.is_empty() {
            if let Err(e) = jwks_uri(&rule.jwks_uri) {
                at.error(format!("{p}.jwksUri"), e);
            }
        }
        if !rule.jwks.is_empty() {
            if let Err(e) = Jwks::parse(&rule.jwks) {
                at.error(format!("{p}.jwks"), format!("jwks parse error: {e}"));
            }
        }
        for (j, h) in rule.from_headers.iter().enumerate() {
            if h.name.is_empty() {
                at.error(format!("{p}.fromHeaders[{j}].name"), "location header name must be non-empty string");
            }
        }
        for (j, name) in rule.from_params.iter().enumerate() {
            if name.is_empty() {
                at.error(format!("{p}.fromParams[{j}]"), "location query must be non-empty string");
            }
        }
        for (j, name) in rule.from_cookies.iter().enumerate() {
            if name.is_empty() {
                at.error(format!("{p}.fromCookies[{j}]"), "cookie name must be non-empty string");
            }
        }
        for (j, c) in rule.output_claim_to_headers.iter().enumerate() {
            let field = format!("{p}.outputClaimToHeaders[{j}]");
            if c.claim.is_empty() || c.header.is_empty() {
                at.error(field, "outputClaimToHeaders header and claim value must be non-empty string");
            } else if !strict_header_name(&c.header) {
                at.error(format!("{field}.header"), format!("invalid header name: {:?}", c.header));
            }
        }
        if rule.timeout.is_some_and(|t| t.get().is_zero()) {
            at.error(format!("{p}.timeout"), "duration must be greater than 1ms");
        }
    }
}

/// Istio's `validateWorkloadSelector`: no empty key, no wildcard.
fn workload_selector(at: &mut At<'_, RequestAuthentication>, selector: &LabelSelector) {
    for (k, v) in &selector.match_labels {
        if k.is_empty() {
            at.error("spec.selector.matchLabels", "empty key is not supported in selector");
        }
        if k.contains('*') || v.contains('*') {
            at.error(format!("spec.selector.matchLabels.{k}"), "wildcard is not supported in selector");
        }
    }
}

/// Istio's `security.ParseJwksURI`: an absolute `http` or `https` URL with a host.
pub(crate) fn jwks_uri(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(format!("URI {uri:?} is not an absolute URL"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("URI scheme {scheme:?} is not supported"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("URI {uri:?} has no host"));
    }
    Ok(())
}

/// Istio's `ValidateStrictHTTPHeaderName`: an RFC 7230 token.
fn strict_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A policy that can never apply to this gateway is valid but does nothing: warned, naming why.
fn scope(
    at: &mut At<'_, RequestAuthentication>,
    ra: &Resource<RequestAuthentication>,
    labels: &BTreeMap<String, String>,
    namespace: &str,
    root: &str,
) {
    let gateway = ThisGateway { namespace, root, labels };
    let attachment = ra.spec.attachment(ra.namespace());
    let Err(why) = policy_attaches(&attachment, &gateway) else {
        return;
    };
    let field = match why {
        NotAttached::OtherNamespace => "metadata.namespace",
        NotAttached::SelectorMismatch => "spec.selector",
        NotAttached::OtherTarget if ra.spec.target_ref.is_some() => "spec.targetRef",
        NotAttached::OtherTarget => "spec.targetRefs",
    };
    at.push(Severity::Warning, field, format!("never applies to this gateway: {}", why.explain(&attachment, &gateway)));
}

#[cfg(test)]
mod tests;
