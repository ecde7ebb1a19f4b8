//! Dangling references, as `istioctl analyze` reports them (IST0101): a Gateway, destination
//! host, port or subset that nothing in the set declares. Lookups go through the same
//! [`Registry`] and name rules as the compiler, so what is reported here is what serves a 503
//! (or binds nowhere).

use std::collections::{BTreeMap, HashSet};

use super::At;
use crate::config::index::{expand_host, resolve_gateway_name};
use crate::config::registry::Registry;
use crate::config::virtual_service::{Destination, VirtualService};
use crate::config::{ConfigSet, Diagnostics, Severity};

pub(super) fn check(set: &ConfigSet, labels: &BTreeMap<String, String>, namespace: &str, out: &mut Diagnostics) {
    let gateways: HashSet<String> = set.gateways.iter().map(|g| g.key()).collect();
    let registry = Registry::new(set, labels, namespace);
    for vs in &set.virtual_services {
        let ns = vs.namespace();
        let mut at = At { resource: vs, out: &mut *out };
        let mut names: Vec<(String, &str)> =
            vs.spec.gateways.iter().enumerate().map(|(i, g)| (format!("spec.gateways[{i}]"), g.as_str())).collect();
        for (i, route) in vs.spec.http.iter().enumerate() {
            for (j, m) in route.matches.iter().enumerate() {
                for (k, g) in m.gateways.iter().enumerate() {
                    names.push((format!("spec.http[{i}].match[{j}].gateways[{k}]"), g));
                }
            }
        }
        let l4 = |kind: &str, i: usize, j: usize, k: usize| format!("spec.{kind}[{i}].match[{j}].gateways[{k}]");
        for (i, route) in vs.spec.tcp.iter().enumerate() {
            for (j, m) in route.matches.iter().enumerate() {
                names.extend(m.gateways.iter().enumerate().map(|(k, g)| (l4("tcp", i, j, k), g.as_str())));
            }
        }
        for (i, route) in vs.spec.tls.iter().enumerate() {
            for (j, m) in route.matches.iter().enumerate() {
                names.extend(m.gateways.iter().enumerate().map(|(k, g)| (l4("tls", i, j, k), g.as_str())));
            }
        }
        // The namespace routes are consumed from: the gateway's own (`--namespace`, as istiod
        // decides visibility from the gateway workload's) when a Gateway that exists is named,
        // else (a mesh-only VirtualService) the VirtualService's.
        let mut consumer = ns;
        for (field, name) in &names {
            let key = resolve_gateway_name(name, ns);
            if key == "mesh" {
                continue;
            }
            if gateways.contains(&key) {
                consumer = namespace;
            } else {
                at.push(Severity::Dangling, field.as_str(), format!("referenced gateway not found: {key}"));
            }
        }
        let refs = Refs { registry: &registry, consumer, namespace: ns };
        for (i, route) in vs.spec.http.iter().enumerate() {
            for (j, r) in route.route.iter().enumerate() {
                let field = format!("spec.http[{i}].route[{j}].destination");
                refs.destination(&mut at, &field, &r.destination);
            }
            if let Some(m) = &route.mirror {
                refs.destination(&mut at, &format!("spec.http[{i}].mirror"), m);
            }
            for (j, m) in route.mirrors.iter().enumerate() {
                let field = format!("spec.http[{i}].mirrors[{j}].destination");
                refs.destination(&mut at, &field, &m.destination);
            }
        }
        for (kind, routes) in [
            ("tcp", vs.spec.tcp.iter().map(|r| &r.route).collect::<Vec<_>>()),
            ("tls", vs.spec.tls.iter().map(|r| &r.route).collect()),
        ] {
            for (i, route) in routes.into_iter().enumerate() {
                for (j, r) in route.iter().enumerate() {
                    let field = format!("spec.{kind}[{i}].route[{j}].destination");
                    refs.destination(&mut at, &field, &r.destination);
                }
            }
        }
    }
}

/// How one VirtualService's destinations resolve.
struct Refs<'r, 'a> {
    registry: &'r Registry<'a>,
    /// The namespace the routes are consumed from.
    consumer: &'r str,
    /// The VirtualService's namespace: short names expand in it.
    namespace: &'r str,
}

impl Refs<'_, '_> {
    /// At most one diagnostic per destination: the first of host, port, subset that is missing.
    fn destination(&self, at: &mut At<'_, VirtualService>, field: &str, d: &Destination) {
        // An empty or `*` host is an Error already; it references nothing to look up.
        if d.host.is_empty() || d.host == "*" {
            return;
        }
        let host = expand_host(&d.host, self.namespace);
        let consumer = self.consumer;
        let Some(i) = self.registry.service_for(&host, self.namespace, consumer) else {
            at.push(
                Severity::Dangling,
                format!("{field}.host"),
                format!(
                    "referenced host not found: {host} (no ServiceEntry visible from \
                     namespace {consumer} declares it)"
                ),
            );
            return;
        };
        let se = self.registry.service_entry(i);
        let ports = &se.spec.ports;
        match &d.port {
            Some(p) if !ports.iter().any(|sp| sp.number == p.number) => {
                at.push(
                    Severity::Dangling,
                    format!("{field}.port.number"),
                    format!("referenced port not found: ServiceEntry {} has no port {} for {host}", se.key(), p.number),
                );
                return;
            }
            None if ports.len() > 1 => {
                let numbers: Vec<String> = ports.iter().map(|p| p.number.to_string()).collect();
                at.push(
                    Severity::Dangling,
                    field,
                    format!(
                        "destination port is required: ServiceEntry {} has several ports \
                         for {host} ({})",
                        se.key(),
                        numbers.join(", ")
                    ),
                );
                return;
            }
            _ => {}
        }
        if let Some(subset) = d.subset.as_deref().filter(|s| !s.is_empty()) {
            let rules = self.registry.rules_for(&host, consumer, se.namespace());
            if rules.subset(subset).is_none() {
                at.push(
                    Severity::Dangling,
                    format!("{field}.subset"),
                    format!(
                        "referenced subset not found: no DestinationRule visible from \
                         namespace {consumer} declares subset {subset} for {host}"
                    ),
                );
            }
        }
    }
}
