//! Destinations → clusters: which ServiceEntry serves a host, which DestinationRule applies,
//! the cluster's endpoints (resolved here, off the request path) and merged traffic policy.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;

use crate::config::index::exported_to;
use crate::config::registry::Registry;
use crate::config::service_entry::{Location, Resolution, ServicePort};
use crate::config::{ConfigSet, Diagnostic, Severity};
use crate::snapshot::{pattern_covers, Cluster, ClusterId, Endpoint, HashTable, UpstreamProtocol};

use super::dns::Resolve;
use super::policy::Selected;
use super::tls::upstream_tls;
use crate::config::credentials::Secrets;
use crate::config::index::labels_subset;

/// Who is asking: the listener port (for an omitted destination port), the namespace that
/// consumes the route for exportTo (the Gateway's), and the VirtualService's namespace (whose
/// ServiceEntry wins, as in istiod's `buildNameToServiceMapForHTTPRoutes`).
pub(super) struct Ctx<'c> {
    pub listener_port: u16,
    pub consumer_ns: &'c str,
    pub vs_ns: &'c str,
}

pub(super) struct Clusters<'a> {
    set: &'a ConfigSet,
    resolver: &'a mut dyn Resolve,
    secrets: &'a Secrets<'a>,
    /// The gateway's own namespace, where a client `credentialName` is looked up, as istiod's
    /// SDS looks it up for the proxy.
    namespace: &'a str,
    registry: Registry<'a>,
    by_name: HashMap<Arc<str>, ClusterId>,
    pub clusters: Vec<Cluster>,
    /// (ServiceEntry, host, port) → every endpoint before subset filtering.
    endpoints: HashMap<(usize, String, u16), Rc<Vec<Endpoint>>>,
    /// DNS answers, once per name per compile.
    dns: HashMap<String, Vec<IpAddr>>,
    pub errors: Vec<Diagnostic>,
}

impl<'a> Clusters<'a> {
    pub(super) fn new(
        set: &'a ConfigSet,
        labels: &BTreeMap<String, String>,
        namespace: &'a str,
        secrets: &'a Secrets<'a>,
        resolver: &'a mut dyn Resolve,
    ) -> Self {
        Self {
            set,
            resolver,
            secrets,
            namespace,
            registry: Registry::new(set, labels, namespace),
            by_name: HashMap::new(),
            clusters: Vec::new(),
            endpoints: HashMap::new(),
            dns: HashMap::new(),
            errors: Vec::new(),
        }
    }

    /// A route destination: its port (given, else the service's only port, else the listener
    /// port, as istiod's `GetDestinationCluster`) and its cluster, `None` when nothing declares
    /// the host, port or subset (the route answers 503).
    pub(super) fn resolve(
        &mut self,
        host: &str,
        subset: Option<&str>,
        port: Option<u16>,
        ctx: &Ctx<'_>,
    ) -> (u16, Option<ClusterId>) {
        let service = self.registry.service_for(host, ctx.vs_ns, ctx.consumer_ns);
        let single_port = service.and_then(|i| match self.set.service_entries[i].spec.ports.as_slice() {
            [only] => u16::try_from(only.number).ok(),
            _ => None,
        });
        let port = port.or(single_port).unwrap_or(ctx.listener_port);
        let cluster = service.and_then(|i| self.ensure(i, host, port, subset, ctx.consumer_ns));
        (port, cluster)
    }

    /// The cluster `outbound|PORT|SUBSET|HOST`, built on first use. The first consumer to build
    /// a name fixes its policy; consumers in different namespaces seeing different rules for
    /// one host is the only case where that matters.
    fn ensure(
        &mut self,
        service: usize,
        host: &str,
        port: u16,
        subset: Option<&str>,
        consumer: &str,
    ) -> Option<ClusterId> {
        let name = format!("outbound|{port}|{}|{host}", subset.unwrap_or(""));
        if let Some(&id) = self.by_name.get(name.as_str()) {
            return Some(id);
        }
        let set = self.set;
        let se = &set.service_entries[service];
        let service_port = se.spec.ports.iter().find(|p| p.number == u32::from(port))?;
        let rules = self.registry.rules_for(host, consumer, se.namespace());
        let subset = match subset {
            Some(s) => Some(rules.subset(s)?),
            None => None,
        };
        let policy_rule = rules.policy();
        let selected = Selected::new(
            policy_rule.and_then(|r| r.spec.traffic_policy.as_ref()),
            subset.map(|(_, i, s)| (i, s)),
            port,
        );
        let mut policy = selected.traffic_policy();
        // A rule's DEFAULT (or none) leaves the choice to MeshConfig's h2UpgradePolicy
        // (istiod's `shouldH2Upgrade`).
        policy.h2_upgrade = policy.h2_upgrade.or(self.set.mesh.h2_upgrade);
        if let Some((tls, path)) = &selected.tls {
            match upstream_tls(tls, self.namespace, host, self.secrets) {
                Ok(t) => policy.tls = t,
                Err((field, message)) => {
                    let from_subset = path.starts_with("spec.subsets");
                    let rule = if from_subset { subset.map(|(r, _, _)| r) } else { policy_rule };
                    if let Some(rule) = rule {
                        self.errors.push(rule.diagnostic(Severity::Error, format!("{path}.{field}"), message));
                    }
                }
            }
        }
        let all = self.endpoints(service, host, service_port);
        let endpoints = match subset {
            Some((_, _, s)) => all.iter().filter(|e| labels_subset(&s.labels, &e.labels)).cloned().collect(),
            None => all.to_vec(),
        };
        let protocol = service_port.protocol.as_deref().map_or_else(|| "AUTO".to_string(), str::to_ascii_uppercase);
        policy.upstream_protocol = UpstreamProtocol::choose(&protocol, &policy);
        let id = self.clusters.len() as ClusterId;
        let name: Arc<str> = name.into();
        self.clusters.push(Cluster {
            name: name.clone(),
            host: host.into(),
            namespace: se.namespace().into(),
            port,
            subset: subset.map(|(_, _, s)| Arc::from(s.name.as_str())),
            protocol: protocol.into(),
            hash_table: HashTable::build(&policy.load_balancer, &endpoints),
            endpoints,
            policy,
        });
        self.by_name.insert(name, id);
        Some(id)
    }

    /// A ServiceEntry's endpoints for one host and port. STATIC: the listed addresses; DNS: the
    /// listed addresses (or the host itself) resolved now; NONE: none (Strait has no original
    /// destination to pass through to).
    fn endpoints(&mut self, service: usize, host: &str, port: &ServicePort) -> Rc<Vec<Endpoint>> {
        let number = u16::try_from(port.number).unwrap_or(0);
        let key = (service, host.to_string(), number);
        if let Some(found) = self.endpoints.get(&key) {
            return found.clone();
        }
        let set = self.set;
        let se = &set.service_entries[service].spec;
        let default_port = port.target_port.and_then(|p| u16::try_from(p).ok()).unwrap_or(number);
        let mut out = Vec::new();
        let resolution = se.resolution.unwrap_or(Resolution::None);
        let dns = matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin);
        if resolution == Resolution::Static || dns {
            if dns && se.endpoints.is_empty() {
                for ip in self.lookup(host) {
                    out.push(Endpoint {
                        addr: SocketAddr::new(ip, default_port),
                        weight: 1,
                        labels: Arc::default(),
                        locality: None,
                    });
                }
            }
            for ep in &se.endpoints {
                let Some(address) = ep.address.as_deref() else {
                    continue;
                };
                let ep_port = ep.ports.get(&port.name).and_then(|&p| u16::try_from(p).ok()).unwrap_or(default_port);
                let ips = match address.parse::<IpAddr>() {
                    Ok(ip) => vec![ip],
                    Err(_) if dns && !address.starts_with("unix://") => self.lookup(address),
                    Err(_) => {
                        tracing::warn!(address, host, "endpoint address is not an IP address; skipped");
                        continue;
                    }
                };
                let labels = Arc::new(ep.labels.clone());
                for ip in ips {
                    out.push(Endpoint {
                        addr: SocketAddr::new(ip, ep_port),
                        weight: ep.weight.filter(|&w| w > 0).unwrap_or(1),
                        labels: labels.clone(),
                        locality: ep.locality.as_deref().map(Arc::from),
                    });
                }
            }
            // DNS_ROUND_ROBIN is Envoy's LOGICAL_DNS: one address, the first answer.
            if resolution == Resolution::DnsRoundRobin {
                out.truncate(1);
            }
        }
        let out = Rc::new(out);
        self.endpoints.insert(key, out.clone());
        out
    }

    /// A name's addresses, asked of the resolver once per compile; a wildcard has none.
    fn lookup(&mut self, name: &str) -> Vec<IpAddr> {
        if let Some(found) = self.dns.get(name) {
            return found.clone();
        }
        let ips = if name.contains('*') { Vec::new() } else { self.resolver.lookup(name) };
        self.dns.insert(name.to_string(), ips.clone());
        ips
    }

    /// One cluster per ServiceEntry host × port, so /clusters lists every backend, whether or
    /// not a route names it; the ServiceEntry's own namespace is the consumer.
    pub(super) fn add_service_entry_clusters(&mut self) {
        let set = self.set;
        for (i, se) in set.service_entries.iter().enumerate() {
            for host in &se.spec.hosts {
                for port in &se.spec.ports {
                    if let Ok(port) = u16::try_from(port.number) {
                        self.ensure(i, &host.to_ascii_lowercase(), port, None, se.namespace());
                    }
                }
            }
        }
    }

    /// `AUTO_PASSTHROUGH` routes by the SNI `outbound_.PORT_.SUBSET_.HOST`: every mesh-internal
    /// service the server's hosts admit needs its clusters, subsets included, as istiod builds.
    pub(super) fn add_auto_passthrough_clusters(&mut self, server_hosts: &[&str], consumer: &str) {
        let set = self.set;
        for (i, se) in set.service_entries.iter().enumerate() {
            if se.spec.location != Some(Location::MeshInternal)
                || !exported_to(&se.spec.export_to, se.namespace(), consumer)
            {
                continue;
            }
            for host in &se.spec.hosts {
                let host = host.to_ascii_lowercase();
                if !server_hosts.iter().any(|p| pattern_covers(p, &host)) {
                    continue;
                }
                let subsets = self.registry.rules_for(&host, consumer, se.namespace()).subset_names();
                for port in se.spec.ports.iter().filter_map(|p| u16::try_from(p.number).ok()) {
                    self.ensure(i, &host, port, None, consumer);
                    for s in &subsets {
                        self.ensure(i, &host, port, Some(s), consumer);
                    }
                }
            }
        }
    }
}
