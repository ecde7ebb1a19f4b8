//! HTTP proxy path by phase: the HTTP/1.1 session (codec, connection loop, accounting), the
//! plan (route, the route's stages, upstream head or the gateway's own answer), which reads
//! the request through a codec-neutral view (`head.rs`), the exchange (tries, retries,
//! relaying).

mod account;
mod affinity;
mod body;
pub mod codec;
pub mod cors;
mod dechunk;
mod error;
mod exchange;
mod fault;
mod grpc;
mod head;
mod headers;
mod local;
mod mirror;
mod peer;
mod plan;
mod request_log;
mod retry;
mod rewrite;
mod session;
mod tunnel;

pub use peer::TlsSession;
pub use session::{serve_connection, Downstream};
