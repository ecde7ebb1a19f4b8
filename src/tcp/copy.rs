//! Two streams joined both ways through bounded buffers, for streams the kernel cannot splice:
//! TLS the gateway terminated or originates. The same stream semantics as [`super::forward`]:
//! an end of stream becomes a write shutdown on the other side, an error resets both, and no
//! byte either way for the idle timeout closes both.

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use crate::duplex::Duplex;

use super::forward::{idle_watch, until_done, RelayEnd, Traffic};

/// Each direction's buffer: what one TLS record carries, at most.
const BUF: usize = 16 * 1024;

pub async fn run<C, U>(client: C, upstream: U, idle: Duration, traffic: Traffic<'_>) -> RelayEnd
where
    C: Duplex,
    U: Duplex,
{
    let (mut client_r, mut client_w) = client.into_halves();
    let (mut up_r, mut up_w) = upstream.into_halves();
    let last = Cell::new(Instant::now());
    let up = pump(&mut client_r, &mut up_w, &last, |n| traffic.to_upstream(n));
    let down = pump(&mut up_r, &mut client_w, &last, |n| traffic.to_client(n));
    until_done(up, down, idle_watch(&last, idle)).await
}

/// Copies `src` to `dst` until `src` ends its stream, then shuts `dst` down for writing.
async fn pump<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    dst: &mut W,
    last: &Cell<Instant>,
    count: impl Fn(u64),
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(BUF);
    loop {
        buf.clear();
        let (res, b) = src.read(buf.slice_mut(0..BUF)).await;
        buf = b.into_inner();
        let n = res?;
        if n == 0 {
            return dst.shutdown().await;
        }
        last.set(Instant::now());
        let (res, b) = dst.write_all(buf).await;
        buf = b;
        res?;
        last.set(Instant::now());
        count(n as u64);
    }
}
