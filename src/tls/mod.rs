//! TLS on the data plane: a TLS port's connections are sorted by their ClientHello's SNI into
//! the port's Gateway servers, then terminated with the snapshot's rustls configs (HTTPS, or
//! TLS proxying TCP) or passed through untouched to a `tls` route's or an SNI-named cluster.

mod handshake;
mod hello;
pub mod xfcc;

use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;
use rustls::HandshakeKind;
use tracing::debug;

pub type ServerStream = crate::tls_stream::TlsStream<ClientTcp, rustls::ServerConnection>;

use crate::http::{Downstream, TlsSession};
use crate::percore::{ClientTcp, ConnInfo, WorkerCtx};
use crate::snapshot::{Listener, Server, ServerTlsMode};
use crate::stats::{L4Kind, WorkerStats};
use crate::tcp::{Client, Inbound};
use crate::upstream::Generation;

/// Why a TLS connection ended before it was served; logged at debug, counted as
/// `ssl.connection_error`.
#[derive(Debug, thiserror::Error)]
pub enum TlsFailure {
    #[error("client closed during the handshake")]
    Closed,
    #[error("handshake not complete in time")]
    Timeout,
    #[error("bad ClientHello: {0}")]
    Hello(String),
    #[error("handshake failed: {0}")]
    Handshake(#[source] rustls::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves one connection accepted on a TLS port.
pub async fn serve_connection(stream: TcpStream, conn: ConnInfo, ctx: Rc<WorkerCtx>) {
    // Held for the connection's life, as on every path.
    let snap = ctx.snapshot();
    let deadline = Instant::now() + ctx.limits.tls_handshake_timeout;
    let mut tcp = ClientTcp::new(stream, ctx.drain_handle());
    let mut hello = match monoio::time::timeout_at(deadline.into(), hello::read(&mut tcp)).await {
        Ok(Ok(hello)) => hello,
        outcome => return failed(&ctx.stats, &conn, outcome.unwrap_or(Err(TlsFailure::Timeout)).err()),
    };
    let Some(server) = snap.listener(conn.listener_port).and_then(|l| server_for(l, hello.sni())) else {
        // Envoy's filter-chain match found nothing: the connection is closed.
        ctx.stats.ssl_no_route.inc();
        debug!(peer = %conn.peer, sni = ?hello.sni(), "no server for this SNI: connection closed");
        return;
    };
    let Some(tls) = &server.tls else {
        return;
    };
    match tls.mode {
        ServerTlsMode::Passthrough => passthrough(tcp, hello, server, &snap, conn, &ctx).await,
        ServerTlsMode::AutoPassthrough => auto_passthrough(tcp, hello, &snap, conn, &ctx).await,
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            let Some(config) = &tls.config else {
                return;
            };
            let sni = hello.sni().map(Box::from);
            let mut session = match hello.accepted.into_connection(ctx.tls.server(config)) {
                Ok(session) => session,
                Err((e, mut alert)) => {
                    // The ClientHello asked for what this server does not offer (versions,
                    // suites): tell the client, as a handshake failure would.
                    let mut out = Vec::new();
                    let _ = alert.write_all(&mut out);
                    let _ = monoio::io::AsyncWriteRentExt::write_all(&mut tcp, out).await;
                    return failed(&ctx.stats, &conn, Some(TlsFailure::Handshake(e)));
                }
            };
            match monoio::time::timeout_at(deadline.into(), handshake::finish(&mut tcp, &mut session, &mut hello.raw))
                .await
            {
                Ok(Ok(())) => {}
                outcome => return failed(&ctx.stats, &conn, outcome.unwrap_or(Err(TlsFailure::Timeout)).err()),
            }
            ctx.stats.ssl_handshake.inc();
            if session.handshake_kind() == Some(HandshakeKind::Resumed) {
                ctx.stats.ssl_session_reused.inc();
            }
            let leaf = session.peer_certificates().and_then(|chain| chain.first());
            let xfcc = leaf.map(|leaf| xfcc::value(leaf, tls.uri_san.as_deref()).into_boxed_str());
            let peer_uri = leaf.and_then(|leaf| xfcc::first_uri(leaf));
            let idle = tcp.idle_flag();
            let h2 = session.alpn_protocol() == Some(b"h2");
            let stream = ServerStream::new(tcp, session, hello.raw);
            if server.protocol.as_ref() == "HTTPS" {
                let downstream = Downstream { conn, idle, tls: Some(TlsSession::new(sni, xfcc, peer_uri, snap)) };
                if h2 {
                    // Boxed: HTTP/2's state would otherwise size every TLS connection's task.
                    Box::pin(crate::http::serve_h2(stream, downstream, ctx.clone())).await;
                } else {
                    crate::http::serve_connection(stream, downstream, ctx.clone()).await;
                }
            } else {
                let inbound = Inbound { conn, first: &[], sni: sni.as_deref(), peer_uri: peer_uri.as_deref() };
                terminated_tcp(stream, server, &snap, inbound, &ctx).await;
            }
        }
    }
}

fn failed(stats: &WorkerStats, conn: &ConnInfo, failure: Option<TlsFailure>) {
    stats.ssl_connection_error.inc();
    if let Some(failure) = failure {
        debug!(peer = %conn.peer, "tls: {failure}");
    }
}

/// PASSTHROUGH: the server's first `tls` route that admits the SNI takes the connection, and
/// the ClientHello goes ahead of the spliced stream.
async fn passthrough(
    tcp: ClientTcp,
    hello: hello::Hello,
    server: &Server,
    snap: &Generation,
    conn: ConnInfo,
    ctx: &WorkerCtx,
) {
    let sni = hello.sni();
    let Some(route) = server.tls_routes.iter().find(|r| r.matches(sni, conn.local.ip(), conn.client.ip())) else {
        ctx.stats.ssl_no_route.inc();
        debug!(peer = %conn.peer, ?sni, "no tls route for this SNI: connection closed");
        return;
    };
    let client = Client::spliced(tcp.into_inner());
    let inbound = Inbound { conn, first: hello.raw.data(), sni, peer_uri: None };
    crate::tcp::serve_route(client, inbound, route, snap, ctx, crate::http::ext_authz_connection).await;
}

/// The server a ClientHello lands on. An SNI of the AUTO_PASSTHROUGH form is matched on the
/// host it names, as istiod writes such a server's filter chains (one per service, named
/// `outbound_.PORT_.SUBSET_.HOST`); any other goes by the SNI itself.
fn server_for<'s>(listener: &'s Listener, sni: Option<&str>) -> Option<&'s Server> {
    let auto = sni.and_then(outbound).and_then(|(_, _, host)| listener.server_for_sni(Some(host)));
    auto.filter(|s| s.tls.as_ref().is_some_and(|t| t.mode == ServerTlsMode::AutoPassthrough))
        .or_else(|| listener.server_for_sni(sni))
}

/// `outbound_.PORT_.SUBSET_.HOST` → (port, subset, host).
fn outbound(sni: &str) -> Option<(u16, &str, &str)> {
    let rest = sni.strip_prefix("outbound_.")?;
    let (port, rest) = rest.split_once("_.")?;
    let (subset, host) = rest.split_once("_.")?;
    Some((port.parse().ok()?, subset, host))
}

/// AUTO_PASSTHROUGH: the SNI names the cluster itself, `outbound_.PORT_.SUBSET_.HOST`, as
/// istiod writes it for `outbound|PORT|SUBSET|HOST`.
async fn auto_passthrough(tcp: ClientTcp, hello: hello::Hello, snap: &Generation, conn: ConnInfo, ctx: &WorkerCtx) {
    let name = hello.sni().and_then(outbound).map(|(port, subset, host)| format!("outbound|{port}|{subset}|{host}"));
    let Some(cluster) = name.and_then(|name| snap.cluster_by_name(&name)) else {
        ctx.stats.ssl_no_route.inc();
        debug!(peer = %conn.peer, sni = ?hello.sni(), "SNI names no cluster: connection closed");
        return;
    };
    let stats = ctx.l4_counters(L4Kind::Route, &snap.cluster(cluster).name);
    let client = Client::spliced(tcp.into_inner());
    let inbound = Inbound { conn, first: hello.raw.data(), sni: hello.sni(), peer_uri: None };
    crate::tcp::serve_cluster(client, inbound, cluster, snap, ctx, &stats).await;
}

/// A `TLS` server that terminates: its `tcp` routes take the plaintext.
async fn terminated_tcp(
    stream: ServerStream,
    server: &Server,
    snap: &Generation,
    inbound: Inbound<'_>,
    ctx: &WorkerCtx,
) {
    let conn = inbound.conn;
    let Some(route) = server.tcp_routes.iter().find(|r| r.matches(None, conn.local.ip(), conn.client.ip())) else {
        ctx.stats.tcp_no_route.inc();
        debug!(peer = %conn.peer, "no tcp route behind TLS: connection closed");
        return;
    };
    crate::tcp::serve_route(Client::Terminated(stream), inbound, route, snap, ctx, crate::http::ext_authz_connection)
        .await;
}

#[cfg(test)]
mod tests {
    use super::outbound;

    #[test]
    fn auto_passthrough_sni_names_port_subset_and_host() {
        assert_eq!(outbound("outbound_.9080_.v1_.reviews.default.svc"), Some((9080, "v1", "reviews.default.svc")));
        assert_eq!(outbound("outbound_.443_._.svc.example.com"), Some((443, "", "svc.example.com")));
        assert_eq!(outbound("svc.example.com"), None);
        assert_eq!(outbound("outbound_.x_._.h"), None);
    }
}
