//! Validated [`ConfigSet`] → [`Snapshot`], the way istiod builds an ingress gateway's Envoy
//! configuration (ISTIO_SEMANTICS.md): Gateways selected by the instance labels, servers grouped
//! into listeners by port, VirtualServices bound per server, virtual hosts and ordered routes,
//! then the clusters the routes (and the ServiceEntries) need.
//!
//! Nothing here scans all of one kind per item of another: Gateways are found by key, servers by
//! host pattern, so 10,000 VirtualServices compile in linear time. (An AUTO_PASSTHROUGH server
//! walks the ServiceEntries once, since it serves every mesh-internal one.)
//!
//! exportTo: visibility is decided from the namespace of the gateway *workload* (`--namespace`),
//! as istiod decides it (`VirtualServicesForGateway(proxyNamespace, …)`, the gateway's
//! SidecarScope), not from the Gateway resource's: VirtualServices, ServiceEntries and
//! DestinationRules alike.

mod cluster;
mod compress;
mod dns;
mod http;
mod jwt;
mod l4;
mod policy;
mod ratelimit;
pub(crate) mod tls;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::authorization_policy;
use crate::config::gateway::{Port, ProtocolFamily, Server as ConfigServer};
use crate::config::virtual_service::HttpRoute;
use crate::config::{ConfigSet, Diagnostic, Diagnostics, Resource, Severity, VirtualService};
use crate::snapshot::authz::ext_authz::ExtAuthz;
use crate::snapshot::authz::{Authz, AuthzByPort, Layer, Scope};
use crate::snapshot::{
    intersect, FilterStage, HostTable, Listener, ListenerProtocol, PathNormalization, RequestStage, ResponseStage,
    RouteSource, RouteTable, Server, ServerTlsMode, Snapshot, VirtualHost,
};

use crate::config::credentials::Secrets;
use crate::config::index::{
    expand_host, exported_to, labels_subset, policy_attaches, resolve_gateway_name, HostIndex, ThisGateway,
};
use cluster::{Clusters, Ctx};
pub use dns::{distinct, Resolve, SystemResolver};
use http::{CompiledRoute, HttpTemplate, Instance, Regexes};
use ratelimit::LocalLimits;

/// What the snapshot is compiled for.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// This instance's labels, matched against Gateway selectors (`--label`).
    pub labels: BTreeMap<String, String>,
    /// Where `credentialName` falls back to when no Secret in the set has the name.
    pub secrets_dir: Option<PathBuf>,
    /// The gateway's own namespace (`--namespace`), where `credentialName` Secrets are found.
    pub namespace: String,
    /// Stamped on the snapshot to tell reloads apart.
    pub generation: u64,
    /// The workers that will serve it (`--workers`): the shared rate limit buckets keep a
    /// reservoir and counters for each.
    pub workers: usize,
}

impl Default for CompileOptions {
    /// Istio's default ingress gateway labels, as `strait run` uses with no `--label`.
    fn default() -> Self {
        Self {
            labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
            secrets_dir: None,
            namespace: crate::config::DEFAULT_NAMESPACE.to_string(),
            generation: 0,
            workers: 1,
        }
    }
}

/// Istio's default ingress gateway Deployment, which `strait run` stands for with no `--label`.
pub(crate) const DEFAULT_SOURCE_WORKLOAD: &str = "istio-ingressgateway";

/// The gateway's workload name from its labels, as Istio's gateway charts label the pod: the
/// `app` label (the Deployment's name), else `istio-` and the `istio` label
/// (`istio=egressgateway` is the `istio-egressgateway` Deployment), else Istio's ingress gateway.
pub(crate) fn source_workload(labels: &BTreeMap<String, String>) -> String {
    match (labels.get("app"), labels.get("istio")) {
        (Some(app), _) => app.clone(),
        (None, Some(istio)) => format!("istio-{istio}"),
        (None, None) => DEFAULT_SOURCE_WORKLOAD.to_string(),
    }
}

/// Compiles `set` (already validated) into a snapshot, DNS names asked of the system resolver.
/// Dangling references compile into 503 routes or unbound VirtualServices, as Istio serves
/// them; `Err` is only for what cannot be built at all, such as certificate files that cannot
/// be read.
pub fn compile(set: &ConfigSet, opts: &CompileOptions) -> Result<Snapshot, Diagnostics> {
    compile_with(set, opts, &mut SystemResolver)
}

/// [`compile`], with DNS names asked of `resolver`.
pub fn compile_with(
    set: &ConfigSet,
    opts: &CompileOptions,
    resolver: &mut dyn Resolve,
) -> Result<Snapshot, Diagnostics> {
    let jwt = jwt::compile(set, opts, resolver);
    let secrets = Secrets::new(set, opts.secrets_dir.as_deref());
    let mut clusters = Clusters::new(set, &opts.labels, &opts.namespace, &secrets, resolver);
    let mut errors = Vec::new();
    let limits = LocalLimits::new(set, opts, &mut errors);
    let mut c = Compiler {
        set,
        opts,
        errors,
        limits,
        templates: vec![None; set.virtual_services.len()],
        delegates: HashMap::new(),
        regexes: Regexes::default(),
        compressors: compress::Compressors::new(set, &opts.labels, &opts.namespace),
        http_authz: Vec::new(),
    };
    for (i, vs) in set.virtual_services.iter().enumerate() {
        // Only a VirtualService without hosts can be a delegate; the first of a name wins.
        if vs.spec.hosts.is_empty() {
            c.delegates.entry((vs.namespace(), vs.name())).or_insert(i);
        }
    }
    let plans = c.server_plans();
    let listeners = c.listeners(&plans, &secrets, &mut clusters);
    clusters.add_service_entry_clusters();
    c.errors.append(&mut clusters.errors);
    if !c.errors.is_empty() {
        return Err(Diagnostics(c.errors));
    }
    tracing::debug!(listeners = listeners.len(), clusters = clusters.clusters.len(), "snapshot compiled");
    let mut snapshot = Snapshot::new(opts.generation, listeners, clusters.clusters, secrets.watched());
    snapshot.source_workload = Arc::from(source_workload(&opts.labels));
    snapshot.rate_limit_services = c.limits.services();
    (snapshot.local_rate_limits, snapshot.global_rate_limits) = c.limits.finish();
    snapshot.source_namespace = Arc::from(opts.namespace.as_str());
    // istiod's gateway filter chain: JWT authentication, then authorization.
    let authz = (!c.http_authz.is_empty()).then(|| FilterStage::Authz(AuthzByPort(c.http_authz.into())));
    snapshot.filters = jwt.map(FilterStage::Jwt).into_iter().chain(authz).collect();
    snapshot.num_trusted_proxies = set.proxy.num_trusted_proxies;
    snapshot.proxy_protocol = set.proxy.proxy_protocol;
    snapshot.forward_client_cert = set.proxy.forward_client_cert;
    snapshot.path_normalization = {
        use crate::config::mesh_config::NormalizationType as N;
        match set.mesh.path_normalization.as_ref().and_then(|p| p.normalization) {
            Some(N::None) => PathNormalization::None,
            Some(N::MergeSlashes) => PathNormalization::MergeSlashes,
            Some(N::DecodeAndMergeSlashes) => PathNormalization::DecodeAndMergeSlashes,
            Some(N::Base | N::Default) | None => PathNormalization::Base,
        }
    };
    Ok(snapshot)
}

/// A Gateway server kept for this instance.
struct ServerPlan<'a> {
    /// Index into `ConfigSet::gateways`.
    gateway: usize,
    /// Index into the Gateway's `servers`.
    index: usize,
    server: &'a ConfigServer,
    port: u16,
    family: ListenerProtocol,
    bind: IpAddr,
    /// (namespace allowed to bind, `None` for any; lower-case host pattern).
    hosts: Vec<(Option<String>, String)>,
    /// VirtualServices bound to this server, in order, each with the virtual-host names the
    /// intersection of hosts gave.
    bound: Vec<(usize, Vec<String>)>,
}

/// A server host pattern's owner: (server plan, namespace allowed to bind).
type ServerHost = (usize, Option<String>);

struct Compiler<'a> {
    set: &'a ConfigSet,
    opts: &'a CompileOptions,
    errors: Vec<Diagnostic>,
    /// The local rate limits (ASMLocalRateLimiter, EnvoyFilter) the routes get as placed.
    limits: LocalLimits,
    /// Per VirtualService, its HTTP routes compiled once, on first use.
    templates: Vec<Option<Rc<Vec<HttpTemplate>>>>,
    delegates: HashMap<(&'a str, &'a str), usize>,
    regexes: Regexes,
    /// The compressor filters EnvoyFilters insert, by listener port.
    compressors: compress::Compressors,
    /// The AuthorizationPolicies of each HTTP port, in port order.
    http_authz: Vec<(u16, Arc<Authz>)>,
}

/// The listener a server's protocol family needs.
fn family(port: &Port) -> ListenerProtocol {
    match port.family() {
        ProtocolFamily::Http => ListenerProtocol::Http,
        ProtocolFamily::Tls => ListenerProtocol::Tls,
        ProtocolFamily::Tcp => ListenerProtocol::Tcp,
    }
}

/// Server host `ns/host`: `*/` or no prefix lets any namespace bind, `./` the Gateway's own.
fn server_host(host: &str, gateway_ns: &str) -> (Option<String>, String) {
    match host.split_once('/') {
        Some(("*", h)) => (None, h.to_ascii_lowercase()),
        Some((".", h)) => (Some(gateway_ns.to_string()), h.to_ascii_lowercase()),
        Some((ns, h)) => (Some(ns.to_string()), h.to_ascii_lowercase()),
        None => (None, host.to_ascii_lowercase()),
    }
}

fn route_source(vs: &Resource<VirtualService>, index: usize) -> RouteSource {
    RouteSource {
        file: vs.origin.file.display().to_string().into(),
        document: vs.origin.document,
        virtual_service: vs.key().into(),
        index,
    }
}

/// Virtual hosts being assembled: istiod's `vHostDedupMap`.
#[derive(Default)]
struct TableBuilder {
    index: HashMap<String, usize>,
    vhosts: Vec<(String, bool, Vec<CompiledRoute>)>,
}

impl TableBuilder {
    fn vhost(&mut self, host: &str) -> &mut (String, bool, Vec<CompiledRoute>) {
        let i = *self.index.entry(host.to_string()).or_insert_with(|| {
            self.vhosts.push((host.to_string(), false, Vec::new()));
            self.vhosts.len() - 1
        });
        &mut self.vhosts[i]
    }

    /// The table of listener `port`, each route with the local rate limit that applies to it.
    fn finish(self, port: u16, limits: &mut LocalLimits) -> RouteTable {
        let mut vhosts = HostTable::default();
        for (domain, https_redirect, routes) in self.vhosts {
            // istiod's SortVHostRoutes: catch-all routes last, the others in order.
            let (mut ordered, catch_all): (Vec<_>, Vec<_>) = routes.into_iter().partition(|r| !r.catch_all);
            ordered.extend(catch_all);
            let mut routes: Vec<_> = ordered.into_iter().map(|r| r.route).collect();
            for (index, route) in routes.iter_mut().enumerate() {
                limits.apply(port, &domain, index, route);
            }
            vhosts.insert(&domain, VirtualHost { domain: domain.as_str().into(), https_redirect, routes });
        }
        RouteTable { vhosts }
    }
}

impl<'a> Compiler<'a> {
    /// The servers of the Gateways selecting this instance, in config order, each bound to its
    /// VirtualServices. A server whose protocol family differs from the first on its port is
    /// dropped (validation refuses such sets; istiod keeps the first).
    fn server_plans(&mut self) -> Vec<ServerPlan<'a>> {
        let set = self.set;
        let mut plans: Vec<ServerPlan<'a>> = Vec::new();
        let mut gateway_by_key: HashMap<String, usize> = HashMap::new();
        let mut family_of_port: HashMap<u16, ListenerProtocol> = HashMap::new();
        for (gi, gw) in set.gateways.iter().enumerate() {
            if !labels_subset(&gw.spec.selector, &self.opts.labels) || gateway_by_key.contains_key(&gw.key()) {
                continue;
            }
            gateway_by_key.insert(gw.key(), gi);
            for (si, server) in gw.spec.servers.iter().enumerate() {
                let Some(port) = u16::try_from(server.port.number).ok().filter(|&p| p != 0) else {
                    tracing::warn!(gateway = %gw.key(), port = server.port.number, "server port out of range; skipped");
                    continue;
                };
                let bind = match server.bind.as_deref().filter(|b| !b.is_empty()) {
                    None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    Some(b) => match b.parse() {
                        Ok(ip) => ip,
                        Err(_) => {
                            tracing::warn!(gateway = %gw.key(), bind = b, "server bind is not an IP address; skipped");
                            continue;
                        }
                    },
                };
                let family = family(&server.port);
                if *family_of_port.entry(port).or_insert(family) != family {
                    tracing::warn!(gateway = %gw.key(), port, "server protocol conflicts with the port's first server; skipped");
                    continue;
                }
                let hosts = server.hosts.iter().map(|h| server_host(h, gw.namespace())).collect();
                plans.push(ServerPlan { gateway: gi, index: si, server, port, family, bind, hosts, bound: Vec::new() });
            }
        }
        self.bind(&mut plans, &gateway_by_key);
        plans
    }

    /// Binds every VirtualService to the servers of the Gateways it names, through the servers'
    /// host patterns indexed per Gateway: cost per VirtualService is its hosts × the patterns
    /// that actually intersect them.
    fn bind(&self, plans: &mut [ServerPlan<'a>], gateway_by_key: &HashMap<String, usize>) {
        let set = self.set;
        let mut entries: HashMap<usize, Vec<(String, ServerHost)>> = HashMap::new();
        for (pi, plan) in plans.iter().enumerate() {
            for (ns, pattern) in &plan.hosts {
                entries.entry(plan.gateway).or_default().push((pattern.clone(), (pi, ns.clone())));
            }
        }
        let indexes: HashMap<usize, HostIndex<ServerHost>> =
            entries.into_iter().map(|(gw, e)| (gw, HostIndex::new(e))).collect();
        for (vi, vs) in set.virtual_services.iter().enumerate() {
            let ns = vs.namespace();
            let mut gateways: Vec<usize> = Vec::new();
            for g in &vs.spec.gateways {
                let Some(&gi) = gateway_by_key.get(&resolve_gateway_name(g, ns)) else {
                    continue;
                };
                if !gateways.contains(&gi) && exported_to(&vs.spec.export_to, ns, &self.opts.namespace) {
                    gateways.push(gi);
                }
            }
            if gateways.is_empty() || vs.spec.hosts.is_empty() {
                continue;
            }
            let hosts: Vec<String> = vs.spec.hosts.iter().map(|h| expand_host(h, ns)).collect();
            let admits = |allowed: &Option<String>| allowed.as_deref().is_none_or(|a| a == ns);
            for gi in gateways {
                let Some(index) = indexes.get(&gi) else {
                    continue;
                };
                // (server, virtual host): the narrower of the two patterns, as host.Intersection.
                // The index yields only the server patterns that intersect `h`.
                let mut found: Vec<(usize, String)> = Vec::new();
                for h in &hosts {
                    let patterns = index.covering(h).chain(index.covered_by(h));
                    for (pattern, list) in patterns {
                        let Some(vhost) = intersect(pattern, h) else {
                            continue;
                        };
                        let admitted = list.iter().filter(|(_, a)| admits(a));
                        found.extend(admitted.map(|(pi, _)| (*pi, vhost.clone())));
                    }
                }
                found.sort();
                found.dedup();
                for (pi, host) in found {
                    match plans[pi].bound.last_mut() {
                        Some((v, hosts)) if *v == vi => hosts.push(host),
                        _ => plans[pi].bound.push((vi, vec![host])),
                    }
                }
            }
        }
    }

    /// The HTTP routes of VirtualService `vi`, delegates merged in, compiled on first use.
    fn templates(&mut self, vi: usize) -> Rc<Vec<HttpTemplate>> {
        if let Some(t) = &self.templates[vi] {
            return t.clone();
        }
        let set = self.set;
        let vs = &set.virtual_services[vi];
        let ns = vs.namespace();
        let source = route_source(vs, 0);
        let mut out = Vec::new();
        for (i, route) in vs.spec.http.iter().enumerate() {
            let Some(delegate) = &route.delegate else {
                self.compile_route(vs, &source, i, route, ns, &mut out);
                continue;
            };
            let dns = delegate.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(ns);
            let dname = delegate.name.as_deref().unwrap_or_default();
            // A missing or unexported delegate drops only this route, as istiod does.
            let Some(&di) = self.delegates.get(&(dns, dname)) else {
                tracing::debug!(virtual_service = %vs.key(), "delegate {dns}/{dname} not found");
                continue;
            };
            let dvs = &set.virtual_services[di];
            if !exported_to(&dvs.spec.export_to, dns, ns) {
                continue;
            }
            let root = http::resolved(route, ns);
            let delegate_source = route_source(dvs, 0);
            for (j, sub) in dvs.spec.http.iter().enumerate() {
                // One level of delegation only.
                if sub.delegate.is_some() {
                    continue;
                }
                if let Some(merged) = http::merge_delegate(&root, http::resolved(sub, dns)) {
                    self.compile_route(dvs, &delegate_source, j, &merged, dns, &mut out);
                }
            }
        }
        let out = Rc::new(out);
        self.templates[vi] = Some(out.clone());
        out
    }

    /// Compiles `vs`'s route `i` into `out`, or records why it cannot be.
    fn compile_route(
        &mut self,
        vs: &Resource<VirtualService>,
        source: &RouteSource,
        i: usize,
        route: &HttpRoute,
        ns: &str,
        out: &mut Vec<HttpTemplate>,
    ) {
        let source = RouteSource { index: i, ..source.clone() };
        match http::compile_route(route, ns, source, &mut self.regexes) {
            Ok(Some(t)) => out.push(t),
            Ok(None) => {}
            Err((field, message)) => {
                self.errors.push(vs.diagnostic(Severity::Error, format!("spec.http[{i}].{field}"), message))
            }
        }
    }

    /// Adds the routes of every VirtualService bound to `plan` to `table`.
    fn add_http_routes(
        &mut self,
        plan: &ServerPlan<'a>,
        table: &mut TableBuilder,
        redirect: bool,
        clusters: &mut Clusters<'_>,
    ) {
        let gw = &self.set.gateways[plan.gateway];
        let key = gw.key();
        let compression = self.compressors.for_port(plan.port);
        for (vi, hosts) in &plan.bound {
            let templates = self.templates(*vi);
            let inst = Instance {
                gateway: &key,
                labels: &self.opts.labels,
                ctx: Ctx {
                    listener_port: plan.port,
                    consumer_ns: &self.opts.namespace,
                    vs_ns: self.set.virtual_services[*vi].namespace(),
                },
            };
            let mut routes = http::instantiate(&templates, &inst, clusters);
            if let Some(c) = &compression {
                // The compressor sits before the router: its request half after the route's
                // CORS and fault, its response half after the router's edits.
                for r in &mut routes {
                    let p = &mut r.route.policy;
                    p.request = p.request.iter().cloned().chain([RequestStage::Compress(c.clone())]).collect();
                    p.response = p.response.iter().cloned().chain([ResponseStage::Compress(c.clone())]).collect();
                }
            }
            // istiod skips a VirtualService with no route for this server: no virtual host.
            if routes.is_empty() {
                continue;
            }
            // Most VirtualServices have one host: the last host takes the routes, the others
            // get copies.
            let Some((last, rest)) = hosts.split_last() else {
                continue;
            };
            for host in rest {
                let vhost = table.vhost(host);
                vhost.1 |= redirect;
                vhost.2.extend(routes.iter().cloned());
            }
            let vhost = table.vhost(last);
            vhost.1 |= redirect;
            vhost.2.extend(routes);
        }
        if redirect {
            // A redirecting server answers 301 for all its hosts, VirtualService or not.
            for (_, pattern) in &plan.hosts {
                table.vhost(pattern).1 = true;
            }
        }
    }

    /// The AuthorizationPolicies that apply to this gateway, compiled for `scope`; `None` when
    /// none does.
    fn authz(&self, scope: Scope, clusters: &mut Clusters<'_>) -> Option<Arc<Authz>> {
        let (opts, root) = (self.opts, self.set.mesh.root_namespace.as_str());
        let applying: Vec<_> = self
            .set
            .authorization_policies
            .iter()
            .filter(|p| {
                let gateway = ThisGateway { namespace: &opts.namespace, root, labels: &opts.labels };
                policy_attaches(&p.spec.attachment(p.namespace()), &gateway).is_ok()
            })
            .collect();
        // The providers CUSTOM policies name, each reaching its service as a route destination
        // in the gateway's namespace would (istiod's `LookupCluster`).
        let providers: Vec<_> = if applying.iter().any(|p| p.spec.action() == authorization_policy::Action::Custom) {
            let consumer = opts.namespace.as_str();
            self.set
                .mesh
                .extension_providers
                .iter()
                .filter_map(|p| {
                    let (host, port) = ExtAuthz::service(p)?;
                    let ctx = Ctx { listener_port: port, consumer_ns: consumer, vs_ns: consumer };
                    let (_, cluster) = clusters.resolve(host, None, Some(port), &ctx);
                    ExtAuthz::compile(p, cluster).map(Arc::new)
                })
                .collect()
        } else {
            Vec::new()
        };
        let authz = crate::snapshot::authz::compile(&applying, scope, &providers);
        (!authz.is_empty()).then(|| Arc::new(authz))
    }

    fn listeners(
        &mut self,
        plans: &[ServerPlan<'a>],
        secrets: &Secrets<'_>,
        clusters: &mut Clusters<'_>,
    ) -> Vec<Listener> {
        let set = self.set;
        let consumer = self.opts.namespace.as_str();
        let mut by_port: BTreeMap<u16, Vec<&ServerPlan<'a>>> = BTreeMap::new();
        for plan in plans {
            by_port.entry(plan.port).or_default().push(plan);
        }
        let empty = Arc::new(RouteTable::default());
        let mut listeners = Vec::with_capacity(by_port.len());
        for (port, plans) in by_port {
            let protocol = plans[0].family;
            let bind = plans[0].bind;
            let mut http_table = (protocol == ListenerProtocol::Http).then(TableBuilder::default);
            let mut sni = HostTable::default();
            let mut seen_sni = HashSet::new();
            let mut servers = Vec::with_capacity(plans.len());
            for (si, plan) in plans.iter().enumerate() {
                if plan.bind != bind {
                    tracing::warn!(port, "servers on one port bind different addresses; the first server's is used");
                }
                let gw = &set.gateways[plan.gateway];
                // TCP and TLS routes are picked from the bound VirtualServices' own lists.
                let bound = || -> Vec<_> {
                    let vs = plan.bound.iter().map(|(vi, _)| &set.virtual_services[*vi]);
                    vs.map(|vs| (vs, route_source(vs, 0))).collect()
                };
                let mut server = Server {
                    gateway: gw.key().into(),
                    port_name: plan.server.port.name.as_deref().unwrap_or_default().into(),
                    protocol: plan.server.port.protocol.to_ascii_uppercase().into(),
                    hosts: plan.server.hosts.iter().map(|h| Arc::from(h.as_str())).collect(),
                    tls: None,
                    routes: empty.clone(),
                    tcp_routes: Vec::new(),
                    tls_routes: Vec::new(),
                };
                match protocol {
                    ListenerProtocol::Http => {
                        let redirect = plan.server.tls.as_ref().is_some_and(|t| t.https_redirect);
                        if let Some(table) = http_table.as_mut() {
                            self.add_http_routes(plan, table, redirect, clusters);
                        }
                    }
                    ListenerProtocol::Tcp => {
                        server.tcp_routes = l4::tcp_routes(&bound(), port, &gw.key(), consumer, clusters);
                    }
                    ListenerProtocol::Tls => {
                        let https = server.protocol.as_ref() == "HTTPS";
                        let h2 = https && !set.proxy.https_http2_disabled;
                        server.tls = plan.server.tls.as_ref().and_then(|t| {
                            match tls::server_tls(t, &self.opts.namespace, secrets, https, h2) {
                                Ok(t) => Some(t),
                                Err((field, message)) => {
                                    self.errors.push(gw.diagnostic(
                                        Severity::Error,
                                        format!("spec.servers[{}].tls.{field}", plan.index),
                                        message,
                                    ));
                                    None
                                }
                            }
                        });
                        match server.tls.as_ref().map_or(ServerTlsMode::Passthrough, |t| t.mode) {
                            ServerTlsMode::Passthrough => {
                                server.tls_routes =
                                    l4::tls_routes(&bound(), port, &gw.key(), consumer, &mut seen_sni, clusters);
                            }
                            ServerTlsMode::AutoPassthrough => {
                                let hosts: Vec<&str> = plan.hosts.iter().map(|(_, h)| h.as_str()).collect();
                                clusters.add_auto_passthrough_clusters(&hosts, consumer);
                            }
                            // HTTPS terminates and routes HTTP on the server's own routes; a TLS
                            // server terminates and proxies TCP.
                            _ if server.protocol.as_ref() == "HTTPS" => {
                                let mut table = TableBuilder::default();
                                self.add_http_routes(plan, &mut table, false, clusters);
                                server.routes = Arc::new(table.finish(port, &mut self.limits));
                            }
                            _ => server.tcp_routes = l4::tcp_routes(&bound(), port, &gw.key(), consumer, clusters),
                        }
                        for (_, pattern) in &plan.hosts {
                            // The first server claiming a name on the port keeps it.
                            if sni.get_pattern_mut(pattern).is_none() {
                                sni.insert(pattern, si);
                            }
                        }
                    }
                }
                servers.push(server);
            }
            let http_routes = match http_table {
                Some(table) => {
                    let table = Arc::new(table.finish(port, &mut self.limits));
                    for s in &mut servers {
                        s.routes = table.clone();
                    }
                    table
                }
                None => empty.clone(),
            };
            let proxies_tcp = servers.iter().any(|s| !s.tcp_routes.is_empty());
            let l4_authz = proxies_tcp.then(|| self.authz(Scope { port, layer: Layer::Tcp }, clusters)).flatten();
            // HTTP, and HTTPS terminated: the port's policies meet every request before routing.
            let terminates_https = |s: &Server| {
                s.protocol.as_ref() == "HTTPS"
                    && s.tls
                        .as_ref()
                        .is_some_and(|t| !matches!(t.mode, ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough))
            };
            if protocol == ListenerProtocol::Http || servers.iter().any(terminates_https) {
                if let Some(authz) = self.authz(Scope { port, layer: Layer::Http }, clusters) {
                    self.http_authz.push((port, authz));
                }
            }
            listeners.push(Listener { port, bind, protocol, servers, http_routes, sni, l4_authz });
        }
        listeners
    }
}
