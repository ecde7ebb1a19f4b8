//! What one client connection may take of the gateway: the size of a request head (the
//! codec's [`Limits`]) and how long it may take to send one, idle between requests, or keep a
//! request going; and how many connections one worker serves at once.

use std::time::Duration;

use super::codec::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub head: Limits,
    /// From the connection's start (for its first request) or from a later request's first
    /// byte, to the end of its head: the slowloris bound. nginx's `client_header_timeout`
    /// (60 s), since Envoy has none by default.
    pub request_headers_timeout: Duration,
    /// From a TLS connection's start to the end of its handshake. Envoy's listener filters
    /// give up on a ClientHello after 15 s; the handshake is bounded as a whole here.
    pub tls_handshake_timeout: Duration,
    /// Between requests on a keep-alive connection: Envoy's `idle_timeout` (1 h).
    pub idle_timeout: Duration,
    /// From a request's head to the end of its response: Envoy's `max_stream_duration`.
    pub max_request_duration: Option<Duration>,
    /// Connections one worker serves at once; past it, new ones wait in the listen backlog.
    pub max_connections_per_worker: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            head: Limits::default(),
            request_headers_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(3600),
            max_request_duration: None,
            // nginx's usual `worker_connections` order of magnitude, well above what one core
            // proxies usefully, well below what exhausts memory.
            max_connections_per_worker: 65_536,
        }
    }
}
