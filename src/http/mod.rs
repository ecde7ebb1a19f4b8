//! HTTP proxy path by phase: the HTTP/1.1 session (codec, connection loop), the plan (route,
//! the route's stages, upstream head or the gateway's own answer), which reads the request
//! through a codec-neutral view (`head.rs`), and the exchange (tries, retries, relaying),
//! which reaches the client only through the codec-neutral `exchange::Client` that the
//! session lends it (`session/client.rs`). `account.rs` counts and logs each request, whatever
//! codec carried it.

mod account;
mod affinity;
mod body;
pub mod codec;
pub mod cors;
mod dechunk;
mod error;
mod exchange;
mod fault;
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
