//! HTTP/1.1 proxy path: codec, routing on the snapshot, forwarding, the gateway's own answers.

mod affinity;
mod body;
pub mod codec;
pub mod cors;
mod dechunk;
mod error;
mod fault;
mod headers;
mod local;
mod mirror;
mod proxy;
mod request_log;
mod retry;
mod rewrite;
mod tunnel;

pub use proxy::{serve_connection, Downstream, TlsSession};
