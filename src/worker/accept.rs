//! One accept loop per port per worker: accepts on this worker's SO_REUSEPORT socket and
//! spawns each connection as a task on this core, until its cancel handle fires.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::CancelHandle;
use monoio::net::{TcpListener, TcpStream};
use tracing::warn;

use crate::http::Downstream;
use crate::percore::{ClientTcp, ConnInfo, WorkerCtx};
use crate::snapshot::ListenerProtocol;

/// Pause after an accept error that repeats until something frees up (EMFILE, ENOBUFS…),
/// instead of spinning on it.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// How often a worker at its connection limit looks again; meanwhile new connections wait in
/// the kernel's listen backlog (and past it, the client's SYN is retried).
const FULL_BACKOFF: Duration = Duration::from_millis(10);

pub async fn accept_loop(listener: TcpListener, port: u16, cancel: CancelHandle, ctx: Rc<WorkerCtx>) {
    // A socket bound to one address accepts only there: ask the kernel for the local address
    // only behind a wildcard bind.
    let fixed_local = listener.local_addr().ok().filter(|a| !a.ip().is_unspecified());
    let limit = ctx.limits.max_connections_per_worker as i64;
    loop {
        while ctx.stats.downstream_cx_active.get() >= limit {
            monoio::time::sleep(FULL_BACKOFF).await;
        }
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => serve(stream, peer, port, fixed_local, &ctx),
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => return,
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                warn!("worker {}: accept on port {port}: {e}", ctx.id);
                monoio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// Errors about the one connection being accepted: the next accept is unaffected.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM))
}

fn serve(stream: TcpStream, peer: SocketAddr, port: u16, fixed_local: Option<SocketAddr>, ctx: &Rc<WorkerCtx>) {
    // Responses are written whole; Nagle would only hold their last segment back.
    let _ = stream.set_nodelay(true);
    let local = match fixed_local.map_or_else(|| stream.local_addr(), Ok) {
        Ok(local) => local,
        // The peer is already gone.
        Err(_) => return,
    };
    let conn = ConnInfo { peer, client: peer, local, listener_port: port };
    let active = Active::new(ctx.clone());
    let ctx = ctx.clone();
    let snapshot = ctx.snapshot();
    let protocol = snapshot.listener(port).map_or(ListenerProtocol::Http, |l| l.protocol);
    let proxy_protocol = snapshot.proxy_protocol;
    drop(snapshot);
    monoio::spawn(async move {
        let _active = active;
        let mut stream = stream;
        let conn = if proxy_protocol {
            match super::proxy_protocol::read(&mut stream, conn).await {
                Some(conn) => conn,
                None => return tracing::debug!(%peer, "no valid PROXY header: connection closed"),
            }
        } else {
            conn
        };
        match protocol {
            // Boxed: their splice and TLS state would otherwise size every HTTP connection's
            // task too.
            ListenerProtocol::Tcp => {
                Box::pin(crate::tcp::serve_connection(stream, conn, ctx, crate::http::ext_authz_connection)).await
            }
            ListenerProtocol::Tls => Box::pin(crate::tls::serve_connection(stream, conn, ctx)).await,
            ListenerProtocol::Http => {
                let client = ClientTcp::new(stream, ctx.drain_handle());
                let downstream = Downstream { conn, idle: client.idle_flag(), tls: None };
                crate::http::serve_connection(client, downstream, ctx).await;
            }
        }
    });
}

/// Counts a downstream connection as active for as long as its task lives.
struct Active(Rc<WorkerCtx>);

impl Active {
    fn new(ctx: Rc<WorkerCtx>) -> Self {
        ctx.stats.downstream_cx_total.inc();
        ctx.stats.downstream_cx_active.inc();
        Self(ctx)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.stats.downstream_cx_active.dec();
    }
}
