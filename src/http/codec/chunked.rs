//! Body framing: a streaming, zero-copy scanner for chunked bodies (RFC 9112 §7.1) and
//! the counting helper for Content-Length bodies.
//!
//! The scanner never copies: it tells the caller how many input bytes belong to the
//! message (to forward them verbatim and to know where a pipelined next message starts)
//! and, in decode mode, where the data bytes are (to de-chunk for an HTTP/1.0 client).
//! It holds state across calls, so input may arrive split anywhere, down to one byte.

use super::fields::TCHAR;
use super::ParseError;
use std::ops::Range;

/// Longest chunk-size line (size, extensions) accepted: extensions are legal but
/// unbounded ones only serve to make a peer spin.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;
/// Chunk sizes must stay below 2^63 (they end up in signed 64-bit counters elsewhere).
const MAX_CHUNK_SIZE: u64 = i64::MAX as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// First hex digit of a chunk size.
    SizeStart,
    /// More hex digits, or what ends the size.
    Size,
    /// Whitespace after the size: only `;` (an extension) may follow (BWS rule).
    SizeWs,
    /// Extension bytes up to CR.
    Ext,
    /// LF ending the size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer field line, or the CR of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

/// Result of one [`ChunkedDecoder::feed`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes that belong to the message, from the start of the input. Less than the
    /// input length only when the message ended (`done`) or, in decode mode, after a data
    /// span (call again with the rest).
    pub consumed: usize,
    /// Decode mode: chunk data inside `input[..consumed]` (always its tail).
    pub data: Option<Range<usize>>,
    /// The final CRLF after the last chunk and trailers has been consumed.
    pub done: bool,
}

/// Streaming chunked-body scanner.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Current chunk size while reading it, then the data bytes still to come.
    size: u64,
    line_len: usize,
    trailer_len: usize,
    decode: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// Pass-through mode: each `feed` walks as far as the input goes.
    pub fn new() -> Self {
        ChunkedDecoder { state: State::SizeStart, size: 0, line_len: 0, trailer_len: 0, decode: false }
    }

    /// Decode mode: `feed` stops after each span of chunk data and reports it.
    pub fn decoding() -> Self {
        ChunkedDecoder { decode: true, ..Self::new() }
    }

    #[inline]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Walks `input`, which continues where the previous call's consumed bytes ended.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, ParseError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Data => {
                    // Bulk: the only state where most bytes are, and no byte is looked at.
                    let take = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    let start = i;
                    i += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    if self.decode && take > 0 {
                        return Ok(Progress { consumed: i, data: Some(start..i), done: false });
                    }
                }
                State::Done => break,
                _ => {
                    let b = input[i];
                    i += 1;
                    self.step(b)?;
                    if self.state == State::Done {
                        break;
                    }
                }
            }
        }
        Ok(Progress { consumed: i, data: None, done: self.state == State::Done })
    }

    /// One framing byte.
    #[inline]
    fn step(&mut self, b: u8) -> Result<(), ParseError> {
        self.state = match self.state {
            State::SizeStart => {
                let d = hex(b).ok_or(ParseError::InvalidChunkSize)?;
                self.size = u64::from(d);
                self.line_len = 1;
                State::Size
            }
            State::Size => {
                self.line_len += 1;
                if let Some(d) = hex(b) {
                    if self.size > MAX_CHUNK_SIZE >> 4 {
                        return Err(ParseError::ChunkSizeOverflow);
                    }
                    self.size = self.size << 4 | u64::from(d);
                    if self.line_len > MAX_CHUNK_LINE {
                        return Err(ParseError::InvalidChunkSize);
                    }
                    State::Size
                } else {
                    match b {
                        b';' => State::Ext,
                        b' ' | b'\t' => State::SizeWs,
                        b'\r' => State::SizeLf,
                        _ => return Err(ParseError::InvalidChunkSize),
                    }
                }
            }
            State::SizeWs => {
                self.line_len += 1;
                match b {
                    b' ' | b'\t' if self.line_len <= MAX_CHUNK_LINE => State::SizeWs,
                    b';' => State::Ext,
                    // "5 \r\n": whitespace is only allowed before an extension.
                    _ => return Err(ParseError::InvalidChunkSize),
                }
            }
            State::Ext => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE {
                    return Err(ParseError::InvalidChunkExtension);
                }
                match b {
                    b'\r' => State::SizeLf,
                    // Bare LF, NUL and other CTLs are where parsers disagree: refuse.
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Ext,
                    _ => return Err(ParseError::InvalidChunkExtension),
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ParseError::InvalidChunkSize);
                }
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(ParseError::MissingChunkCrlf);
                }
                State::DataLf
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(ParseError::MissingChunkCrlf);
                }
                State::SizeStart
            }
            State::TrailerStart => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::FinalLf,
                    // SP/HT would be obs-fold; LF a bare line end.
                    _ if TCHAR[b as usize] => State::TrailerName,
                    _ => return Err(ParseError::InvalidTrailer),
                }
            }
            State::TrailerName => {
                self.count_trailer()?;
                match b {
                    b':' => State::TrailerValue,
                    _ if TCHAR[b as usize] => State::TrailerName,
                    _ => return Err(ParseError::InvalidTrailer),
                }
            }
            State::TrailerValue => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::TrailerLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => State::TrailerValue,
                    _ => return Err(ParseError::InvalidTrailer),
                }
            }
            State::TrailerLf => {
                self.count_trailer()?;
                if b != b'\n' {
                    return Err(ParseError::InvalidTrailer);
                }
                State::TrailerStart
            }
            State::FinalLf => {
                if b != b'\n' {
                    return Err(ParseError::InvalidTrailer);
                }
                State::Done
            }
            // Handled by `feed`.
            State::Data | State::Done => self.state,
        };
        Ok(())
    }

    #[inline]
    fn count_trailer(&mut self) -> Result<(), ParseError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILERS {
            return Err(ParseError::TrailersTooLarge);
        }
        Ok(())
    }
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Counting helper for a `Content-Length` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentLengthBody {
    /// Body bytes still to come.
    pub remaining: u64,
}

impl ContentLengthBody {
    pub fn new(len: u64) -> Self {
        ContentLengthBody { remaining: len }
    }

    /// Of `available` bytes just read, how many belong to the body (the rest is the next
    /// pipelined message).
    #[inline]
    pub fn feed(&mut self, available: usize) -> usize {
        let take = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
        self.remaining -= take as u64;
        take
    }

    #[inline]
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }
}
