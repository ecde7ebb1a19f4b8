//! HTTP/1.1 proxy path: codec, routing on the snapshot, forwarding, the gateway's own answers.

pub mod access_log;
mod affinity;
mod body;
pub mod codec;
pub mod cors;
mod dechunk;
mod fault;
mod headers;
pub mod limits;
mod local;
mod mirror;
mod proxy;
mod retry;
mod rewrite;
mod tunnel;

pub use proxy::{serve_connection, Downstream, TlsSession};
