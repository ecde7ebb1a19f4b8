//! After `101 Switching Protocols` (WebSocket): bytes flow both ways until each side closes.

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::buf::ReadBuf;
use crate::duplex::Duplex;
use crate::upstream::UpstreamConn;

/// Splices `client` and `upstream` together. Bytes either side sent early (already in the
/// read windows) go first; a half-close is passed on as a write shutdown.
pub async fn run<S: Duplex>(client: S, mut client_buf: ReadBuf, upstream: UpstreamConn) {
    let UpstreamConn { stream: upstream, buf: mut upstream_buf, open: _open, slot: _slot, .. } = upstream;
    let (mut client_r, mut client_w) = client.into_halves();
    let (mut up_r, mut up_w) = upstream.into_halves();
    let up = async {
        pipe(&mut client_r, &mut client_buf, &mut up_w).await;
        let _ = up_w.shutdown().await;
    };
    let down = async {
        pipe(&mut up_r, &mut upstream_buf, &mut client_w).await;
        let _ = client_w.shutdown().await;
    };
    monoio::join!(up, down);
}

async fn pipe<R: AsyncReadRent, W: AsyncWriteRent>(src: &mut R, buf: &mut ReadBuf, dst: &mut W) {
    let _ = super::body::copy_until_close(src, buf, dst, &mut |_| {}).await;
}
