//! DestinationRule `connectionPool.tcp.tcpKeepalive` on upstream sockets, HTTP and TCP alike.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use monoio::net::TcpStream;
use socket2::{SockRef, TcpKeepalive as Params};

use crate::snapshot::{Cluster, TcpKeepalive};

/// `f` on a socket2 view of `stream`, for the socket options and calls monoio does not offer.
pub fn with_socket<R>(stream: &impl AsRawFd, f: impl FnOnce(SockRef<'_>) -> R) -> R {
    // SAFETY: the fd belongs to `stream`, which outlives this borrow; nothing here closes it.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    f(SockRef::from(&fd))
}

/// A new upstream connection of `cluster` gets its `tcpKeepalive`, if it has one; a failure
/// is logged and the connection used anyway, as it would be without the setting.
pub fn configure(stream: &TcpStream, cluster: &Cluster) {
    if let Some(policy) = &cluster.policy.tcp_keepalive {
        if let Err(e) = apply(stream, policy) {
            tracing::debug!(cluster = %cluster.name, "tcp keepalive not set: {e}");
        }
    }
}

/// Turns on TCP keepalive with the policy's probes, time and interval; an unset field keeps
/// the kernel's default (`net.ipv4.tcp_keepalive_*`), as Envoy does.
fn apply(stream: &TcpStream, policy: &TcpKeepalive) -> io::Result<()> {
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
    with_socket(stream, |sock| sock.set_tcp_keepalive(&params))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monoio::net::{TcpListener, TcpStream};

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
        with_socket(&stream, |sock| {
            assert!(sock.keepalive().unwrap());
            assert_eq!(sock.keepalive_time().unwrap(), Duration::from_secs(30));
            assert_eq!(sock.keepalive_interval().unwrap(), Duration::from_secs(5));
            assert_eq!(sock.keepalive_retries().unwrap(), 4);
        });
    }
}
