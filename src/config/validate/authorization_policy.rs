//! AuthorizationPolicy as Istio's webhook checks it (`ValidateAuthorizationPolicy` in
//! `pkg/config/validation`, with `pkg/config/security`'s value checks), and whether a policy
//! can apply to this gateway at all.

use std::collections::BTreeMap;

use super::At;
use crate::config::authorization_policy::{self as ap, Action, AuthorizationPolicy};
use crate::config::index::{policy_attaches, ThisGateway};
use crate::config::{ConfigSet, Diagnostics, Severity};

pub(super) fn check(set: &ConfigSet, labels: &BTreeMap<String, String>, namespace: &str, out: &mut Diagnostics) {
    let root_namespace = set.mesh.root_namespace.as_str();
    for policy in &set.authorization_policies {
        let mut at = At { resource: policy, out: &mut *out };
        spec(&mut at, &policy.spec);
        let gateway = ThisGateway { namespace, root: root_namespace, labels };
        let attachment = policy.spec.attachment(policy.namespace());
        if let Err(why) = policy_attaches(&attachment, &gateway) {
            let why = why.explain(&attachment, &gateway);
            let field = if policy.spec.selector.is_some() {
                "spec.selector"
            } else if policy.spec.target_ref.is_some() {
                "spec.targetRef"
            } else if !policy.spec.target_refs.is_empty() {
                "spec.targetRefs"
            } else {
                "metadata.namespace"
            };
            at.push(Severity::Dangling, field, format!("never applies to this gateway: {why}"));
        } else if policy.spec.action() == Action::Custom && !policy.spec.rules.is_empty() {
            let name = policy.spec.provider.as_ref().map_or("", |p| p.name.as_str());
            match set.mesh.extension_providers.iter().find(|p| p.name == name) {
                Some(p) if p.envoy_ext_authz_http.is_some() || p.envoy_ext_authz_grpc.is_some() => {}
                Some(_) => at.push(
                    Severity::NotEnforced,
                    "spec.provider.name",
                    format!(
                        "CUSTOM with provider {name} (no external authorization kind) is accepted, not enforced yet"
                    ),
                ),
                // istiod's `ProviderNotFound`: the policy denies what it matches.
                None => at.push(
                    Severity::Dangling,
                    "spec.provider.name",
                    format!("no extensionProviders entry {name} in MeshConfig: requests the policy matches are denied"),
                ),
            }
        }
    }
}

fn spec(at: &mut At<'_, AuthorizationPolicy>, p: &AuthorizationPolicy) {
    if let Some(selector) = &p.selector {
        for (k, v) in &selector.match_labels {
            if k.is_empty() {
                at.error("spec.selector.matchLabels", format!("empty key is not supported in selector: \"{k}={v}\""));
            }
            if k.contains('*') || v.contains('*') {
                at.error("spec.selector.matchLabels", format!("wildcard is not supported in selector: \"{k}={v}\""));
            }
        }
    }
    let kinds = usize::from(p.selector.is_some())
        + usize::from(p.target_ref.is_some())
        + usize::from(!p.target_refs.is_empty());
    if kinds > 1 {
        at.error("spec", "only one of targetRefs or workloadSelector can be set");
    }
    for (i, r) in p
        .target_ref
        .iter()
        .map(|r| ("spec.targetRef".to_owned(), r))
        .chain(p.target_refs.iter().enumerate().map(|(i, r)| (format!("spec.targetRefs[{i}]"), r)))
    {
        if r.name.is_empty() {
            at.error(format!("{i}.name"), "targetRef name must be set");
        }
        if r.kind.is_empty() {
            at.error(format!("{i}.kind"), "targetRef kind must be set");
        }
    }
    let action = p.action();
    if action == Action::Custom {
        if p.rules.is_empty() {
            at.error(
                "spec.rules",
                "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if \
                 you want it be triggered for every request",
            );
        } else if p.provider.as_ref().is_none_or(|pr| pr.name.is_empty()) {
            at.error("spec.provider.name", "`provider.name` must not be empty");
        }
        custom_fields(at, p);
    }
    if p.provider.is_some() && action != Action::Custom {
        at.error("spec.provider", format!("`provider` must not be with non CUSTOM action, found {action}"));
    }
    if action == Action::Deny && p.rules.is_empty() {
        at.error(
            "spec.rules",
            "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you \
             want it be triggered for every request",
        );
    }
    for (i, rule) in p.rules.iter().enumerate() {
        let base = format!("spec.rules[{i}]");
        if rule.from.as_ref().is_some_and(Vec::is_empty) {
            at.error(format!("{base}.from"), format!("`from` must not be empty, found at rule {i}"));
        }
        for (j, from) in rule.from.iter().flatten().enumerate() {
            let field = format!("{base}.from[{j}].source");
            let Some(s) = &from.source else {
                at.error(field, format!("`from.source` must not be nil, found at rule {i}"));
                continue;
            };
            if s.is_empty() {
                at.error(&field, format!("`from.source` must not be empty, found at rule {i}"));
            }
            let identity = s.principals.len() + s.not_principals.len() + s.namespaces.len() + s.not_namespaces.len();
            if identity > 0 && s.service_accounts.len() + s.not_service_accounts.len() > 0 {
                at.error(
                    &field,
                    format!("cannot set serviceAccounts with namespaces or principals, found at rule {i}"),
                );
            }
            for (name, values) in [
                ("ipBlocks", &s.ip_blocks),
                ("notIpBlocks", &s.not_ip_blocks),
                ("remoteIpBlocks", &s.remote_ip_blocks),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
            ] {
                ips(at, &format!("{field}.{name}"), values);
            }
            for (name, values) in [
                ("principals", &s.principals),
                ("notPrincipals", &s.not_principals),
                ("requestPrincipals", &s.request_principals),
                ("notRequestPrincipals", &s.not_request_principals),
                ("namespaces", &s.namespaces),
                ("notNamespaces", &s.not_namespaces),
                ("serviceAccounts", &s.service_accounts),
                ("notServiceAccounts", &s.not_service_accounts),
                ("ipBlocks", &s.ip_blocks),
                ("notIpBlocks", &s.not_ip_blocks),
                ("remoteIpBlocks", &s.remote_ip_blocks),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
            ] {
                empty_values(at, &format!("{field}.{name}"), values);
            }
        }
        if rule.to.as_ref().is_some_and(Vec::is_empty) {
            at.error(format!("{base}.to"), format!("`to` must not be empty, found at rule {i}"));
        }
        for (j, to) in rule.to.iter().flatten().enumerate() {
            let field = format!("{base}.to[{j}].operation");
            let Some(o) = &to.operation else {
                at.error(field, format!("`to.operation` must not be nil, found at rule {i}"));
                continue;
            };
            if o.is_empty() {
                at.error(&field, format!("`to.operation` must not be empty, found at rule {i}"));
            }
            ports(at, &format!("{field}.ports"), &o.ports);
            ports(at, &format!("{field}.notPorts"), &o.not_ports);
            for (name, values) in [
                ("hosts", &o.hosts),
                ("notHosts", &o.not_hosts),
                ("ports", &o.ports),
                ("notPorts", &o.not_ports),
                ("methods", &o.methods),
                ("notMethods", &o.not_methods),
                ("paths", &o.paths),
                ("notPaths", &o.not_paths),
            ] {
                empty_values(at, &format!("{field}.{name}"), values);
            }
            for (name, values) in [("paths", &o.paths), ("notPaths", &o.not_paths)] {
                if values.iter().any(|p| !valid_template(p)) {
                    at.error(format!("{field}.{name}"), "invalid or unsupported path template");
                }
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            let field = format!("{base}.when[{j}]");
            if c.key.is_empty() {
                at.error(format!("{field}.key"), "`key` must not be empty");
                continue;
            }
            if c.values.is_empty() && c.not_values.is_empty() {
                at.error(&field, format!("at least one of `values` or `notValues` must be set for key {}", c.key));
                continue;
            }
            // Istio checks both lists; an empty one only repeats a bad key's error.
            for (name, values) in
                [("values", &c.values), ("notValues", &c.not_values)].into_iter().filter(|(_, v)| !v.is_empty())
            {
                if let Err(e) = attribute(&c.key, values) {
                    at.error(format!("{field}.{name}"), format!("invalid `{name}` for `key` {}: {e}", c.key));
                }
            }
            if c.key.starts_with("experimental.envoy.filters.") {
                at.push(
                    Severity::NotEnforced,
                    format!("{field}.key"),
                    "accepted, not enforced yet: the rule never matches",
                );
            }
        }
    }
}

/// The fields Istio refuses beside a CUSTOM action.
fn custom_fields(at: &mut At<'_, AuthorizationPolicy>, p: &AuthorizationPolicy) {
    for (i, rule) in p.rules.iter().enumerate() {
        for (j, s) in rule.from.iter().flatten().enumerate().filter_map(|(j, f)| Some((j, f.source.as_ref()?))) {
            for (name, set) in [
                ("namespaces", !s.namespaces.is_empty()),
                ("notNamespaces", !s.not_namespaces.is_empty()),
                ("serviceAccounts", !s.service_accounts.is_empty()),
                ("notServiceAccounts", !s.not_service_accounts.is_empty()),
                ("principals", !s.principals.is_empty()),
                ("notPrincipals", !s.not_principals.is_empty()),
                ("requestPrincipals", !s.request_principals.is_empty()),
                ("notRequestPrincipals", !s.not_request_principals.is_empty()),
            ] {
                if set {
                    at.error(
                        format!("spec.rules[{i}].from[{j}].source.{name}"),
                        format!("{name} is currently not supported with CUSTOM action"),
                    );
                }
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            let key = c.key.as_str();
            if matches!(key, "source.namespace" | "source.serviceAccount" | "source.principal")
                || key.starts_with("request.auth.")
            {
                at.error(
                    format!("spec.rules[{i}].when[{j}].key"),
                    format!("{key} is currently not supported with CUSTOM action"),
                );
            }
        }
    }
}

fn empty_values(at: &mut At<'_, AuthorizationPolicy>, field: &str, values: &[String]) {
    if values.iter().any(String::is_empty) {
        at.error(field, "empty value not allowed");
    }
}

/// `security.ValidateIPs`: an address, or a CIDR prefix.
fn ips(at: &mut At<'_, AuthorizationPolicy>, field: &str, values: &[String]) {
    for v in values {
        if let Err(e) = ip(v) {
            at.error(field, e);
        }
    }
}

fn ip(v: &str) -> Result<(), String> {
    if v.contains('/') {
        v.parse::<ipnet::IpNet>().map(|_| ()).map_err(|e| format!("bad CIDR range ({v}): {e}"))
    } else {
        v.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| format!("bad IP address ({v})"))
    }
}

fn ports(at: &mut At<'_, AuthorizationPolicy>, field: &str, values: &[String]) {
    for v in values {
        if let Err(e) = port(v) {
            at.error(field, e);
        }
    }
}

fn port(v: &str) -> Result<(), String> {
    match v.parse::<u32>() {
        Ok(p) if p <= 65535 => Ok(()),
        _ => Err(format!("bad port ({v})")),
    }
}

/// `security.CheckValidPathTemplate`: a template (`{*}`, `{**}`) may not also hold named
/// variables, `{}`, or bare `*` / `**` segments.
fn valid_template(path: &str) -> bool {
    if !(path.contains("{*}") || path.contains("{**}")) {
        return true;
    }
    static UNSUPPORTED: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"/\{\w+=\*[*]?\}|\{\w*\}|/\*[*]?|\*[*]?/").ok());
    UNSUPPORTED.as_ref().is_none_or(|re| !re.is_match(path))
}

/// `security.ValidateAttribute` for a `when` key and its values.
fn attribute(key: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(String::is_empty) {
        return Err(format!("empty value not allowed, found in {key}"));
    }
    let map_key = |prefix: &str| {
        if ap::bracketed(key, prefix).is_some() {
            Ok(())
        } else {
            Err(format!("bad key ({key}): should have format a[b]"))
        }
    };
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => values.iter().try_for_each(|v| ip(v)),
        "destination.port" => values.iter().try_for_each(|v| port(v)),
        "source.namespace"
        | "source.principal"
        | "source.serviceAccount"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(()),
        "destination.namespace" => Err(format!("attribute {key} is replaced by the metadata.namespace")),
        "destination.name" | "destination.user" => {
            Err(format!("deprecated attribute {key}: only supported in v1alpha1"))
        }
        _ if key.starts_with("request.headers") => map_key("request.headers"),
        _ if key.starts_with("request.auth.claims") => map_key("request.auth.claims"),
        _ if key.starts_with("experimental.envoy.filters.") => Ok(()),
        _ if key.starts_with("destination.labels") => {
            Err(format!("attribute {key} is replaced by the workload selector"))
        }
        _ => Err(format!("unknown attribute: {key}")),
    }
}
