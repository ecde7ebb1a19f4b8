//! The envoy.service.ratelimit.v3 messages (`rls.proto`, and the descriptor of
//! `envoy/extensions/common/ratelimit/v3/ratelimit.proto`), declared by hand for prost: only
//! the fields Strait writes or reads, at their proto numbers.

/// The method's path on the rate limit service.
pub const SHOULD_RATE_LIMIT_PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    /// `Code`: UNKNOWN 0, OK 1, OVER_LIMIT 2.
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "3")]
    pub response_headers_to_add: Vec<HeaderValue>,
    #[prost(message, repeated, tag = "4")]
    pub request_headers_to_add: Vec<HeaderValue>,
    #[prost(bytes = "vec", tag = "5")]
    pub raw_body: Vec<u8>,
}

/// `config.core.v3.HeaderValue`, as the auth service's messages declare it.
pub use crate::http::ext_authz::proto::HeaderValue;

pub const OK: i32 = 1;
pub const OVER_LIMIT: i32 = 2;
