//! HTTP proxy path by phase: the HTTP/1.1 session (codec, connection loop) or an HTTP/2
//! connection (`h2/`, a stream per request), the plan (route, the route's stages, upstream
//! head or the gateway's own answer), which reads the request through a codec-neutral view
//! (`head.rs`), and the exchange (tries, retries, relaying), which reaches the client only
//! through the codec-neutral `exchange::Client` that each codec lends it
//! (`session/client.rs`, `h2/client.rs`). `account.rs` counts and logs each request, whatever
//! codec carried it.

mod account;
mod affinity;
mod authz;
mod body;
mod callouts;
pub mod codec;
mod compress;
pub mod cors;
mod dechunk;
mod error;
mod exchange;
mod ext_authz;
mod fault;
mod grpc;
mod h2;
mod h2_io;
mod head;
mod headers;
mod jwt;
mod local;
mod mirror;
mod normalize;
mod peer;
mod plan;
mod ratelimit;
mod request_log;
mod retry;
mod rewrite;
mod session;
mod tunnel;

use std::rc::Rc;

pub use ext_authz::connection_allowed as ext_authz_connection;
pub use h2::serve_tls as serve_h2;
pub use peer::TlsSession;
pub use session::Downstream;

use crate::duplex::Duplex;
use crate::percore::WorkerCtx;

/// Serves one client connection: HTTP/1.1, or HTTP/2 when it opens with the client preface
/// (h2c with prior knowledge, which the HTTP/1.1 session sniffs and hands over).
pub async fn serve_connection<S>(client: S, downstream: Downstream, ctx: Rc<WorkerCtx>)
where
    S: Duplex,
    S::Read: 'static,
    S::Write: 'static,
{
    if let Some(h2c) = session::serve(client, downstream, ctx).await {
        // Boxed: HTTP/2's state would otherwise size every connection's task.
        Box::pin(h2::serve(h2c.client, h2c.first, h2c.downstream, h2c.ctx)).await;
    }
}
