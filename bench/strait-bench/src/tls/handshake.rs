//! Handshakes per second: each operation opens a connection, handshakes (full, or resuming the
//! session the load connection's last handshake got), sends one `Connection: close` request and
//! reads its whole answer.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use rustls::HandshakeKind;

use super::client::Tls;
use crate::connect::Connect;
use crate::http::decode::Decoder;
use crate::runner::{Backoff, Thread};
use crate::stats::{ErrorKind, Recorder};

/// An answer's head must fit in this; the body is counted, not kept.
const MAX_HEAD: usize = 64 * 1024;

/// The measured handshakes' kinds, summed over the threads.
#[derive(Debug, Default)]
pub struct Kinds {
    pub resumed: AtomicU64,
    /// Full handshakes although the connection had a session to offer: the server declined (or
    /// never issued) it. In resumed mode these make the figures a full handshake's, in part.
    pub full_not_resumed: AtomicU64,
}

/// What one thread's connections share.
struct Shared {
    thread: Thread,
    tls: Tls,
    request: Bytes,
    /// Resumed mode: each connection has a session store of its own, and a full handshake while
    /// it held a session counts against the server.
    resume: bool,
    rec: RefCell<Recorder>,
    resumed: Cell<u64>,
    full_not_resumed: Cell<u64>,
}

/// One load thread: `thread.connections` connections, each doing operations back to back.
pub async fn thread(thread: Thread, tls: Tls, request: Bytes, resume: bool, kinds: &Kinds) -> Recorder {
    let rec = RefCell::new(thread.recorder());
    let connections = thread.connections;
    let shared =
        Rc::new(Shared { thread, tls, request, resume, rec, resumed: Cell::new(0), full_not_resumed: Cell::new(0) });
    let tasks: Vec<_> = (0..connections).map(|_| monoio::spawn(connection(shared.clone()))).collect();
    for task in tasks {
        task.await;
    }
    kinds.resumed.fetch_add(shared.resumed.get(), Relaxed);
    kinds.full_not_resumed.fetch_add(shared.full_not_resumed.get(), Relaxed);
    let Ok(shared) = Rc::try_unwrap(shared) else { unreachable!("every connection task has ended") };
    shared.rec.into_inner()
}

async fn connection(s: Rc<Shared>) {
    let tls = if s.resume { s.tls.with_own_sessions() } else { s.tls.clone() };
    // Whether a handshake completed, so the store holds a session to resume.
    let mut had_session = false;
    let mut backoff = Backoff::new();
    loop {
        let start = Instant::now();
        if !s.thread.start_one(start) {
            return;
        }
        let result = monoio::time::timeout(tls.timeout, once(&tls, s.request.clone())).await;
        match result.unwrap_or(Err(ErrorKind::Timeout)) {
            Ok(done) => {
                backoff.reset();
                let at = done.at;
                let mut rec = s.rec.borrow_mut();
                rec.answer(at, at - start, done.status);
                rec.bytes(at, done.bytes);
                if at >= s.thread.measure_from {
                    match done.resumed {
                        true => s.resumed.set(s.resumed.get() + 1),
                        false if had_session && s.resume => s.full_not_resumed.set(s.full_not_resumed.get() + 1),
                        false => {}
                    }
                }
                had_session = true;
            }
            Err(kind) => {
                s.rec.borrow_mut().error(Instant::now(), kind);
                s.thread.pause(&mut backoff).await;
            }
        }
    }
}

/// A completed operation.
struct Done {
    /// When the answer was whole: the operation's end.
    at: Instant,
    status: u16,
    bytes: u64,
    resumed: bool,
}

async fn once(tls: &Tls, request: Bytes) -> Result<Done, ErrorKind> {
    let mut stream = tls.connect().await?;
    stream.write_all(request).await.0.map_err(|_| ErrorKind::Io)?;
    let (status, bytes) = read_answer(&mut stream).await?;
    let at = Instant::now();
    // The answer is whole: a failing close_notify (the server may be gone already) fails nothing.
    let _ = stream.shutdown().await;
    let (_, session) = stream.into_parts();
    Ok(Done { at, status, bytes, resumed: session.handshake_kind() == Some(HandshakeKind::Resumed) })
}

/// Reads one answer to a `Connection: close` request with the HTTP mode's decoder. Returns its
/// status and size (head and body).
async fn read_answer<S: AsyncReadRent>(stream: &mut S) -> Result<(u16, u64), ErrorKind> {
    let mut decoder = Decoder::new(false);
    // Only what the decoder has not used stays: at most part of a head or a chunk-size line.
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut read = 0;
    loop {
        let len = buf.len();
        if len == buf.capacity() {
            if len >= MAX_HEAD {
                return Err(ErrorKind::Parse);
            }
            buf.reserve(len);
        }
        let (result, slice) = stream.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        let n = match result {
            Ok(n) => n,
            // The peer closed TCP without a close_notify: a close all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(_) => return Err(ErrorKind::Io),
        };
        if n == 0 {
            return decoder.eof().map(|answer| (answer.status, read)).ok_or(ErrorKind::Closed);
        }
        read += n as u64;
        let (used, answer) = decoder.decode(&buf)?;
        if let Some(answer) = answer {
            return Ok((answer.status, read));
        }
        buf.drain(..used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(answer: &'static [u8]) -> Result<(u16, u64), ErrorKind> {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build().unwrap();
        rt.block_on(async { read_answer(&mut &*answer).await })
    }

    #[test]
    fn answers() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n";
        let long: &'static [u8] = format!("{head}{}", "x".repeat(20_000)).leak().as_bytes();
        assert_eq!(read(long), Ok((200, long.len() as u64)));
        assert_eq!(read(&long[..long.len() - 1]), Err(ErrorKind::Closed));
        assert_eq!(read(b"HTTP/1.1 503 Busy\r\n\r\nto the close"), Ok((503, 33)));
        assert_eq!(read(b"HTTP/1.1 200 OK\r\nContent-Le"), Err(ErrorKind::Closed));
        let big_head: &'static [u8] =
            format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "y".repeat(MAX_HEAD)).leak().as_bytes();
        assert_eq!(read(big_head), Err(ErrorKind::Parse));
    }
}
