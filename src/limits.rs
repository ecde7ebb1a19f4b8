//! What one client connection may take of the gateway: the size of a request head
//! ([`Limits`], which the HTTP codec parses under) and how long it may take to send one, idle
//! between requests, or keep a request going; and how many connections one worker serves at
//! once. A leaf: the protocols, the per-core context and the command line all read it.

use std::time::Duration;

/// Capacity of the fixed header array a parsed head carries; `Limits::max_headers` is
/// clamped to it. 100 is Envoy's default `max_headers_count`.
pub const MAX_HEADERS: usize = 100;

/// Size limits applied while parsing a head. Going over one is an error, never a truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole head (request/status line, fields, final CRLF). Over it: 431.
    pub max_head: usize,
    /// Request line without its CRLF. Over it: 414.
    pub max_request_line: usize,
    /// Header field lines (at most [`MAX_HEADERS`]). Over it: 431.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // 60 KiB and 100 headers are Envoy's defaults (max_request_headers_kb,
        // max_headers_count); 16 KiB of request line is what common servers allow.
        Limits { max_head: 60 * 1024, max_request_line: 16 * 1024, max_headers: MAX_HEADERS }
    }
}

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
