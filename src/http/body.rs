//! Streaming a message body from one socket to another through the bounded read window.

use std::io;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::codec::{BodyFraming, ChunkedDecoder, ParseError};
use super::grpc::{MessageCounter, TrailerStatus};
use crate::buf::ReadBuf;

/// Room asked of the read window per read while streaming: bodies pass in pieces this big.
pub const STREAM_CHUNK: usize = 64 * 1024;
/// Bodies up to this size that already sit in a read window go out in the same write as the
/// head; a request body so sent also stays replayable for a retry.
pub const INLINE_BODY: usize = 16 * 1024;

/// Why a body stopped flowing, attributed to the side that failed.
#[derive(Debug)]
pub enum BodyError {
    /// Reading the source failed or it closed early (`UnexpectedEof`).
    Source(io::Error),
    Sink(io::Error),
    /// The source's chunked framing is broken.
    Framing(ParseError),
}

pub(in crate::http) async fn refill<R: AsyncReadRent>(src: &mut R, rb: &mut ReadBuf) -> Result<(), BodyError> {
    match rb.fill(src, STREAM_CHUNK).await {
        Ok(0) => Err(BodyError::Source(io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => Ok(()),
        Err(e) => Err(BodyError::Source(e)),
    }
}

/// Forwards exactly `n` body bytes: first those already in `rb`, then read from `src`.
/// `seen` is shown each piece as it goes (here and in the copies below: a gRPC body's messages
/// are counted so, without a copy).
pub async fn copy_exact<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    rb: &mut ReadBuf,
    dst: &mut W,
    mut n: u64,
    seen: &mut impl FnMut(&[u8]),
) -> Result<(), BodyError> {
    while n > 0 {
        if rb.is_empty() {
            refill(src, rb).await?;
        }
        let k = (rb.len() as u64).min(n) as usize;
        seen(&rb.data()[..k]);
        rb.write_to(dst, k).await.map_err(BodyError::Sink)?;
        n -= k as u64;
    }
    Ok(())
}

/// Forwards a chunked body verbatim (chunk framing and trailers included) up to its end, which
/// `dec` finds without copying.
pub async fn copy_chunked<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    rb: &mut ReadBuf,
    dst: &mut W,
    dec: &mut ChunkedDecoder,
    seen: &mut impl FnMut(&[u8]),
) -> Result<(), BodyError> {
    loop {
        if rb.is_empty() {
            refill(src, rb).await?;
        }
        let progress = dec.feed(rb.data()).map_err(BodyError::Framing)?;
        seen(&rb.data()[..progress.consumed]);
        rb.write_to(dst, progress.consumed).await.map_err(BodyError::Sink)?;
        if progress.done {
            return Ok(());
        }
    }
}

/// Forwards everything until `src` closes (a response framed by the connection's end).
pub async fn copy_until_close<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    rb: &mut ReadBuf,
    dst: &mut W,
    seen: &mut impl FnMut(&[u8]),
) -> Result<(), BodyError> {
    loop {
        if !rb.is_empty() {
            let k = rb.len();
            seen(rb.data());
            rb.write_to(dst, k).await.map_err(BodyError::Sink)?;
        }
        match rb.fill(src, STREAM_CHUNK).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(BodyError::Source(e)),
        }
    }
}

/// The length of a body (its chunked framing included) that sits whole at the start of
/// `data`, if it is at most `max` bytes.
pub fn buffered_body_len(data: &[u8], framing: BodyFraming, max: usize) -> Option<usize> {
    let len = match framing {
        BodyFraming::None => 0,
        BodyFraming::ContentLength(n) => usize::try_from(n).ok().filter(|&n| n <= data.len())?,
        BodyFraming::Chunked => match ChunkedDecoder::new().feed(data) {
            Ok(p) if p.done => p.consumed,
            _ => return None,
        },
        BodyFraming::UntilClose => return None,
    };
    (len <= max).then_some(len)
}

/// Reads the request body framed as `framing` into `rb` from `src` until it ends or more than
/// `max` bytes of its data are here, as Envoy's ext_authz buffers it for a check carrying it;
/// its data so far and whether that is all of it. The body stays in `rb`, framed, for the
/// exchange: the window holds at most `max` data bytes, their framing and one read more.
pub(in crate::http) async fn read_for_check<R: AsyncReadRent>(
    src: &mut R,
    rb: &mut ReadBuf,
    framing: BodyFraming,
    max: usize,
) -> Result<(Vec<u8>, bool), BodyError> {
    loop {
        let (data, whole) = match framing {
            BodyFraming::None => (Vec::new(), true),
            BodyFraming::ContentLength(n) => {
                let here = rb.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                (rb.data()[..here].to_vec(), here as u64 == n)
            }
            BodyFraming::Chunked => {
                let (mut data, mut rest, mut decoder) = (Vec::new(), rb.data(), ChunkedDecoder::decoding());
                loop {
                    let progress = decoder.feed(rest).map_err(BodyError::Framing)?;
                    if let Some(span) = progress.data {
                        data.extend_from_slice(&rest[span]);
                    }
                    rest = &rest[progress.consumed..];
                    if progress.done || rest.is_empty() {
                        break (data, progress.done);
                    }
                }
            }
            // A request body is never framed by the connection's end.
            BodyFraming::UntilClose => (Vec::new(), true),
        };
        if whole || data.len() > max {
            return Ok((data, whole));
        }
        refill(src, rb).await?;
    }
}

/// Moves a body that sits whole (and small) in `rb` behind the head already in `out`, so both
/// leave in one write. Returns the body's length when the message is now complete in `out`;
/// an `UntilClose` body never is.
pub fn inline_body(rb: &mut ReadBuf, framing: BodyFraming, out: &mut Vec<u8>) -> Option<u64> {
    let len = buffered_body_len(rb.data(), framing, INLINE_BODY)?;
    out.extend_from_slice(&rb.data()[..len]);
    rb.consume(len);
    Some(len as u64)
}

/// A gRPC body in HTTP/1.1 framing as the copies above show it (`seen`): its messages, and for
/// a chunked one the `grpc-status` of its trailers.
#[derive(Debug, Clone)]
pub struct Watch {
    messages: MessageCounter,
    /// A chunked body's own decoder, walking the bytes the copy forwards (verbatim) to find
    /// its data; `None`: the bytes are the payload, or the framing broke (the copy says so).
    chunked: Option<ChunkedDecoder>,
    trailers: TrailerStatus,
}

impl Watch {
    /// A body framed as `framing`; `BodyFraming::None` for bytes that are the payload itself.
    pub fn new(framing: BodyFraming) -> Self {
        let chunked = (framing == BodyFraming::Chunked).then(ChunkedDecoder::decoding);
        Watch { messages: MessageCounter::default(), chunked, trailers: TrailerStatus::default() }
    }

    /// The next bytes of the body, as they are forwarded.
    pub fn feed(&mut self, mut wire: &[u8]) {
        let Some(dec) = &mut self.chunked else {
            return self.messages.feed(wire);
        };
        while !wire.is_empty() && !dec.is_done() {
            let Ok(progress) = dec.feed(wire) else {
                self.chunked = None;
                return;
            };
            match progress.data {
                Some(span) => {
                    self.trailers.feed(&wire[..span.start]);
                    self.messages.feed(&wire[span]);
                }
                None => self.trailers.feed(&wire[..progress.consumed]),
            }
            wire = &wire[progress.consumed..];
        }
    }

    pub fn messages(&self) -> u64 {
        self.messages.count()
    }

    /// The `grpc-status` of the trailers read so far.
    pub fn trailer_status(&self) -> Option<u8> {
        self.trailers.status()
    }
}

#[cfg(test)]
mod tests;
