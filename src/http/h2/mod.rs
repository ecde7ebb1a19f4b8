//! HTTP/2 from clients (RFC 9113): h2c with prior knowledge on HTTP ports (the HTTP/1.1
//! session hands over a connection that opens with the client preface) and `h2` by ALPN on
//! HTTPS ports. hyperium's h2 speaks the protocol over our streams (`h2_io.rs`); each stream is
//! one request through the same plan, exchange and accounting as HTTP/1.1 (`conn.rs`), the
//! request read through the HTTP/1.1 codec (`head.rs`), the client's half of the exchange an
//! h2 stream (`client.rs`). HTTP/2 upstreams are the exchange's (`exchange/h2.rs`), over the
//! same poll adapter.

mod client;
mod conn;
mod flood;
mod head;

pub(super) use conn::serve;

use std::rc::Rc;

use super::session::Downstream;
use crate::duplex::Duplex;
use crate::percore::WorkerCtx;

/// Serves a TLS connection whose ALPN chose `h2`.
pub async fn serve_tls<S>(stream: S, downstream: Downstream, ctx: Rc<WorkerCtx>)
where
    S: Duplex,
    S::Read: 'static,
    S::Write: 'static,
{
    serve(stream, Vec::new(), downstream, ctx).await;
}
