//! HTTP proxy path by phase: the HTTP/1.1 session (codec, connection loop, accounting), the
//! plan (route, route actions, upstream head or the gateway's own answer), the exchange
//! (tries, retries, relaying).

pub mod access_log;
mod affinity;
mod body;
pub mod codec;
pub mod cors;
mod dechunk;
mod exchange;
mod fault;
mod headers;
pub mod limits;
mod local;
mod mirror;
mod peer;
mod plan;
mod retry;
mod rewrite;
mod session;
mod tunnel;

pub use peer::TlsSession;
pub use session::{serve_connection, Downstream};
