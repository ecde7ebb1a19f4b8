//! `serve h2`: an HTTP/2 origin (h2c with prior knowledge, or TLS with ALPN `h2`) that gives the
//! answers `serve http` gives: a fixed body, or the request's own with `--echo`. A gRPC call
//! (`content-type: application/grpc…`) is answered as a unary echo: its own message back, then
//! `grpc-status: 0` in the trailers. hyperium's `h2` over a poll-io stream, a task per stream.
//! With `--relay` it answers nothing itself: each stream goes on to another HTTP/2 server and
//! its answer comes back as it came ([`relay`]), the floor of any proxy built on h2.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use super::http::{fixed_body, Config, Stall};
use crate::http2::WINDOW;

/// One thread's server: the fixed body made once.
pub struct Server {
    body: Bytes,
    echo: bool,
    stall: Option<Arc<Stall>>,
    relay: Option<Relay>,
}

/// Where `--relay` passes streams on: the address, and this thread's one connection there once
/// it is open.
struct Relay {
    to: SocketAddr,
    conn: RefCell<Option<SendRequest<Bytes>>>,
    opening: Cell<bool>,
}

impl Server {
    pub fn new(config: &Config) -> Self {
        let relay = config.relay.map(|to| Relay { to, conn: RefCell::new(None), opening: Cell::new(false) });
        Server { body: fixed_body(config.size), echo: config.echo, stall: config.stall.clone(), relay }
    }
}

impl Relay {
    /// This thread's connection to the relay's server, opened by the first stream that needs
    /// it while the others wait; `None` when it cannot be opened.
    async fn conn(&self) -> Option<SendRequest<Bytes>> {
        loop {
            if let Some(conn) = self.conn.borrow().as_ref() {
                return Some(conn.clone());
            }
            if !self.opening.replace(true) {
                let opened = open(self.to).await;
                self.opening.set(false);
                *self.conn.borrow_mut() = opened.clone();
                return opened;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// An h2c connection to `to`, its driver spawned on this thread.
async fn open(to: SocketAddr) -> Option<SendRequest<Bytes>> {
    let tcp = monoio::net::TcpStream::connect(to).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let io = tcp.try_into_poll_io().ok()?;
    let handshake =
        h2::client::Builder::new().initial_window_size(WINDOW).initial_connection_window_size(WINDOW).handshake(io);
    let (send, conn) = handshake.await.ok()?;
    monoio::spawn(async move {
        let _ = conn.await;
    });
    Some(send)
}

/// Passes one stream on to the relay's server: its head (fields as they came), DATA and
/// trailers up, then the answer's head, DATA and trailers down, each as it comes. Nothing else:
/// no routing, no field edits, no metrics. A stream that fails either way is reset.
async fn relay(relay: &Relay, request: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let Some(mut conn) = relay.conn().await else {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        return;
    };
    let (parts, mut up_body) = request.into_parts();
    let ends = up_body.is_end_stream();
    let sent = match std::future::poll_fn(|cx| conn.poll_ready(cx)).await {
        Ok(()) => conn.send_request(Request::from_parts(parts, ()), ends),
        Err(e) => Err(e),
    };
    let Ok((answer, mut up)) = sent else {
        // The connection is gone (closed, or a GOAWAY): the next stream opens another.
        relay.conn.borrow_mut().take();
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        return;
    };
    if !ends && pass(&mut up_body, &mut up).await.is_none() {
        return;
    }
    let Ok(answer) = answer.await else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    let (parts, mut down_body) = answer.into_parts();
    let ends = down_body.is_end_stream();
    let Ok(mut down) = respond.send_response(Response::from_parts(parts, ()), ends) else { return };
    if !ends {
        let _ = pass(&mut down_body, &mut down).await;
    }
}

/// Passes a stream's DATA and trailers from `from` to `to`, as the window lets each go.
async fn pass(from: &mut RecvStream, to: &mut SendStream<Bytes>) -> Option<()> {
    while let Some(data) = from.data().await {
        let data = data.ok()?;
        let _ = from.flow_control().release_capacity(data.len());
        to.send_data(data, from.is_end_stream()).ok()?;
    }
    if let Some(trailers) = from.trailers().await.ok()? {
        to.send_trailers(trailers).ok()?;
    }
    Some(())
}

/// Serves HTTP/2 on `io` until the client goes away or the connection fails.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + 'static>(io: S, server: Rc<Server>) {
    // Windows as the load's, so that neither end's reading sets the pace.
    let handshake =
        h2::server::Builder::new().initial_window_size(WINDOW).initial_connection_window_size(WINDOW).handshake(io);
    let Ok(mut conn) = handshake.await else { return };
    // Accepting drives the connection, the streams' answers included.
    while let Some(Ok((request, respond))) = conn.accept().await {
        let server = server.clone();
        monoio::spawn(async move {
            match &server.relay {
                Some(to) => relay(to, request, respond).await,
                None => answer(request, respond, server).await,
            }
        });
    }
}

/// Reads one request whole and answers it.
async fn answer(request: Request<RecvStream>, mut respond: SendResponse<Bytes>, server: Rc<Server>) {
    let grpc = request.headers().get(CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
    let head = request.method() == Method::HEAD;
    let keep = grpc || server.echo;
    let mut recv = request.into_body();
    let mut kept = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        // A stream the client reset: nothing to answer.
        let Ok(chunk) = chunk else { return };
        let _ = recv.flow_control().release_capacity(chunk.len());
        if keep {
            kept.extend_from_slice(&chunk);
        }
    }
    if let Some(wait) = server.stall.as_ref().filter(|s| s.is_due()).map(|s| s.wait) {
        monoio::time::sleep(wait).await;
    }
    if grpc {
        let response = Response::builder().header(CONTENT_TYPE, "application/grpc").body(()).expect("a valid head");
        let Ok(mut send) = respond.send_response(response, false) else { return };
        if !kept.is_empty() && send.send_data(kept.freeze(), false).is_err() {
            return;
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let _ = send.send_trailers(trailers);
        return;
    }
    let body = if server.echo { kept.freeze() } else { server.body.clone() };
    let mut response = Response::builder().header(CONTENT_LENGTH, body.len());
    if !server.echo {
        response = response.header(CONTENT_TYPE, "text/plain");
    }
    let end = head || body.is_empty();
    let Ok(mut send) = respond.send_response(response.body(()).expect("a valid head"), end) else { return };
    if !end {
        // Queued whole; h2 sends it as the client's window allows.
        let _ = send.send_data(body, true);
    }
}
