//! Reading a connection's ClientHello before deciding what to do with it: its SNI picks the
//! Gateway server (Envoy's TLS inspector and filter-chain match). The bytes are kept, for a
//! passthrough to replay them to the upstream untouched.

use monoio::io::AsyncReadRent;
use rustls::server::{Accepted, Acceptor};

use super::TlsFailure;
use crate::buf::ReadBuf;

/// A ClientHello larger than this is refused: a real one (post-quantum key shares included)
/// is a few KiB.
const MAX_HELLO: usize = 64 * 1024;

pub struct Hello {
    /// Every byte read from the client so far.
    pub raw: ReadBuf,
    pub accepted: Accepted,
    /// Copied out: rustls lends it only for the moment.
    sni: Option<Box<str>>,
}

impl Hello {
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }
}

/// Reads until a whole ClientHello has arrived.
pub async fn read<S: AsyncReadRent>(stream: &mut S) -> Result<Hello, TlsFailure> {
    let mut acceptor = Acceptor::default();
    let mut raw = ReadBuf::with_capacity(2048);
    let mut fed = 0;
    loop {
        if raw.len() >= MAX_HELLO {
            return Err(TlsFailure::Hello("ClientHello too large".into()));
        }
        if raw.fill(stream, 2048).await.map_err(TlsFailure::Io)? == 0 {
            return Err(TlsFailure::Closed);
        }
        let mut new = &raw.data()[fed..];
        while !new.is_empty() {
            acceptor.read_tls(&mut new).map_err(TlsFailure::Io)?;
        }
        fed = raw.len();
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(Into::into);
                return Ok(Hello { raw, accepted, sni });
            }
            Ok(None) => {}
            // Not TLS, or a ClientHello rustls cannot parse. No alert: a plain-text client
            // would only be confused by one.
            Err((e, _alert)) => return Err(TlsFailure::Hello(e.to_string())),
        }
    }
}
