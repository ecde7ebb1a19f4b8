//! HTTP/1.1 proxy path: codec, routing on the snapshot, forwarding, the gateway's own answers.

pub mod access_log;
mod body;
pub mod codec;
pub mod cors;
mod dechunk;
mod local;
mod proxy;
mod rewrite;
mod tunnel;

pub use proxy::serve_connection;
