//! One error type for the request path: whether a retry is safe, the answer the client gets,
//! and the side that failed as Envoy's response flags tell it (D… downstream, U… upstream).

use std::io;

use crate::http::codec::ParseError;
use crate::http::grpc;
use crate::upstream::Observation;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("client connection: {0}")]
    DownstreamIo(#[source] io::Error),
    #[error("bad request: {0}")]
    BadRequest(#[source] ParseError),
    #[error("no cluster for the destination")]
    NoCluster,
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    #[error("upstream connect error: {0}")]
    ConnectFailed(#[source] io::Error),
    #[error("upstream connect timeout")]
    ConnectTimeout,
    /// The upstream closed or reset before sending any byte of a response.
    #[error("upstream reset before response headers")]
    ResetBeforeResponse,
    #[error("upstream sent an invalid response: {0}")]
    UpstreamProtocol(#[source] ParseError),
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("upstream switched protocols unasked")]
    UnexpectedUpgrade,
    #[error("upstream connection: {0}")]
    UpstreamIo(#[source] io::Error),
    #[error("upstream request timeout")]
    UpstreamTimeout,
    #[error("upstream per-try timeout")]
    PerTryTimeout,
    /// The request outlasted `--max-request-duration`.
    #[error("request exceeded its maximum duration")]
    DurationTimeout,
    /// The client did not finish a request head within `--request-headers-timeout`.
    #[error("request head not received in time")]
    RequestHeadersTimeout,
    /// A circuit breaker is full: `maxConnections` open and `http1MaxPendingRequests` waiting.
    #[error("upstream overflow: connection pool and pending queue full")]
    Overflow,
    /// A response the route's retry policy retries; never answered, the next try is.
    #[error("upstream answered a retriable {0}")]
    RetriableStatus(u16),
    /// A response whose head carries a `grpc-status` the route's retry policy retries (a
    /// trailers-only gRPC answer); as [`Self::RetriableStatus`].
    #[error("upstream answered a retriable grpc-status {0}")]
    RetriableGrpcStatus(u8),
}

impl ProxyError {
    /// Envoy's response flag and response code details for the access log.
    pub fn log_fields(&self) -> (&'static str, &'static str) {
        match self {
            Self::DownstreamIo(_) => ("DC", "downstream_remote_disconnect"),
            Self::BadRequest(_) => ("DPE", "http1.codec_error"),
            Self::NoCluster => ("NC", "cluster_not_found"),
            Self::NoHealthyUpstream => ("UH", "no_healthy_upstream"),
            Self::ConnectFailed(_) | Self::ConnectTimeout => {
                ("UF", "upstream_reset_before_response_started{connection_failure}")
            }
            Self::ResetBeforeResponse | Self::UpstreamIo(_) => {
                ("UC", "upstream_reset_before_response_started{connection_termination}")
            }
            Self::UpstreamProtocol(_) | Self::UnexpectedUpgrade => {
                ("UPE", "upstream_reset_before_response_started{protocol_error}")
            }
            Self::UpstreamTimeout => ("UT", "response_timeout"),
            Self::PerTryTimeout => ("UT", "upstream_per_try_timeout"),
            Self::DurationTimeout => ("DT", "max_duration_timeout"),
            Self::RequestHeadersTimeout => ("-", "request_headers_timeout"),
            Self::Overflow => ("UO", "overflow"),
            Self::RetriableStatus(_) | Self::RetriableGrpcStatus(_) => ("-", "via_upstream"),
        }
    }

    /// The status the client is answered with, if the response has not begun; the body Envoy
    /// sends for the same failure.
    pub fn answer(&self) -> (u16, &'static str) {
        match self {
            Self::BadRequest(e) => (e.status(), ""),
            Self::NoCluster => (503, ""),
            Self::NoHealthyUpstream => (503, "no healthy upstream"),
            Self::ConnectFailed(_) | Self::ConnectTimeout => {
                (503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
            }
            Self::ResetBeforeResponse | Self::UpstreamIo(_) => {
                (503, "upstream connect error or disconnect/reset before headers. reset reason: connection termination")
            }
            Self::UpstreamProtocol(_) | Self::UnexpectedUpgrade => (502, "upstream sent an invalid response"),
            Self::UpstreamTimeout | Self::PerTryTimeout => (504, "upstream request timeout"),
            Self::DurationTimeout => (408, "downstream duration timeout"),
            Self::RequestHeadersTimeout => (408, "request header timeout"),
            Self::Overflow => {
                (503, "upstream connect error or disconnect/reset before headers. reset reason: overflow")
            }
            Self::RetriableStatus(status) => (*status, ""),
            // A gRPC answer's HTTP status is 200; its gRPC status is given ([`Self::grpc_status`]).
            Self::RetriableGrpcStatus(_) => (200, ""),
            Self::DownstreamIo(_) => (400, ""),
        }
    }

    /// The gRPC status Envoy gives a gRPC request for this failure where it does not map the
    /// HTTP status ([`super::grpc::from_http`]): the request's maximum duration is
    /// DEADLINE_EXCEEDED (its connection manager's `onStreamMaxDurationReached`). A route
    /// timeout is not: its 504 maps to UNAVAILABLE, as Envoy's router answers it.
    pub fn grpc_status(&self) -> Option<u8> {
        match self {
            Self::DurationTimeout => Some(grpc::DEADLINE_EXCEEDED),
            Self::RetriableGrpcStatus(code) => Some(*code),
            Self::DownstreamIo(_)
            | Self::BadRequest(_)
            | Self::NoCluster
            | Self::NoHealthyUpstream
            | Self::ConnectFailed(_)
            | Self::ConnectTimeout
            | Self::ResetBeforeResponse
            | Self::UpstreamProtocol(_)
            | Self::UnexpectedUpgrade
            | Self::UpstreamIo(_)
            | Self::UpstreamTimeout
            | Self::PerTryTimeout
            | Self::RequestHeadersTimeout
            | Self::Overflow
            | Self::RetriableStatus(_) => None,
        }
    }

    /// What a try that failed so says of the upstream host, for outlier detection; `None` when
    /// it says nothing of it (the client's doing, or no host was reached).
    pub fn observation(&self) -> Option<Observation> {
        match self {
            Self::ConnectFailed(_) | Self::ConnectTimeout => Some(Observation::ConnectFailed),
            Self::ResetBeforeResponse | Self::UpstreamIo(_) | Self::UpstreamProtocol(_) | Self::UnexpectedUpgrade => {
                Some(Observation::Reset)
            }
            Self::UpstreamTimeout | Self::PerTryTimeout => Some(Observation::Timeout),
            Self::RetriableStatus(status) => Some(Observation::Status(*status)),
            // Envoy's router tells outlier detection the HTTP status a gRPC one stands for.
            Self::RetriableGrpcStatus(code) => Some(Observation::Status(grpc::to_http(*code))),
            Self::DownstreamIo(_)
            | Self::BadRequest(_)
            | Self::NoCluster
            | Self::NoHealthyUpstream
            | Self::Overflow
            | Self::DurationTimeout
            | Self::RequestHeadersTimeout => None,
        }
    }
}
