//! `mirror`/`mirrors`: a fire-and-forget copy of a request to another cluster, sent by a task
//! of the same worker. The copy asks the mirror to close its connection (to an HTTP/2 mirror,
//! it is the one stream of a connection of its own), and its answer is read and thrown away; the mirror's slowness or failure never reaches the client's exchange.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::codec::{BodyFraming, ChunkedDecoder, ParseError};
use super::h2_io::{client_builder, request_of, DataWriter, PollIo};
use crate::percore::WorkerCtx;
use crate::snapshot::{Cluster, ClusterId, UpstreamProtocol};
use crate::upstream::{connect, Generation, UpstreamStream};

#[cfg(test)]
mod tests;

/// Copies in flight per worker; beyond it new copies are dropped, so a mirror that stalls
/// cannot make the gateway hold ever more connections and buffers.
const MAX_IN_FLIGHT: usize = 256;
/// How long a copy may take when its route sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    /// Copies in flight on this worker (one thread per worker).
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// One request to mirror: its head (with `connection: close`) and, once known, its body.
pub struct Copy {
    pub cluster: ClusterId,
    pub bytes: Vec<u8>,
}

/// Sends `copy` in the background, bounded by the route's `timeout` (or 10 s). Returns false
/// when the worker already has too many copies in flight and this one was dropped.
pub fn send(ctx: &Rc<WorkerCtx>, snap: &Rc<Generation>, copy: Copy, timeout: Option<Duration>) -> bool {
    if IN_FLIGHT.get() >= MAX_IN_FLIGHT {
        return false;
    }
    IN_FLIGHT.set(IN_FLIGHT.get() + 1);
    let (ctx, snap) = (ctx.clone(), snap.clone());
    monoio::spawn(async move {
        // Picked in the task, which holds the snapshot: the pick lives as long as the copy.
        if let Some(mut pick) = ctx.upstream.balancer.pick(&snap, copy.cluster, &[], ctx.random(), None) {
            let cluster = snap.cluster(copy.cluster);
            let addr = cluster.endpoints[pick.endpoint].addr;
            let limit = timeout.unwrap_or(DEFAULT_TIMEOUT);
            let sent = monoio::time::timeout(limit, exchange(addr, cluster, &ctx, copy.bytes)).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::debug!(%addr, "mirrored request failed or timed out");
            }
            // A copy's fate is not the request's: outlier detection does not count it.
            pick.settle(None);
        }
        IN_FLIGHT.set(IN_FLIGHT.get() - 1);
    });
    true
}

async fn exchange(addr: SocketAddr, cluster: &Cluster, ctx: &WorkerCtx, bytes: Vec<u8>) -> std::io::Result<()> {
    let http2 = cluster.policy.upstream_protocol == UpstreamProtocol::Http2;
    let tls = |c: &_| match (http2, &cluster.policy.tls) {
        (true, Some(t)) => ctx.tls.client(&t.h2_config),
        _ => ctx.tls.client(c),
    };
    let mut stream = connect(addr, cluster, tls).await?;
    if http2 {
        return exchange_h2(stream, cluster, &bytes).await;
    }
    stream.write_all(bytes).await.0?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, b) = stream.read(buf).await;
        buf = b;
        if n? == 0 {
            return Ok(());
        }
    }
}

/// The copy (an HTTP/1.1 head and its whole body) as one stream on a connection of its own to
/// an HTTP/2 mirror, the answer read and thrown away; the connection ends with the stream.
async fn exchange_h2(stream: UpstreamStream, cluster: &Cluster, bytes: &[u8]) -> io::Result<()> {
    let bad = |e: ParseError| io::Error::new(io::ErrorKind::InvalidData, e);
    let (request, head_len, framing) = request_of(bytes, cluster.policy.tls.is_some()).map_err(bad)?;
    let (mut send, connection) =
        client_builder().handshake::<_, Bytes>(PollIo::new(stream)).await.map_err(io::Error::other)?;
    // Driven beside the stream; it ends once the stream and the handle are gone.
    monoio::spawn(async move {
        let _ = connection.await;
    });
    let body = &bytes[head_len..];
    let (response, up) = send.send_request(request, body.is_empty()).map_err(io::Error::other)?;
    drop(send);
    if !body.is_empty() {
        let mut writer =
            DataWriter { stream: up, decoder: (framing == BodyFraming::Chunked).then(ChunkedDecoder::decoding) };
        writer.push_last(body).await?;
    }
    let mut answer = response.await.map_err(io::Error::other)?.into_body();
    while let Some(data) = answer.data().await {
        let data = data.map_err(io::Error::other)?;
        let _ = answer.flow_control().release_capacity(data.len());
    }
    Ok(())
}

/// `host[:port]` → `host-shadow[:port]`: the Host Envoy gave mirrored requests for Istio ≤ 1.27.
pub fn shadow_host(authority: &str) -> String {
    let bare = crate::snapshot::strip_port(authority);
    format!("{bare}-shadow{}", &authority[bare.len()..])
}
