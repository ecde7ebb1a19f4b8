//! Two sockets joined both ways until each side is done.
//!
//! Each direction moves bytes with `splice(2)` through a pipe of its own, so the payload never
//! enters user space; where no pipe can be had (out of descriptors) a bounded buffer copies
//! instead. The sockets are switched to non-blocking and driven by readiness (a poll op on
//! io_uring, epoll on the legacy driver) followed by direct non-blocking calls: io_uring runs a
//! `splice` on a socket on a kernel worker thread that blocks until data comes, one thread per
//! idle direction, which is the wrong price for long-lived quiet connections.
//!
//! Stream semantics, as Envoy's tcp_proxy: an end of stream from one side becomes a write
//! shutdown on the other while the opposite direction keeps flowing; a reset (or any error) on
//! either side resets both; no bytes either way for the idle timeout closes both.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::stats::L4Counters;

/// A new pipe's size (the kernel's default), and the copy fallback's buffer per direction.
const PIPE_SIZE: usize = 64 * 1024;
/// What a pipe grows to once a stream proves bulk: it then moves 16 times as much per call,
/// measured to cut CPU per byte by a quarter (perf/tcp.md). Quiet streams (most connections)
/// keep the small pipe, which counts less against the per-user pipe quota.
const BULK_PIPE_SIZE: usize = 1024 * 1024;
/// A read this large marks a stream as bulk. Not "the pipe filled": a pipe holds 16 packets'
/// pages, which from a 1500-byte-MTU NIC is only about 23 KiB.
const GROW_AFTER: usize = 16 * 1024;

/// Where each direction's bytes are counted: the route sees the client's side, the cluster
/// the upstream's, and the connection its own for its access-log line.
pub struct Traffic<'a> {
    pub downstream: &'a L4Counters,
    pub upstream: &'a L4Counters,
    pub connection: &'a Transferred,
}

impl Traffic<'_> {
    /// `n` bytes went from the client to the upstream.
    pub(super) fn to_upstream(&self, n: u64) {
        self.downstream.rx_bytes.add(n);
        self.upstream.tx_bytes.add(n);
        self.connection.received.set(self.connection.received.get() + n);
    }

    /// `n` bytes went from the upstream to the client.
    pub(super) fn to_client(&self, n: u64) {
        self.upstream.rx_bytes.add(n);
        self.downstream.tx_bytes.add(n);
        self.connection.sent.set(self.connection.sent.get() + n);
    }
}

/// One connection's bytes: `received` from the client, `sent` to it (Envoy's BYTES_RECEIVED
/// and BYTES_SENT).
#[derive(Debug, Default)]
pub struct Transferred {
    pub received: Cell<u64>,
    pub sent: Cell<u64>,
}

/// How a relay of two streams ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides ended their streams.
    Closed,
    /// A side reset or failed: both were reset.
    Reset,
    /// Nothing moved for the idle timeout: both were closed.
    IdleTimeout,
}

/// Joins `client` and `upstream` until both directions end, a side fails, or `idle` passes
/// with no byte moved.
pub async fn run(client: TcpStream, upstream: TcpStream, idle: Duration, traffic: Traffic<'_>) -> RelayEnd {
    run_with([Stage::new(), Stage::new()], client, upstream, idle, traffic).await
}

/// [`run`] with the stages given: toward the upstream, then toward the client.
async fn run_with(
    stages: [Stage; 2],
    client: TcpStream,
    upstream: TcpStream,
    idle: Duration,
    traffic: Traffic<'_>,
) -> RelayEnd {
    if set_nonblocking(client.as_raw_fd()).and_then(|()| set_nonblocking(upstream.as_raw_fd())).is_err() {
        return RelayEnd::Reset;
    }
    let [mut to_upstream, mut to_client] = stages;
    let last = Cell::new(Instant::now());
    let up = pump(&client, &upstream, &mut to_upstream, &last, |n| traffic.to_upstream(n));
    let down = pump(&upstream, &client, &mut to_client, &last, |n| traffic.to_client(n));
    let outcome = until_done(up, down, idle_watch(&last, idle)).await;
    if outcome == RelayEnd::Reset {
        reset_on_close(client.as_raw_fd());
        reset_on_close(upstream.as_raw_fd());
    }
    outcome
}

/// Polls both directions and the idle watch; the first error or the idle watch ends it all.
pub(super) async fn until_done(
    up: impl Future<Output = io::Result<()>>,
    down: impl Future<Output = io::Result<()>>,
    idle: impl Future<Output = ()>,
) -> RelayEnd {
    let (mut up, mut down, mut idle) = (pin!(up), pin!(down), pin!(idle));
    let (mut up_done, mut down_done) = (false, false);
    poll_fn(|cx| {
        if step(up.as_mut(), &mut up_done, cx).is_err() || step(down.as_mut(), &mut down_done, cx).is_err() {
            return Poll::Ready(RelayEnd::Reset);
        }
        if up_done && down_done {
            return Poll::Ready(RelayEnd::Closed);
        }
        idle.as_mut().poll(cx).map(|()| RelayEnd::IdleTimeout)
    })
    .await
}

/// Polls one direction unless it is done; its error, if it failed.
fn step<F: Future<Output = io::Result<()>>>(fut: Pin<&mut F>, done: &mut bool, cx: &mut Context<'_>) -> io::Result<()> {
    if !*done {
        if let Poll::Ready(result) = fut.poll(cx) {
            result?;
            *done = true;
        }
    }
    Ok(())
}

/// One direction: fill the stage from `src`, empty it into `dst`, until `src` ends its stream,
/// which is passed on as a write shutdown of `dst`.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    stage: &mut Stage,
    last: &Cell<Instant>,
    count: impl Fn(u64),
) -> io::Result<()> {
    loop {
        let n = loop {
            match stage.fill(src.as_raw_fd()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => src.readable(false).await?,
                filled => break filled?,
            }
        };
        if n == 0 {
            shutdown_write(dst.as_raw_fd());
            return Ok(());
        }
        last.set(Instant::now());
        let mut left = n;
        while left > 0 {
            match stage.drain(dst.as_raw_fd(), left) {
                Ok(k) => left -= k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable(false).await?,
                Err(e) => return Err(e),
            }
        }
        last.set(Instant::now());
        count(n as u64);
    }
}

/// Returns once `idle` has passed since the last byte moved.
pub(super) async fn idle_watch(last: &Cell<Instant>, idle: Duration) {
    loop {
        let since = last.get().elapsed();
        if since >= idle {
            return;
        }
        monoio::time::sleep(idle - since).await;
    }
}

/// Where one direction's bytes wait between the read side and the write side.
enum Stage {
    /// A pipe of `size` bytes: `splice` moves page references in and out of it.
    Pipe { read: OwnedFd, write: OwnedFd, size: usize },
    /// A buffer holding `filled` bytes, of which the first `sent` have gone out.
    Buffer { buf: Box<[u8]>, filled: usize, sent: usize },
}

impl Stage {
    fn new() -> Self {
        match pipe() {
            Ok((read, write)) => Stage::Pipe { read, write, size: PIPE_SIZE },
            Err(e) => {
                tracing::debug!("no pipe for a tcp stream ({e}): copying through a buffer");
                Stage::buffer()
            }
        }
    }

    fn buffer() -> Self {
        Stage::Buffer { buf: vec![0; PIPE_SIZE].into_boxed_slice(), filled: 0, sent: 0 }
    }

    /// Takes what `src` has (the stage is empty); 0 at the end of its stream.
    fn fill(&mut self, src: RawFd) -> io::Result<usize> {
        match self {
            Stage::Pipe { write, size, .. } => {
                let n = splice(src, write.as_raw_fd(), *size)?;
                if n >= GROW_AFTER && *size < BULK_PIPE_SIZE {
                    *size = grow(write.as_raw_fd()).unwrap_or(*size);
                }
                Ok(n)
            }
            Stage::Buffer { buf, filled, sent } => {
                // SAFETY: `buf` is valid for `buf.len()` writable bytes for the whole call.
                let n = unsafe { libc::read(src, buf.as_mut_ptr().cast(), buf.len()) };
                let n = cvt(n)?;
                (*filled, *sent) = (n, 0);
                Ok(n)
            }
        }
    }

    /// Writes up to `len` of the held bytes to `dst`.
    fn drain(&mut self, dst: RawFd, len: usize) -> io::Result<usize> {
        match self {
            Stage::Pipe { read, .. } => splice(read.as_raw_fd(), dst, len),
            Stage::Buffer { buf, filled, sent } => {
                let out = &buf[*sent..*filled];
                // SAFETY: `out` is valid for `out.len()` readable bytes for the whole call.
                let n = unsafe { libc::send(dst, out.as_ptr().cast(), out.len().min(len), libc::MSG_NOSIGNAL) };
                let n = cvt(n)?;
                *sent += n;
                Ok(n)
            }
        }
    }
}

fn cvt(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Grows a pipe to [`BULK_PIPE_SIZE`]; `None` where the kernel refuses (past the per-user pipe
/// quota, or beyond `fs.pipe-max-size`), and the pipe keeps its size.
fn grow(pipe: RawFd) -> Option<usize> {
    // SAFETY: fcntl on a pipe this task owns, with an integer argument.
    let size = unsafe { libc::fcntl(pipe, libc::F_SETPIPE_SZ, BULK_PIPE_SIZE as libc::c_int) };
    usize::try_from(size).ok()
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: plain descriptors, no offsets (null: both ends are a socket or a pipe).
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
    cvt(n)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this task owns, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Passes an end of stream on. A peer already gone (ENOTCONN) needs nothing more.
fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown on a descriptor this task owns.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// Makes the coming close send an RST rather than a FIN (SO_LINGER with a zero timeout).
fn reset_on_close(fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: `linger` outlives the call and its size is passed with it.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

#[cfg(test)]
mod tests;
