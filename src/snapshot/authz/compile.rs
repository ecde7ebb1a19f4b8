//! AuthorizationPolicy resources → [`Authz`] for one listener port, as istiod's
//! `authz/model` generates RBAC: the same keys, the same string matchers, and the same
//! treatment of what a layer cannot see (HTTP-only fields on a TCP server): in an ALLOW
//! policy the rule is dropped (it allows less), in DENY and AUDIT the value is ignored (they
//! match more).

use std::sync::Arc;

use ipnet::IpNet;
use regex::Regex;

use super::ext_authz::Kind;
use super::{Attribute, Authz, Condition, Custom, ExtAuthz, Pattern, Policy, Rule};
use crate::config::authorization_policy::{self as ap, bracketed, Action, AuthorizationPolicy};
use crate::config::Resource;

/// Where the policies run: an HTTP connection manager, or a TCP server's connection start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Http,
    Tcp,
}

/// A key's value this layer cannot evaluate (istiod's generator errors).
struct Unsupported;

/// Where the compiled policies run: a listener port and its layer.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub port: u16,
    pub layer: Layer,
}

/// Compiles the `policies` that apply to this gateway (see [`ap::applies`]) for `scope`:
/// what cannot match there (another port) is left out.
/// `providers`: MeshConfig's external authorization providers, compiled for this gateway.
pub fn compile(policies: &[&Resource<AuthorizationPolicy>], scope: Scope, providers: &[Arc<ExtAuthz>]) -> Authz {
    let Scope { port, layer } = scope;
    let (mut custom, mut deny, mut allow, mut audit) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut authz = Authz::default();
    for p in policies {
        let prefix = format!("ns[{}]-policy[{}]", p.namespace(), p.name());
        let action = p.spec.action();
        let wanted = p.spec.provider.as_ref().map(|pr| pr.name.as_str());
        let provider =
            (action == Action::Custom).then(|| providers.iter().find(|e| Some(&*e.name) == wanted).cloned()).flatten();
        // istiod's `buildTCP`: Envoy's network ext_authz filter speaks gRPC only, so an HTTP
        // provider's CUSTOM policy does nothing at layer 4 ("ignored CUSTOM action with HTTP
        // provider on TCP filter chain"); a gRPC provider's is checked once per connection, and
        // one naming a provider MeshConfig lacks still becomes a DENY RBAC filter there.
        let tcp_custom = action == Action::Custom && layer == Layer::Tcp;
        if tcp_custom && provider.as_ref().is_some_and(|p| matches!(p.kind, Kind::Http(_))) {
            continue;
        }
        let tcp_deny = tcp_custom && provider.is_none();
        authz.allow_applies |= action == Action::Allow;
        authz.deny_applies |= action == Action::Deny || tcp_deny;
        authz.audit_applies |= action == Action::Audit;
        // istiod's `policyName`: the rule's index among all the policy's rules; a CUSTOM
        // policy's rules carry its provider, and one naming a provider MeshConfig lacks becomes
        // a DENY rule named as such.
        let rule_name = |i: usize| -> Arc<str> {
            match action {
                Action::Custom => {
                    let bad = if provider.is_some() { "" } else { "-deny-due-to-bad-CUSTOM-action" };
                    format!("istio-ext-authz-{}-{prefix}-rule[{i}]{bad}", wanted.unwrap_or_default()).into()
                }
                _ => format!("{prefix}-rule[{i}]").into(),
            }
        };
        let rules: Vec<Rule> = p
            .spec
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| rule(r, rule_name(i), p.namespace(), port, layer, action))
            .collect();
        if rules.is_empty() {
            continue;
        }
        let name: Arc<str> = prefix.into();
        match if tcp_deny { Action::Deny } else { action } {
            Action::Deny => {
                deny.extend(rules.into_iter().map(|r| Policy { name: name.clone(), rules: Box::new([r]) }));
            }
            Action::Allow => allow.push(Policy { name, rules: rules.into() }),
            Action::Audit => audit.push(Policy { name, rules: rules.into() }),
            Action::Custom => custom.push(Custom { policy: Policy { name, rules: rules.into() }, provider }),
        }
    }
    deny.sort_by(|a, b| a.rules[0].name.cmp(&b.rules[0].name));
    Authz { custom: custom.into(), deny: deny.into(), allow: allow.into(), audit: audit.into(), ..authz }
}

/// One rule named `name`, or `None` when it cannot match on this port or (ALLOW) this layer
/// cannot evaluate it.
fn rule(r: &ap::Rule, name: Arc<str>, namespace: &str, port: u16, layer: Layer, action: Action) -> Option<Rule> {
    let mut base_permission = Vec::new();
    let mut base_principal = Vec::new();
    for c in &r.when {
        let key = c.key.as_str();
        let (values, not) = (&c.values[..], &c.not_values[..]);
        let kind = when_key(key, namespace)?;
        let target = if kind.permission { &mut base_permission } else { &mut base_principal };
        target.extend(condition(kind.attribute, values, not, &*kind.pattern, layer, action)?);
    }
    let mut principals = Vec::new();
    for from in r.from.iter().flatten() {
        let s = from.source.clone().unwrap_or_default();
        let mut conds = Vec::new();
        let sa = |v: &str| service_account(v, namespace);
        for (attribute, values, not, pattern) in [
            (Attribute::Principal, &s.principals, &s.not_principals, string_pattern as fn(&str) -> Pattern),
            (Attribute::RequestPrincipal, &s.request_principals, &s.not_request_principals, request_principal),
            (Attribute::PrincipalUri, &s.namespaces, &s.not_namespaces, namespace_pattern),
            (Attribute::SourceIp, &s.ip_blocks, &s.not_ip_blocks, cidr),
            (Attribute::RemoteIp, &s.remote_ip_blocks, &s.not_remote_ip_blocks, cidr),
        ] {
            conds.extend(condition(attribute, values, not, &pattern, layer, action)?);
        }
        conds.extend(condition(
            Attribute::PrincipalUri,
            &s.service_accounts,
            &s.not_service_accounts,
            &sa,
            layer,
            action,
        )?);
        conds.extend(base_principal.iter().cloned());
        principals.push(conds.into_boxed_slice());
    }
    if r.from.is_none() {
        principals.push(base_principal.into_boxed_slice());
    }
    let mut permissions = Vec::new();
    for to in r.to.iter().flatten() {
        let o = to.operation.clone().unwrap_or_default();
        let mut conds = Vec::new();
        for (attribute, values, not, pattern) in [
            (Attribute::Host, &o.hosts, &o.not_hosts, host_pattern as fn(&str) -> Pattern),
            (Attribute::Method, &o.methods, &o.not_methods, string_pattern),
            (Attribute::Path, &o.paths, &o.not_paths, path_pattern),
            (Attribute::Port, &o.ports, &o.not_ports, port_pattern),
        ] {
            conds.extend(condition(attribute, values, not, &pattern, layer, action)?);
        }
        conds.extend(base_permission.iter().cloned());
        permissions.push(conds);
    }
    if r.to.is_none() {
        permissions.push(base_permission);
    }
    // `destination.port` is the listener's: decided here, so the request pays for nothing the
    // port rules out.
    let permissions: Box<[Box<[Condition]>]> = permissions
        .into_iter()
        .filter_map(|conds| {
            let (ports, rest): (Vec<_>, Vec<_>) = conds.into_iter().partition(|c| c.attribute == Attribute::Port);
            let probe = super::Request {
                http: None,
                port,
                local: std::net::Ipv4Addr::UNSPECIFIED.into(),
                peer: std::net::Ipv4Addr::UNSPECIFIED.into(),
                remote: std::net::Ipv4Addr::UNSPECIFIED.into(),
                sni: None,
                peer_uri: None,
                jwt: None,
            };
            ports.iter().all(|c| c.matches(&probe)).then(|| rest.into_boxed_slice())
        })
        .collect();
    if permissions.is_empty() {
        return None;
    }
    Some(Rule { name, permissions, principals: principals.into() })
}

/// Which attribute a `when` key reads, whether istiod makes it a permission or a principal,
/// and how its values are matched.
struct WhenKey {
    attribute: Attribute,
    permission: bool,
    pattern: ValuePattern,
}

/// How a key's values become patterns.
type ValuePattern = Box<dyn Fn(&str) -> Pattern>;

/// `None` for a key validation refuses (never reached on a validated set).
fn when_key(key: &str, namespace: &str) -> Option<WhenKey> {
    let (attribute, permission, pattern): (Attribute, bool, ValuePattern) = match key {
        "destination.ip" => (Attribute::DestinationIp, true, Box::new(cidr)),
        "destination.port" => (Attribute::Port, true, Box::new(port_pattern)),
        "connection.sni" => (Attribute::Sni, true, Box::new(string_pattern)),
        "source.ip" => (Attribute::SourceIp, false, Box::new(cidr)),
        "remote.ip" => (Attribute::RemoteIp, false, Box::new(cidr)),
        "source.namespace" => (Attribute::PrincipalUri, false, Box::new(namespace_pattern)),
        "source.principal" => (Attribute::Principal, false, Box::new(string_pattern)),
        "source.serviceAccount" => {
            let ns = namespace.to_owned();
            (Attribute::PrincipalUri, false, Box::new(move |v: &str| service_account(v, &ns)))
        }
        "request.auth.principal" => (Attribute::RequestPrincipal, false, Box::new(request_principal)),
        "request.auth.audiences" => (Attribute::Audiences, false, Box::new(string_pattern)),
        "request.auth.presenter" => (Attribute::Presenter, false, Box::new(string_pattern)),
        _ => {
            if let Some(name) = bracketed(key, "request.headers") {
                (Attribute::Header(name.concat().into()), false, Box::new(string_pattern))
            } else if let Some(path) = bracketed(key, "request.auth.claims") {
                let path = path.into_iter().map(Box::from).collect();
                (Attribute::Claim(path), false, Box::new(string_pattern))
            } else {
                return None;
            }
        }
    };
    Some(WhenKey { attribute, permission, pattern })
}

/// Whether the attribute is one a TCP filter chain cannot see.
fn http_only(attribute: &Attribute) -> bool {
    matches!(
        attribute,
        Attribute::Host
            | Attribute::Method
            | Attribute::Path
            | Attribute::RequestPrincipal
            | Attribute::Audiences
            | Attribute::Presenter
            | Attribute::Claim(_)
            | Attribute::Header(_)
    )
}

/// One key as a condition; `Some(None)` when it has nothing left to check (no values, or
/// every value ignored); `None` when the rule must go (ALLOW with an HTTP-only key on TCP).
fn condition(
    attribute: Attribute,
    values: &[String],
    not: &[String],
    pattern: &dyn Fn(&str) -> Pattern,
    layer: Layer,
    action: Action,
) -> Option<Option<Condition>> {
    if values.is_empty() && not.is_empty() {
        return Some(None);
    }
    let supported =
        |attribute: &Attribute| if layer == Layer::Tcp && http_only(attribute) { Err(Unsupported) } else { Ok(()) };
    if supported(&attribute).is_err() {
        return match action {
            Action::Allow => None,
            _ => Some(None),
        };
    }
    let any: Box<[Pattern]> = values.iter().map(|v| pattern(v)).collect();
    let none: Box<[Pattern]> = not.iter().map(|v| pattern(v)).collect();
    Some(Some(Condition { attribute, any, none }))
}

/// istiod's `StringMatcher`: `*` any non-empty value, `*x` suffix, `x*` prefix, else exact.
fn string_pattern(v: &str) -> Pattern {
    if v == "*" {
        Pattern::Present
    } else if let Some(suffix) = v.strip_prefix('*') {
        Pattern::Suffix(suffix.into())
    } else if let Some(prefix) = v.strip_suffix('*') {
        Pattern::Prefix(prefix.into())
    } else {
        Pattern::Exact(v.into())
    }
}

/// istiod's `HostMatcher`: the string matcher, case-insensitive, against `:authority` as sent
/// (a port the client wrote is part of it).
fn host_pattern(v: &str) -> Pattern {
    match string_pattern(v) {
        Pattern::Exact(v) => Pattern::ExactIgnoreCase(v.to_ascii_lowercase().into()),
        Pattern::Prefix(v) => Pattern::PrefixIgnoreCase(v),
        Pattern::Suffix(v) => Pattern::SuffixIgnoreCase(v),
        other => other,
    }
}

/// A path, or a template with `{*}` (one segment) and `{**}` (any number of segments), as
/// Envoy's `uri_template` matcher reads them once istiod turned them into `*` and `**`.
fn path_pattern(v: &str) -> Pattern {
    if !(v.contains("{*}") || v.contains("{**}")) {
        return string_pattern(v);
    }
    // Envoy's uri_template character classes: a segment's pchars, and `/` too for `**`.
    const SEGMENT: &str = "[a-zA-Z0-9\\-._~%!$&'()+,;:@=]+";
    const SEGMENTS: &str = "[a-zA-Z0-9\\-._~%!$&'()+,;:@=/]*";
    let mut re = String::from("^");
    let mut rest = v;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{**}") {
            re.push_str(SEGMENTS);
            rest = r;
        } else if let Some(r) = rest.strip_prefix("{*}") {
            re.push_str(SEGMENT);
            rest = r;
        } else {
            let next = rest[1..].find('{').map_or(rest.len(), |i| i + 1);
            re.push_str(&regex::escape(&rest[..next]));
            rest = &rest[next..];
        }
    }
    re.push('$');
    Regex::new(&re).map_or_else(|_| Pattern::Exact(v.into()), Pattern::Regex)
}

/// istiod's namespace matcher: `.*/ns/NS/.*` on the URI SAN, `*` in NS a wildcard.
fn namespace_pattern(v: &str) -> Pattern {
    let ns = regex::escape(v).replace("\\*", ".*");
    Regex::new(&format!("^.*/ns/{ns}/.*$")).map_or_else(|_| Pattern::Exact(v.into()), Pattern::Regex)
}

/// istiod's `serviceAccountRegex`: `NAME` (in the policy's namespace) or `NS/NAME`.
fn service_account(v: &str, namespace: &str) -> Pattern {
    let (ns, sa) = v.split_once('/').unwrap_or((namespace, v));
    let (ns, sa) = (regex::escape(ns), regex::escape(sa));
    Regex::new(&format!("^spiffe://.+/ns/{ns}/(.+/|)sa/{sa}(/.+)?$"))
        .map_or_else(|_| Pattern::Exact(v.into()), Pattern::Regex)
}

/// `ipBlocks` and the `*.ip` keys: an address or a CIDR (validation refused anything else).
fn cidr(v: &str) -> Pattern {
    let net = v.parse::<IpNet>().ok().or_else(|| v.parse::<std::net::IpAddr>().ok().map(IpNet::from));
    // A host-bits CIDR (`10.0.0.1/8`) covers its network, as Envoy's CidrRange does.
    net.map_or(Pattern::Exact(v.into()), |n| Pattern::Cidr(n.trunc()))
}

fn port_pattern(v: &str) -> Pattern {
    v.parse().map_or(Pattern::Exact(v.into()), Pattern::Port)
}

/// istiod's `requestPrincipalGenerator`: `ISS/SUB` split at the last `/`, with its wildcards.
fn request_principal(v: &str) -> Pattern {
    let split = v.rfind('/');
    let (iss, sub) = match split {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, ""),
    };
    let (i, s) = if v == "*" {
        (Pattern::Present, Pattern::Present)
    } else if let Some(rest) = v.strip_prefix('*') {
        match split {
            Some(_) if iss == "*" => (Pattern::Present, Pattern::Exact(sub.into())),
            Some(_) => (Pattern::Suffix(iss.strip_prefix('*').unwrap_or(iss).into()), Pattern::Exact(sub.into())),
            None => (Pattern::Present, Pattern::Suffix(rest.into())),
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        match split {
            Some(_) if sub == "*" => (Pattern::Exact(iss.into()), Pattern::Present),
            Some(_) => (Pattern::Exact(iss.into()), Pattern::Prefix(sub.strip_suffix('*').unwrap_or(sub).into())),
            None => (Pattern::Prefix(rest.into()), Pattern::Present),
        }
    } else {
        (Pattern::Exact(iss.into()), Pattern::Exact(sub.into()))
    };
    Pattern::IssSub(Box::new(i), Box::new(s))
}
