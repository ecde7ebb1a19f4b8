//! `gatewayTopology.proxyProtocol`: the PROXY protocol header (v1 or v2) every connection opens
//! with, read before anything else, as istiod's `envoy.filters.listener.proxy_protocol` listener
//! filter reads it on every gateway listener.

use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::AsyncReadRentExt;
use monoio::net::TcpStream;
use ppp::{v1, v2};

use crate::percore::ConnInfo;

/// Envoy's `listener_filters_timeout` (15 s): a connection whose header is not in by then is
/// closed (istiod leaves `continue_on_listener_filters_timeout` off).
const HEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// The v2 signature's first 8 bytes, and the fixed part of a v2 header (signature, version and
/// command, family, length).
const V2_START: &[u8] = b"\r\n\r\n\0\r\nQ";
const V2_FIXED: usize = 16;
/// A v1 header's longest form, CRLF included (the spec's 107 bytes).
const V1_MAX: usize = 107;

/// Reads the connection's PROXY header and returns `conn` with the client and gateway addresses
/// it names; `None` refuses the connection: no header, a malformed one, or none in time, as
/// Envoy closes such a connection. A v2 `LOCAL` header (a health check of the load balancer's
/// own) and a v1 `UNKNOWN` keep the socket's addresses, as Envoy keeps them.
///
/// Nothing past the header is consumed: v2 is read in exact reads (its length is in its fixed
/// part); v1, text of unknown length, a byte at a time (at most 107, once per connection).
pub async fn read(stream: &mut TcpStream, conn: ConnInfo) -> Option<ConnInfo> {
    let addresses = monoio::time::timeout(HEADER_TIMEOUT, header(stream)).await.ok().flatten()?;
    Some(match addresses {
        Some((client, local)) => ConnInfo { client, local, ..conn },
        None => conn,
    })
}

/// The header's (source, destination), `Some(None)` for one that names none.
async fn header(stream: &mut TcpStream) -> Option<Option<(SocketAddr, SocketAddr)>> {
    let (res, mut buf) = stream.read_exact(vec![0u8; V2_START.len()]).await;
    res.ok()?;
    if buf == V2_START {
        buf.reserve(V2_FIXED - V2_START.len());
        let (res, rest) = stream.read_exact(vec![0u8; V2_FIXED - V2_START.len()]).await;
        res.ok()?;
        buf.extend_from_slice(&rest);
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        let (res, rest) = stream.read_exact(vec![0u8; len]).await;
        res.ok()?;
        buf.extend_from_slice(&rest);
        return v2_addresses(&buf);
    }
    if !buf.starts_with(b"PROXY ") {
        return None;
    }
    while !buf.ends_with(b"\r\n") {
        if buf.len() >= V1_MAX {
            return None;
        }
        let (res, byte) = stream.read_exact(vec![0u8; 1]).await;
        res.ok()?;
        buf.push(byte[0]);
    }
    v1_addresses(&buf)
}

/// A whole v2 header's addresses.
fn v2_addresses(bytes: &[u8]) -> Option<Option<(SocketAddr, SocketAddr)>> {
    let header = v2::Header::try_from(bytes).ok()?;
    if header.command == v2::Command::Local {
        return Some(None);
    }
    Some(match header.addresses {
        v2::Addresses::IPv4(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        v2::Addresses::IPv6(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        // Envoy keeps the socket's addresses for a family it cannot express as an IP.
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    })
}

/// A whole v1 header's addresses.
fn v1_addresses(bytes: &[u8]) -> Option<Option<(SocketAddr, SocketAddr)>> {
    let header = v1::Header::try_from(std::str::from_utf8(bytes).ok()?).ok()?;
    Some(match header.addresses {
        v1::Addresses::Tcp4(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        v1::Addresses::Tcp6(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        v1::Addresses::Unknown => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_headers_name_their_addresses_or_none() {
        let got = v1_addresses(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n").unwrap();
        assert_eq!(got, Some((addr("203.0.113.7:51000"), addr("10.0.0.1:443"))));
        let got = v1_addresses(b"PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n").unwrap();
        assert_eq!(got, Some((addr("[2001:db8::1]:51000"), addr("[2001:db8::2]:443"))));
        assert_eq!(v1_addresses(b"PROXY UNKNOWN\r\n"), Some(None));
        assert_eq!(v1_addresses(b"PROXY TCP4 300.0.0.1 10.0.0.1 1 2\r\n"), None);
        assert_eq!(v1_addresses(b"PROXY TCP4 1.2.3.4\r\n"), None);
    }

    #[test]
    fn v2_headers_name_their_addresses_and_local_keeps_the_sockets() {
        const SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
        let proxy: Vec<u8> = [
            SIGNATURE,
            b"\x21\x11\x00\x0c",
            &[203, 0, 113, 7, 10, 0, 0, 1],
            &51000u16.to_be_bytes(),
            &443u16.to_be_bytes(),
        ]
        .concat();
        assert_eq!(v2_addresses(&proxy).unwrap(), Some((addr("203.0.113.7:51000"), addr("10.0.0.1:443"))));
        let local: Vec<u8> = [SIGNATURE, b"\x20\x00\x00\x00"].concat();
        assert_eq!(v2_addresses(&local), Some(None));
        let bad_version: Vec<u8> = [SIGNATURE, b"\x11\x11\x00\x00"].concat();
        assert_eq!(v2_addresses(&bad_version), None);
    }
}
