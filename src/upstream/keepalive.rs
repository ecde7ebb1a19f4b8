//! DestinationRule `connectionPool.tcp.tcpKeepalive` on upstream sockets, HTTP and TCP alike.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use monoio::net::TcpStream;
use socket2::{SockRef, TcpKeepalive as Params};

use crate::snapshot::TcpKeepalive;

/// Turns on TCP keepalive with the policy's probes, time and interval; an unset field keeps
/// the kernel's default (`net.ipv4.tcp_keepalive_*`), as Envoy does.
pub fn apply(stream: &TcpStream, policy: &TcpKeepalive) -> io::Result<()> {
    // SAFETY: the fd belongs to `stream`, which outlives this borrow; nothing here closes it.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let mut params = Params::new();
    if let Some(time) = policy.time {
        params = params.with_time(time);
    }
    if let Some(interval) = policy.interval {
        params = params.with_interval(interval);
    }
    if let Some(probes) = policy.probes {
        params = params.with_retries(probes);
    }
    SockRef::from(&fd).set_tcp_keepalive(&params)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monoio::net::{TcpListener, TcpStream};
    use socket2::SockRef;

    use super::*;

    #[monoio::test_all]
    async fn sets_every_field_given() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let policy = TcpKeepalive {
            probes: Some(4),
            time: Some(Duration::from_secs(30)),
            interval: Some(Duration::from_secs(5)),
        };
        apply(&stream, &policy).unwrap();
        // SAFETY: as in `apply`.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        let sock = SockRef::from(&fd);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.keepalive_time().unwrap(), Duration::from_secs(30));
        assert_eq!(sock.keepalive_interval().unwrap(), Duration::from_secs(5));
        assert_eq!(sock.keepalive_retries().unwrap(), 4);
    }
}
