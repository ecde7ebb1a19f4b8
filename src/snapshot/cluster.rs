//! Compiled clusters: a ServiceEntry host × port (× subset), its endpoints and traffic policy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::HashTable;

/// One upstream cluster, named as istiod names it: `outbound|PORT|SUBSET|HOST`.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: Arc<str>,
    pub host: Arc<str>,
    pub namespace: Arc<str>,
    pub port: u16,
    pub subset: Option<Arc<str>>,
    /// The ServiceEntry port's protocol (HTTP, TCP, …).
    pub protocol: Arc<str>,
    /// Resolved endpoints; for `resolution: DNS` they were resolved off the request path.
    pub endpoints: Vec<Endpoint>,
    /// Cluster policy with port-level and subset overrides already merged, field by field.
    pub policy: TrafficPolicy,
    /// Consistent hashing's ring or Maglev table over `endpoints`, when the policy hashes.
    pub hash_table: Option<HashTable>,
}

#[cfg(test)]
impl Cluster {
    /// `outbound|PORT||HOST` in namespace `default` with the default policy, for tests.
    pub fn test(host: &str, port: u16, endpoints: Vec<Endpoint>) -> Self {
        Self {
            name: format!("outbound|{port}||{host}").into(),
            host: host.into(),
            namespace: "default".into(),
            port,
            subset: None,
            protocol: "HTTP".into(),
            endpoints,
            policy: TrafficPolicy::default(),
            hash_table: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Relative load-balancing weight (ServiceEntry endpoint `weight`, default 1).
    pub weight: u32,
    pub labels: Arc<BTreeMap<String, String>>,
    pub locality: Option<Arc<str>>,
}

/// DestinationRule `trafficPolicy` with Istio's and Envoy's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficPolicy {
    pub load_balancer: LoadBalancer,
    pub connect_timeout: Duration,
    /// Envoy's circuit breakers; `u32::MAX` when unset, as Istio leaves them.
    pub max_connections: u32,
    pub http1_max_pending_requests: u32,
    pub http2_max_requests: u32,
    /// 0 = unlimited.
    pub max_requests_per_connection: u32,
    pub max_retries: u32,
    /// Idle time after which an upstream HTTP connection is closed; Envoy's default is 1 h.
    pub http_idle_timeout: Duration,
    /// Idle time after which a TCP-proxied stream is closed; Istio's default is 1 h.
    pub tcp_idle_timeout: Duration,
    pub max_connection_duration: Option<Duration>,
    pub tcp_keepalive: Option<TcpKeepalive>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<UpstreamTls>,
    /// `h2UpgradePolicy`: `Some(true)` UPGRADE, `Some(false)` DO_NOT_UPGRADE, `None` DEFAULT.
    pub h2_upgrade: Option<bool>,
    pub use_client_protocol: bool,
    /// Streams at once on one HTTP/2 upstream connection (Envoy's `http2_protocol_options.
    /// max_concurrent_streams`, which istiod sets from `maxConcurrentStreams`); the server's
    /// own SETTINGS may lower it.
    pub max_concurrent_streams: u32,
    /// What the upstream speaks, from the port's protocol and the fields above
    /// ([`UpstreamProtocol::choose`]).
    pub upstream_protocol: UpstreamProtocol,
}

/// The HTTP version a cluster's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    Http2,
    /// `useClientProtocol`: the client's (Envoy's `USE_DOWNSTREAM_PROTOCOL`).
    Client,
}

impl UpstreamProtocol {
    /// As istiod decides it at a gateway: `useClientProtocol` wins (it also turns off the
    /// upgrade, `shouldH2Upgrade`); a port of protocol HTTP2, GRPC or GRPC-WEB is HTTP/2
    /// (`Protocol.IsHTTP2`, `setH2Options`); `h2UpgradePolicy: UPGRADE` upgrades, and
    /// DO_NOT_UPGRADE does not, and DEFAULT follows MeshConfig's `h2UpgradePolicy` (folded into
    /// `h2_upgrade` when the cluster is compiled).
    pub fn choose(port_protocol: &str, policy: &TrafficPolicy) -> Self {
        if policy.use_client_protocol {
            return Self::Client;
        }
        let h2_port = ["HTTP2", "GRPC", "GRPC-WEB"].iter().any(|p| p.eq_ignore_ascii_case(port_protocol));
        if h2_port || policy.h2_upgrade == Some(true) {
            Self::Http2
        } else {
            Self::Http1
        }
    }
}

impl Default for TrafficPolicy {
    fn default() -> Self {
        Self {
            load_balancer: LoadBalancer::default(),
            connect_timeout: Duration::from_secs(10),
            max_connections: u32::MAX,
            http1_max_pending_requests: u32::MAX,
            http2_max_requests: u32::MAX,
            max_requests_per_connection: 0,
            max_retries: u32::MAX,
            http_idle_timeout: Duration::from_secs(3600),
            tcp_idle_timeout: Duration::from_secs(3600),
            max_connection_duration: None,
            tcp_keepalive: None,
            outlier_detection: None,
            tls: None,
            h2_upgrade: None,
            use_client_protocol: false,
            max_concurrent_streams: u32::MAX,
            upstream_protocol: UpstreamProtocol::Http1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum LoadBalancer {
    RoundRobin,
    /// Power of two choices: Istio's default since 1.14.
    #[default]
    LeastRequest,
    Random,
    Passthrough,
    ConsistentHash {
        key: HashKey,
        algorithm: HashAlgorithm,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum HashKey {
    Header(Arc<str>),
    Cookie { name: Arc<str>, path: Option<Arc<str>>, ttl: Option<Duration> },
    SourceIp,
    QueryParameter(Arc<str>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HashAlgorithm {
    RingHash { minimum_ring_size: u64 },
    Maglev { table_size: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpKeepalive {
    pub probes: Option<u32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    pub consecutive_local_origin_failures: Option<u32>,
    pub split_external_local_origin_errors: bool,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
    pub min_health_percent: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    pub mode: UpstreamTlsMode,
    /// PEM bytes, read when the snapshot was compiled so the data plane never touches files.
    pub client_certificate: Option<Arc<[u8]>>,
    pub private_key: Option<Arc<[u8]>>,
    pub ca_certificates: Option<Arc<[u8]>>,
    /// PEM CRLs checked with the roots, every CA of the upstream's chain needing one.
    pub ca_crl: Option<Arc<[u8]>>,
    pub subject_alt_names: Vec<Arc<str>>,
    pub sni: Option<Arc<str>>,
    pub insecure_skip_verify: bool,
    /// The rustls client settings built from the above.
    pub config: super::TlsConfig<rustls::ClientConfig>,
    /// The same, offering ALPN `h2`, for HTTP/2 connections: istiod gives an HTTP/2 cluster's
    /// TLS context `alpn_protocols: [h2]`.
    pub h2_config: super::TlsConfig<rustls::ClientConfig>,
    /// Tells these settings apart from another cluster's, so that pooled connections to one
    /// address are reused only under the settings they were opened with.
    pub pool_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTlsMode {
    Simple,
    Mutual,
}
