//! `serve h2`: an HTTP/2 origin (h2c with prior knowledge, or TLS with ALPN `h2`) that gives the
//! answers `serve http` gives: a fixed body, or the request's own with `--echo`. A gRPC call
//! (`content-type: application/grpc…`) is answered as a unary echo: its own message back, then
//! `grpc-status: 0` in the trailers. hyperium's `h2` over a poll-io stream, a task per stream.

use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
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
}

impl Server {
    pub fn new(config: &Config) -> Self {
        Server { body: fixed_body(config.size), echo: config.echo, stall: config.stall.clone() }
    }
}

/// Serves HTTP/2 on `io` until the client goes away or the connection fails.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + 'static>(io: S, server: Rc<Server>) {
    // Windows as the load's, so that neither end's reading sets the pace.
    let handshake =
        h2::server::Builder::new().initial_window_size(WINDOW).initial_connection_window_size(WINDOW).handshake(io);
    let Ok(mut conn) = handshake.await else { return };
    // Accepting drives the connection, the streams' answers included.
    while let Some(Ok((request, respond))) = conn.accept().await {
        monoio::spawn(answer(request, respond, server.clone()));
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
