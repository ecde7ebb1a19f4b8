//! The rest of a terminated handshake, driven here rather than by monoio-rustls so that the
//! connection rustls made from the ClientHello already read is the one that finishes it.

use monoio::io::AsyncWriteRentExt;
use rustls::ServerConnection;

use super::TlsFailure;
use crate::buf::ReadBuf;
use crate::percore::ClientTcp;

/// Runs the handshake on `conn` to its end, reading through `rb` (the ClientHello's buffer,
/// all of it already in `conn`). Bytes the client sent after its last handshake message stay
/// inside `conn`, for the stream built on it to read first.
pub async fn finish(tcp: &mut ClientTcp, conn: &mut ServerConnection, rb: &mut ReadBuf) -> Result<(), TlsFailure> {
    let mut out = Vec::new();
    loop {
        flush(tcp, conn, &mut out).await?;
        if !conn.is_handshaking() {
            return Ok(());
        }
        rb.clear();
        if rb.fill(tcp, 4096).await.map_err(TlsFailure::Io)? == 0 {
            return Err(TlsFailure::Closed);
        }
        let mut data = rb.data();
        while !data.is_empty() {
            conn.read_tls(&mut data).map_err(TlsFailure::Io)?;
            if let Err(e) = conn.process_new_packets() {
                // The alert rustls queued tells the client why; it may be gone already.
                let _ = flush(tcp, conn, &mut out).await;
                return Err(TlsFailure::Handshake(e));
            }
        }
    }
}

/// Sends whatever rustls has queued.
async fn flush(tcp: &mut ClientTcp, conn: &mut ServerConnection, out: &mut Vec<u8>) -> Result<(), TlsFailure> {
    while conn.wants_write() {
        out.clear();
        conn.write_tls(out).map_err(TlsFailure::Io)?;
        let (res, buf) = tcp.write_all(std::mem::take(out)).await;
        *out = buf;
        res.map_err(TlsFailure::Io)?;
    }
    Ok(())
}
