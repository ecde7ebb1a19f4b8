//! The compiled, immutable route snapshot the data plane reads; built off the request path.
//!
//! `compile` turns a validated [`crate::config::ConfigSet`] into a [`Snapshot`]: listeners by
//! port → servers (TLS settings, admitted hosts) → virtual hosts → ordered routes with
//! pre-compiled matchers and stages → clusters. Workers hold an `Arc<Snapshot>` per request,
//! so a reload (a new snapshot swapped in with arc-swap) never shows a request half of each.

pub mod authz;
mod cluster;
mod compile;
mod compress;
mod hash;
mod hosts;
pub mod jwt;
mod matcher;
mod ratelimit;
mod route;
mod stage;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

pub use crate::config::credentials::{FileStamp, WatchedFile};
pub use cluster::*;
pub use compile::tls::system_roots;
pub use compile::tls::verify::{AnyOfNames, SkipVerify};
pub use compile::{compile, compile_with, distinct, CompileOptions, Resolve, SystemResolver};
pub use compress::{Compression, Compressor, Library};
pub use hash::{hash_bytes, ip_hash, HashTable};
pub use hosts::{intersect, pattern_covers, strip_port, HostTable};
pub use matcher::*;
pub use ratelimit::*;
pub use route::*;
pub use stage::{FilterStage, RequestStage, ResponseStage};

/// Index into [`Snapshot::clusters`]; only meaningful within one snapshot.
pub type ClusterId = u32;

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Counts reloads, so stats and /config_dump can tell snapshots apart.
    pub generation: u64,
    /// Sorted by port.
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// Certificate files (and config files holding the Secrets used) as they were read: the
    /// control thread reloads when one changes on disk.
    pub watched: Vec<WatchedFile>,
    /// The gateway's workload as Istio's `source_workload`, `source_app` and
    /// `source_canonical_service` metric labels name it (see `compile::source_workload`).
    pub source_workload: Arc<str>,
    /// The local rate limits the routes' stages name by [`RateLimitId`], each with its live
    /// bucket.
    pub local_rate_limits: Vec<Arc<LocalRateLimit>>,
    /// The global rate limits the routes' stages name by [`GlobalLimitId`] (counted in Redis).
    pub global_rate_limits: Vec<GlobalRateLimit>,
    /// The rate limit services EnvoyFilter's `ratelimit` inserts ask, with their counters.
    pub rate_limit_services: Vec<Arc<RateLimitService>>,
    /// The gateway's own namespace (`--namespace`), Istio's `source_workload_namespace`.
    pub source_namespace: Arc<str>,
    /// The gateway's own HTTP filters, run on every HTTP request before routing, in order.
    pub filters: Box<[FilterStage]>,
    /// ProxyConfig's `gatewayTopology.numTrustedProxies` (see [`authz::remote_ip`]).
    pub num_trusted_proxies: u32,
    /// ProxyConfig's `gatewayTopology.proxyProtocol`: every connection opens with a PROXY header.
    pub proxy_protocol: bool,
    /// ProxyConfig's `gatewayTopology.forwardClientCertDetails`.
    pub forward_client_cert: crate::config::proxy_config::ForwardClientCert,
    /// MeshConfig `pathNormalization`.
    pub path_normalization: PathNormalization,
    /// `clusters` by name: AUTO_PASSTHROUGH looks one up per connection, and a reload of ten
    /// thousand clusters looks each up in the last snapshot.
    by_name: HashMap<Arc<str>, ClusterId>,
}

/// MeshConfig `pathNormalization` (see `http::normalize`): unset and `DEFAULT` are `BASE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PathNormalization {
    None,
    #[default]
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
}

impl Snapshot {
    pub fn new(generation: u64, listeners: Vec<Listener>, clusters: Vec<Cluster>, watched: Vec<WatchedFile>) -> Self {
        let by_name = clusters.iter().enumerate().map(|(i, c)| (c.name.clone(), i as ClusterId)).collect();
        let source_workload = Arc::from(compile::DEFAULT_SOURCE_WORKLOAD);
        let source_namespace = Arc::from(crate::config::DEFAULT_NAMESPACE);
        Self {
            generation,
            listeners,
            clusters,
            watched,
            source_workload,
            source_namespace,
            num_trusted_proxies: 0,
            proxy_protocol: false,
            path_normalization: PathNormalization::Base,
            forward_client_cert: Default::default(),
            local_rate_limits: Vec::new(),
            global_rate_limits: Vec::new(),
            rate_limit_services: Vec::new(),
            filters: Box::default(),
            by_name,
        }
    }

    pub fn local_rate_limit(&self, id: RateLimitId) -> &LocalRateLimit {
        &self.local_rate_limits[id as usize]
    }

    pub fn global_rate_limit(&self, id: GlobalLimitId) -> &GlobalRateLimit {
        &self.global_rate_limits[id as usize]
    }

    pub fn listener(&self, port: u16) -> Option<&Listener> {
        self.listeners.binary_search_by_key(&port, |l| l.port).ok().map(|i| &self.listeners[i])
    }

    pub fn cluster(&self, id: ClusterId) -> &Cluster {
        &self.clusters[id as usize]
    }

    /// Keeps the session ticket keys and session cache of every terminating server that
    /// `previous` had with the same TLS settings, so that its clients still resume after a
    /// reload; a server that is new, or whose settings changed, keeps the fresh ones it was
    /// compiled with, which no session made before can open (ISTIO_SEMANTICS.md, TLS sessions).
    /// A server is the same one when its port, Gateway and hosts are.
    ///
    /// A local rate limit whose key and config are unchanged keeps its bucket (and counters),
    /// as the clusters keep their live state: a reload for another resource neither refills
    /// nor empties it. A changed one starts full.
    pub fn inherit(&mut self, previous: &Snapshot) {
        let before: HashMap<&str, &Arc<LocalRateLimit>> =
            previous.local_rate_limits.iter().map(|l| (&*l.key, l)).collect();
        for limit in &mut self.local_rate_limits {
            if let Some(old) = before.get(&*limit.key).filter(|old| old.source == limit.source) {
                *limit = Arc::clone(old);
            }
        }
        let before = previous.servers_by_key();
        let same: Vec<((usize, usize), &Server)> = self
            .servers_by_key()
            .into_iter()
            .filter_map(|(key, at)| before.get(&key).map(|&(l, i)| (at, &previous.listeners[l].servers[i])))
            .collect();
        for ((l, i), old) in same {
            let server = &mut self.listeners[l].servers[i];
            let same_protocol = server.protocol == old.protocol;
            if let (Some(tls), Some(old_tls)) = (&mut server.tls, &old.tls) {
                if same_protocol && tls.same_handshake(old_tls) {
                    tls.share_sessions(old_tls);
                }
            }
        }
    }

    /// Every server's (listener, server) index by its identity.
    fn servers_by_key(&self) -> HashMap<ServerKey<'_>, (usize, usize)> {
        let mut servers = HashMap::new();
        for (l, listener) in self.listeners.iter().enumerate() {
            for (i, server) in listener.servers.iter().enumerate() {
                servers.insert(server.key(listener.port), (l, i));
            }
        }
        servers
    }

    pub fn cluster_by_name(&self, name: &str) -> Option<ClusterId> {
        self.by_name.get(name).copied()
    }
}

/// A Gateway server's identity across reloads: its port, Gateway and hosts.
type ServerKey<'s> = (u16, &'s str, &'s [Arc<str>]);

/// Everything served on one port: Envoy's listener. All servers on a port share one protocol
/// family (validation refuses conflicts).
#[derive(Debug)]
pub struct Listener {
    pub port: u16,
    /// `bind` of the servers, else 0.0.0.0.
    pub bind: IpAddr,
    pub protocol: ListenerProtocol,
    /// In config order.
    pub servers: Vec<Server>,
    /// Plain HTTP: one route table merged over every server of the port, as istiod builds the
    /// `http.PORT` route configuration.
    pub http_routes: Arc<RouteTable>,
    /// TLS ports: server index by SNI (exact, longest wildcard, then a `*` server as default).
    pub sni: HostTable<usize>,
    /// The AuthorizationPolicies a connection to one of the port's `tcp`/`tls` routes meets at
    /// its start (Envoy's network RBAC filter), compiled for layer 4.
    pub l4_authz: Option<Arc<authz::Authz>>,
}

impl Listener {
    /// The first `tcp` route, over the port's servers in config order, that admits a connection
    /// from `peer` (the client: a PROXY header's source where one was read, as Envoy's filter
    /// chain match sees it) to `local`.
    pub fn tcp_route(&self, local: IpAddr, peer: IpAddr) -> Option<&L4Route> {
        self.servers.iter().flat_map(|s| &s.tcp_routes).find(|r| r.matches(None, local, peer))
    }

    /// The server a TLS connection lands on; `None` closes the connection (no default chain).
    pub fn server_for_sni(&self, sni: Option<&str>) -> Option<&Server> {
        let index = match sni {
            Some(name) => self.sni.lookup(name),
            None => self.sni.lookup("*"),
        };
        index.map(|&i| &self.servers[i])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// HTTP, HTTP2, GRPC, GRPC-WEB: HTTP/1.1 routing on plain connections.
    Http,
    /// HTTPS and TLS servers: a filter chain per server chosen by SNI.
    Tls,
    /// TCP and the opaque protocols (MONGO, REDIS, MYSQL, …).
    Tcp,
}

/// One Gateway server: Envoy's filter chain.
#[derive(Debug)]
pub struct Server {
    /// `namespace/name` of the Gateway.
    pub gateway: Arc<str>,
    /// `port.name`, for stats.
    pub port_name: Arc<str>,
    /// The protocol as written (upper-cased): HTTP, HTTPS, TLS, TCP, MONGO, …
    pub protocol: Arc<str>,
    pub hosts: Vec<Arc<str>>,
    pub tls: Option<ServerTls>,
    /// HTTPS: this server's own routes; HTTP: the listener's merged table.
    pub routes: Arc<RouteTable>,
    pub tcp_routes: Vec<L4Route>,
    /// PASSTHROUGH servers: `tls` routes matched on SNI.
    pub tls_routes: Vec<L4Route>,
}

impl Server {
    fn key(&self, port: u16) -> ServerKey<'_> {
        (port, &self.gateway, &self.hosts)
    }

    /// Whether a connection made under `old`, a server of the same port, goes on under `self`:
    /// the same server with the same TLS rules ([`ServerTls::same_rules`]). Only its secrets may
    /// have changed: Envoy updates those in place (SDS) and keeps its connections, their
    /// handshake done, while other TLS settings make a new filter chain, whose old connections
    /// it drains.
    pub fn continues(&self, old: &Server) -> bool {
        let rules = match (&self.tls, &old.tls) {
            (Some(now), Some(then)) => now.same_rules(then),
            (now, then) => now.is_none() && then.is_none(),
        };
        rules && self.gateway == old.gateway && self.hosts == old.hosts && self.protocol == old.protocol
    }
}

/// Downstream TLS of a server, certificate material already read and checked.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub mode: ServerTlsMode,
    pub cert_chain: Option<Arc<[u8]>>,
    pub private_key: Option<Arc<[u8]>>,
    pub ca_certificates: Option<Arc<[u8]>>,
    /// PEM CRLs checked with `ca_certificates`, every CA of a client's chain needing one.
    pub ca_crl: Option<Arc<[u8]>>,
    /// Files the material came from (empty for `credentialName` secrets in the config), watched
    /// for changes.
    pub source_files: Vec<Arc<std::path::Path>>,
    pub subject_alt_names: Vec<Arc<str>>,
    pub verify_certificate_spki: Vec<Arc<str>>,
    pub verify_certificate_hash: Vec<Arc<str>>,
    pub min_protocol_version: Option<TlsVersion>,
    pub max_protocol_version: Option<TlsVersion>,
    pub cipher_suites: Vec<Arc<str>>,
    /// The rustls settings built from all of the above; `None` for the passthrough modes.
    pub config: Option<TlsConfig<rustls::ServerConfig>>,
    /// The certificate's first URI SAN: the gateway's identity, XFCC's `By`.
    pub uri_san: Option<Arc<str>>,
}

impl ServerTls {
    /// Whether a handshake under `other` checks exactly what one under `self` does: the same
    /// rules ([`ServerTls::same_rules`]) over the same certificate, key, client CA and CRL.
    fn same_handshake(&self, other: &ServerTls) -> bool {
        self.same_rules(other)
            && self.cert_chain == other.cert_chain
            && self.private_key == other.private_key
            && self.ca_certificates == other.ca_certificates
            && self.ca_crl == other.ca_crl
    }

    /// The settings an Istio gateway writes into the listener's filter chain (mode, identity
    /// pins, versions, suites), as opposed to the secrets SDS updates in place (certificate,
    /// key, client CA, CRL).
    fn same_rules(&self, other: &ServerTls) -> bool {
        // Destructured so that a new setting cannot be forgotten here.
        let ServerTls {
            mode,
            cert_chain: _,
            private_key: _,
            ca_certificates: _,
            ca_crl: _,
            source_files: _,
            subject_alt_names,
            verify_certificate_spki,
            verify_certificate_hash,
            min_protocol_version,
            max_protocol_version,
            cipher_suites,
            config: _,
            uri_san: _,
        } = self;
        *mode == other.mode
            && *subject_alt_names == other.subject_alt_names
            && *verify_certificate_spki == other.verify_certificate_spki
            && *verify_certificate_hash == other.verify_certificate_hash
            && *min_protocol_version == other.min_protocol_version
            && *max_protocol_version == other.max_protocol_version
            && *cipher_suites == other.cipher_suites
    }

    /// Takes `other`'s session ticket keys and session cache, so that sessions made under it
    /// resume under `self`.
    fn share_sessions(&mut self, other: &ServerTls) {
        let (Some(TlsConfig(mine)), Some(TlsConfig(theirs))) = (&mut self.config, &other.config) else {
            return;
        };
        // Compiled a moment ago and not yet published, the config has no other holder; were
        // it shared, keeping the fresh keys would only cost resumptions.
        if let Some(mine) = Arc::get_mut(mine) {
            mine.ticketer = theirs.ticketer.clone();
            mine.session_storage = theirs.session_storage.clone();
        }
    }
}

/// A rustls config built at compile time. Compared by identity: two builds are never "equal"
/// settings a reload could keep, and rustls configs have no equality of their own.
#[derive(Clone)]
pub struct TlsConfig<T>(pub Arc<T>);

impl<T> PartialEq for TlsConfig<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> std::fmt::Debug for TlsConfig<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTlsMode {
    Simple,
    Mutual,
    OptionalMutual,
    Passthrough,
    AutoPassthrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// Virtual hosts of a route configuration, selected by Host.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub vhosts: HostTable<VirtualHost>,
}

#[derive(Debug)]
pub struct VirtualHost {
    /// The domain pattern this virtual host serves.
    pub domain: Arc<str>,
    /// The server had `tls.httpsRedirect`: every request is answered 301 to https.
    pub https_redirect: bool,
    /// In order; the first that matches wins.
    pub routes: Vec<Route>,
}

/// The outcome of a route lookup.
#[derive(Debug)]
pub enum RouteDecision<'s> {
    /// No virtual host for the Host header: 404.
    NoVirtualHost,
    /// A virtual host, but none of its routes matched: 404.
    NoRoute(&'s VirtualHost),
    /// A `tls.httpsRedirect` virtual host: 301 to https.
    HttpsRedirect(&'s VirtualHost),
    Matched {
        vhost: &'s VirtualHost,
        route: &'s Route,
        /// The block that held (`None` for a route without `match`), for prefix rewrites.
        block: Option<&'s MatchBlock>,
    },
}

impl RouteTable {
    pub fn route<'s>(&'s self, req: &RequestInfo<'_>) -> RouteDecision<'s> {
        let Some(vhost) = self.vhosts.lookup(req.host) else {
            return RouteDecision::NoVirtualHost;
        };
        if vhost.https_redirect {
            return RouteDecision::HttpsRedirect(vhost);
        }
        // Envoy matches every path specifier against `:path`, and istiod writes a route or block
        // without `uri` as `prefix: /`: CONNECT (authority form) has no path, and an asterisk-form
        // target (`OPTIONS *`) Envoy answers 404 before routing. Neither finds a route.
        if !req.path.starts_with('/') {
            return RouteDecision::NoRoute(vhost);
        }
        for route in &vhost.routes {
            if let Some(block) = route.matches(req) {
                return RouteDecision::Matched { vhost, route, block };
            }
        }
        RouteDecision::NoRoute(vhost)
    }
}
