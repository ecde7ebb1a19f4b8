//! Per-core keep-alive pools of upstream connections, one LIFO stack per endpoint.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use rustc_hash::FxHashMap;

use super::live::ConnectionSlot;
use super::UpstreamStream;
use crate::buf::ReadBuf;
use crate::stats::EndpointCounters;

/// Where a pooled connection goes and how: its address, and its cluster's TLS settings
/// (`UpstreamTls::pool_id`, 0 for plain TCP), since two clusters may share an address.
pub type PoolKey = (SocketAddr, u64);

/// An upstream connection with the read buffer that travels with it, so a reused connection
/// costs no allocation.
pub struct UpstreamConn {
    pub stream: UpstreamStream,
    pub key: PoolKey,
    pub buf: ReadBuf,
    /// Our side's address, looked up once when the access log first wants it.
    pub local: Option<SocketAddr>,
    /// Came from the pool rather than a fresh connect: a failure before any response byte is
    /// then most likely the upstream having closed it, and is safe to retry on a fresh one.
    pub reused: bool,
    /// Requests this connection has carried, for `maxRequestsPerConnection`.
    pub requests: u32,
    /// Counts it in its endpoint's `cx_active` until dropped (a tunnel keeps it).
    pub open: EndpointCxGuard,
    /// Its place under the cluster's `maxConnections`, idle in a pool included, as Envoy
    /// counts; `None` until the opener gives it one.
    pub slot: Option<ConnectionSlot>,
}

/// One open connection in its endpoint's counters.
pub struct EndpointCxGuard(Arc<EndpointCounters>);

impl Drop for EndpointCxGuard {
    fn drop(&mut self) {
        self.0.cx_active.dec();
    }
}

/// Upstream read buffers start here and grow only for larger heads.
pub const UPSTREAM_BUF: usize = 4 * 1024;

impl UpstreamConn {
    pub fn new(stream: UpstreamStream, key: PoolKey, counters: Arc<EndpointCounters>) -> Self {
        counters.cx_total.inc();
        counters.cx_active.inc();
        Self {
            stream,
            key,
            buf: ReadBuf::with_capacity(UPSTREAM_BUF),
            local: None,
            reused: false,
            requests: 0,
            open: EndpointCxGuard(counters),
            slot: None,
        }
    }

    /// A second handle on the socket, to wait for it to turn readable (the upstream answering
    /// or closing) while this one is busy writing a request body. `None` over TLS: there a
    /// readable socket may only be the server's session tickets, no answer at all.
    pub fn watcher(&self) -> io::Result<Option<TcpStream>> {
        if matches!(self.stream, UpstreamStream::Tls(..)) {
            return Ok(None);
        }
        let dup = super::keepalive::with_socket(&self.stream, |sock| sock.try_clone())?;
        TcpStream::from_std(dup.into()).map(Some)
    }
}

struct Idle {
    conn: UpstreamConn,
    /// When its cluster's idle timeout ends.
    until: Instant,
}

/// Idle connections of one worker. Per-core pools fragment reuse across workers, so the number
/// kept per endpoint is capped: past the cap a finished connection is closed instead.
pub struct Pools {
    /// Looked up on every request: keyed with a fast hash (the keys are our own endpoints).
    idle: RefCell<FxHashMap<PoolKey, Vec<Idle>>>,
    max_idle_per_endpoint: usize,
}

impl Pools {
    pub fn new(max_idle_per_endpoint: usize) -> Self {
        Self { idle: RefCell::new(FxHashMap::default()), max_idle_per_endpoint }
    }

    /// The most recently used idle connection for `key` that is still clean: within its idle
    /// timeout, not closed by the upstream, with no stray bytes waiting.
    pub fn take(&self, key: PoolKey) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let stack = idle.get_mut(&key)?;
        let now = Instant::now();
        while let Some(entry) = stack.pop() {
            if now < entry.until && is_clean(&entry.conn.stream) {
                let mut conn = entry.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose last exchange ended cleanly, to be closed once idle for
    /// `idle_timeout`.
    pub fn put(&self, mut conn: UpstreamConn, idle_timeout: Duration) {
        let mut idle = self.idle.borrow_mut();
        let stack = idle.entry(conn.key).or_default();
        if stack.len() < self.max_idle_per_endpoint {
            conn.buf.clear();
            stack.push(Idle { conn, until: Instant::now() + idle_timeout });
        }
    }

    /// Closes idle connections the upstream has closed (FIN/RST seen), that received stray
    /// bytes, or that idled out; run periodically so dead sockets do not linger.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        for stack in idle.values_mut() {
            stack.retain(|e| now < e.until && is_clean(&e.conn.stream));
        }
        idle.retain(|_, stack| !stack.is_empty());
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}

/// An idle connection is clean when reading would block: a 0-byte read means the upstream sent
/// FIN, bytes mean a response nobody asked for, an error means RST. One non-blocking peek
/// syscall, no buffer consumed.
fn is_clean(stream: &UpstreamStream) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: the fd is owned by `stream`, alive for this call; MSG_PEEK leaves the data in the
    // socket and MSG_DONTWAIT never blocks. The 1-byte buffer is valid for writes.
    let n = unsafe { libc::recv(stream.as_raw_fd(), byte.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n < 0 && {
        let err = std::io::Error::last_os_error().raw_os_error();
        err == Some(libc::EAGAIN) || err == Some(libc::EWOULDBLOCK)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monoio::io::AsyncWriteRentExt;
    use monoio::net::{TcpListener, TcpStream};

    use super::{Pools, UpstreamConn, UpstreamStream};

    const LONG: Duration = Duration::from_secs(60);

    /// Three idle connections: one the upstream closes, one it writes to unasked, one left
    /// alone. A sweep keeps only the last; an idle timeout then closes it too.
    #[monoio::test_all(timer_enabled = true)]
    async fn sweep_drops_closed_dirty_and_idled_out_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pools = Pools::new(8);
        let mut server_sides = Vec::new();
        for _ in 0..3 {
            let stream = TcpStream::connect(addr).await.unwrap();
            server_sides.push(listener.accept().await.unwrap().0);
            pools.put(UpstreamConn::new(UpstreamStream::Plain(stream), (addr, 0), Default::default()), LONG);
        }
        drop(server_sides.remove(0));
        let (res, _) = server_sides[0].write_all(&b"stray"[..]).await;
        res.unwrap();
        monoio::time::sleep(Duration::from_millis(50)).await;
        pools.sweep();
        assert_eq!(pools.idle_count(), 1);
        let kept = pools.take((addr, 0)).expect("the clean one");
        assert!(kept.reused);
        pools.put(kept, Duration::ZERO);
        pools.sweep();
        assert_eq!(pools.idle_count(), 0);
        assert!(pools.take((addr, 0)).is_none());
    }
}
