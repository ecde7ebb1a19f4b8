//! Fields Strait accepts but does not enforce yet, from one table: when the data plane starts
//! enforcing a feature, delete its row. Each occurrence of a listed field present in a
//! resource gives one `NotEnforced` warning, and so does each document of a kind Strait does
//! not act on yet ([`crate::config::NOT_ENFORCED_KINDS`]).

use serde::Serialize;
use serde_json::Value;

use super::At;
use crate::config::{ConfigSet, Diagnostic, Diagnostics, Kind, Resource, Severity};

/// Which values of a field are enforced.
enum Enforced {
    /// None: the field's presence is the warning.
    Nothing,
    /// These values (compared case-insensitively) are enforced, any other warns. A
    /// comma-separated string is enforced when each of its items is.
    Values(&'static [&'static str]),
}

/// `(kind, field path, enforced)`. Paths are written as diagnostics write fields, `[]` standing
/// for every index; `{policy}` stands for each DestinationRule traffic policy (the rule's, its
/// subsets', and their `portLevelSettings`).
#[rustfmt::skip]
const NOT_ENFORCED: &[(&str, &str, Enforced)] = &[
    ("Gateway", "spec.servers[].port.protocol", Enforced::Values(&["HTTP", "HTTPS", "TLS", "TCP", "MONGO", "MYSQL", "REDIS"])),
    ("Gateway", "spec.servers[].port.targetPort", Enforced::Nothing),
    ("Gateway", "spec.servers[].defaultEndpoint", Enforced::Nothing),
    ("Gateway", "spec.servers[].tls.credentialNames", Enforced::Nothing),
    ("Gateway", "spec.servers[].tls.tlsCertificates", Enforced::Nothing),
    ("VirtualService", "spec.http[].delegate", Enforced::Nothing),
    ("VirtualService", "spec.http[].retries.retryRemoteLocalities", Enforced::Nothing),
    ("VirtualService", "spec.http[].retries.retryIgnorePreviousHosts", Enforced::Nothing),
    ("VirtualService", "spec.http[].retries.backoff", Enforced::Nothing),
    ("DestinationRule", "{policy}.loadBalancer.simple", Enforced::Values(&["ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM"])),
    ("DestinationRule", "{policy}.loadBalancer.localityLbSetting", Enforced::Nothing),
    ("DestinationRule", "{policy}.loadBalancer.warmupDurationSecs", Enforced::Nothing),
    ("DestinationRule", "{policy}.loadBalancer.warmup", Enforced::Nothing),
    ("DestinationRule", "{policy}.connectionPool.tcp.maxConnectionDuration", Enforced::Nothing),
    ("DestinationRule", "{policy}.outlierDetection.consecutiveErrors", Enforced::Nothing),
    ("DestinationRule", "{policy}.tunnel", Enforced::Nothing),
    ("DestinationRule", "{policy}.proxyProtocol", Enforced::Nothing),
    ("DestinationRule", "{policy}.retryBudget", Enforced::Nothing),
    ("ServiceEntry", "spec.addresses", Enforced::Nothing),
    // At a gateway istiod reads `location` for AUTO_PASSTHROUGH, which serves MESH_INTERNAL
    // services only, and for auto mTLS to MESH_INTERNAL endpoints, which Strait cannot do.
    ("ServiceEntry", "spec.location", Enforced::Values(&["MESH_EXTERNAL"])),
    ("ServiceEntry", "spec.resolution", Enforced::Values(&["STATIC", "DNS"])),
    ("ServiceEntry", "spec.workloadSelector", Enforced::Nothing),
    ("ServiceEntry", "spec.subjectAltNames", Enforced::Nothing),
    ("ServiceEntry", "spec.endpoints[].network", Enforced::Nothing),
    ("ServiceEntry", "spec.endpoints[].locality", Enforced::Nothing),
    ("ServiceEntry", "spec.endpoints[].weight", Enforced::Nothing),
    ("ServiceEntry", "spec.endpoints[].serviceAccount", Enforced::Nothing),
    // Splits space-delimited claims (`scope`) into lists for AuthorizationPolicy's claim matching.
    ("RequestAuthentication", "spec.jwtRules[].spaceDelimitedClaims", Enforced::Nothing),
];

/// Where `{policy}` expands to.
const POLICY_ROOTS: [&str; 4] = [
    "spec.trafficPolicy",
    "spec.trafficPolicy.portLevelSettings[]",
    "spec.subsets[].trafficPolicy",
    "spec.subsets[].trafficPolicy.portLevelSettings[]",
];

pub(super) fn check(set: &ConfigSet, out: &mut Diagnostics) {
    resources(&set.gateways, out);
    resources(&set.virtual_services, out);
    resources(&set.destination_rules, out);
    resources(&set.service_entries, out);
    resources(&set.request_authentications, out);
    for doc in &set.not_enforced {
        out.push(Diagnostic {
            severity: Severity::NotEnforced,
            file: Some(doc.origin.file.clone()),
            document: Some(doc.origin.document),
            line: Some(doc.origin.line),
            kind: Some(doc.kind.clone()),
            resource: doc.resource.clone(),
            ..Diagnostic::error(format!("{} is accepted, not enforced yet", doc.kind))
        });
    }
}

fn resources<T: Kind + Serialize>(list: &[Resource<T>], out: &mut Diagnostics) {
    let rows: Vec<(String, &Enforced)> = NOT_ENFORCED
        .iter()
        .filter(|(kind, _, _)| *kind == T::KIND)
        .flat_map(|(_, path, enforced)| match path.strip_prefix("{policy}") {
            Some(rest) => POLICY_ROOTS.iter().map(|root| (format!("{root}{rest}"), enforced)).collect(),
            None => vec![(path.to_string(), enforced)],
        })
        .collect();
    for resource in list {
        // Specs serialize only the fields present, under their Istio names.
        let Ok(spec) = serde_json::to_value(&resource.spec) else {
            continue;
        };
        let root = Value::Object(serde_json::Map::from_iter([("spec".to_owned(), spec)]));
        let mut at = At { resource, out: &mut *out };
        for (path, enforced) in &rows {
            let mut found = Vec::new();
            walk(&root, path, String::new(), &mut found);
            for (field, value) in found {
                match (enforced, value.as_str()) {
                    (Enforced::Nothing, _) => {
                        at.push(Severity::NotEnforced, field, "accepted, not enforced yet");
                    }
                    (Enforced::Values(allowed), Some(text)) => {
                        let enforced =
                            text.split(',').all(|item| allowed.iter().any(|a| a.eq_ignore_ascii_case(item.trim())));
                        if !enforced {
                            at.push(Severity::NotEnforced, field, format!("{text} is accepted, not enforced yet"));
                        }
                    }
                    (Enforced::Values(_), None) => {}
                }
            }
        }
    }
}

/// The values at `path` (one segment per `.`, `name[]` for each item of a list) under `value`,
/// with their field paths.
fn walk<'v>(value: &'v Value, path: &str, at: String, out: &mut Vec<(String, &'v Value)>) {
    if path.is_empty() {
        out.push((at, value));
        return;
    }
    let (segment, rest) = path.split_once('.').unwrap_or((path, ""));
    let (key, each) = match segment.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (segment, false),
    };
    let Some(child) = value.get(key) else {
        return;
    };
    let here = if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
    match (each, child) {
        (true, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, rest, format!("{here}[{i}]"), out);
            }
        }
        (true, _) => {}
        (false, child) => walk(child, rest, here, out),
    }
}
