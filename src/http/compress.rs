//! Response compression with Envoy's compressor filter semantics (`compressor.cc`): the
//! request's `accept-encoding` read into a fixed list, the encoding chosen against the
//! listener's compressors and the response's head, the head's edits (`content-encoding`,
//! `vary`, ETags, framing), and the body compressed as it streams, one flushed chunk per read
//! of the upstream, never whole in memory.

use std::cell::RefCell;
use std::io::{self, Write as _};

use monoio::buf::{IoBufMut, IoVecBufMut};
use monoio::io::AsyncReadRent;
use monoio::BufResult;
use zstd::stream::raw::Operation as _;

use super::body::STREAM_CHUNK;
use super::codec::{BodyFraming, ChunkedDecoder, ResponseHead};
use crate::buf::{read_rent, readv_rent, ReadBuf};
use crate::snapshot::{Compression, Compressor, Library};

#[cfg(test)]
mod tests;

/// The `accept-encoding` items kept per request; later ones are ignored (a fixed array keeps
/// the request path free of allocation, and small: browsers send four or five).
const MAX_ITEMS: usize = 8;

/// An `accept-encoding` item's coding, as Envoy compares it: case-sensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Coding {
    #[default]
    Other,
    Gzip,
    Br,
    Zstd,
    Identity,
    Wildcard,
}

impl Coding {
    fn of(name: &[u8]) -> Self {
        match name {
            b"gzip" => Coding::Gzip,
            b"br" => Coding::Br,
            b"zstd" => Coding::Zstd,
            b"identity" => Coding::Identity,
            b"*" => Coding::Wildcard,
            _ => Coding::Other,
        }
    }

    fn of_library(l: &Library) -> Self {
        match l {
            Library::Gzip { .. } => Coding::Gzip,
            Library::Brotli { .. } => Coding::Br,
            Library::Zstd { .. } => Coding::Zstd,
        }
    }
}

/// A request's `accept-encoding`, parsed as Envoy's `chooseEncoding` reads it: items in order
/// with their q-values, an item with an unparsable q-value left out.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Accept {
    /// The request had the header at all (without it Envoy never compresses).
    present: bool,
    codings: [Coding; MAX_ITEMS],
    q: [f32; MAX_ITEMS],
    len: u8,
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

impl Accept {
    pub fn parse(value: Option<&[u8]>) -> Self {
        let mut out = Accept::default();
        let Some(value) = value else {
            return out;
        };
        out.present = true;
        for token in value.split(|&b| b == b',').filter(|t| !t.is_empty()) {
            let (name, params) = match token.iter().position(|&b| b == b';') {
                Some(i) => (&token[..i], Some(&token[i + 1..])),
                None => (token, None),
            };
            let mut q = 1.0f32;
            if let Some((key, value)) = params.and_then(|p| p.iter().position(|&b| b == b'=').map(|i| p.split_at(i))) {
                if trim(key).eq_ignore_ascii_case(b"q") {
                    match std::str::from_utf8(trim(&value[1..])).ok().and_then(|v| v.parse::<f32>().ok()) {
                        Some(v) => q = v,
                        // Envoy skips an item whose q-value does not parse.
                        None => continue,
                    }
                }
            }
            let i = usize::from(out.len);
            if i < MAX_ITEMS {
                (out.codings[i], out.q[i]) = (Coding::of(trim(name)), q);
                out.len += 1;
            }
        }
        out
    }

    fn items(&self) -> impl Iterator<Item = (Coding, f32)> + '_ {
        let n = usize::from(self.len);
        self.codings[..n].iter().copied().zip(self.q[..n].iter().copied())
    }

    /// Envoy's `chooseEncoding`: among the compressors that take `content_type` (the first of
    /// each encoding, in filter order), less those the client refuses with `q=0`, the item of
    /// highest q-value (the first on a tie) that one of them, `identity` or `*` answers; `*`
    /// picks the first compressor registered. `None`: identity.
    fn choose(&self, compressors: &[Compressor], content_type: Option<&[u8]>) -> Option<Coding> {
        let mut allowed = [Coding::Other; 3];
        let mut n = 0;
        for c in compressors {
            let coding = Coding::of_library(&c.library);
            if content_type.is_some_and(|t| !t.is_empty() && !type_listed(c, t)) || allowed[..n].contains(&coding) {
                continue;
            }
            allowed[n] = coding;
            n += 1;
        }
        let mut allowed = &mut allowed[..n];
        for (coding, q) in self.items() {
            if q == 0.0 {
                if let Some(i) = allowed.iter().position(|a| *a == coding) {
                    allowed.copy_within(i + 1.., i);
                    let len = allowed.len();
                    allowed = &mut allowed[..len - 1];
                }
            }
        }
        if self.len == 0 || allowed.is_empty() {
            return None;
        }
        let mut choice = (Coding::Identity, 0.0f32);
        for (coding, q) in self.items() {
            if q > choice.1 && (allowed.contains(&coding) || matches!(coding, Coding::Identity | Coding::Wildcard)) {
                choice = (coding, q);
            }
        }
        // A zero q-value left means nothing acceptable was offered.
        if choice.1 == 0.0 {
            return None;
        }
        match choice.0 {
            Coding::Identity => None,
            Coding::Wildcard => allowed.first().copied(),
            coding => Some(coding),
        }
    }
}

/// The media type of a `content-type` value: before any `;`, trimmed.
fn media_type(value: &[u8]) -> &[u8] {
    trim(value.split(|&b| b == b';').next().unwrap_or_default())
}

/// Whether compressor `c` takes media type `t` (compared case-insensitively, as Envoy's set).
fn type_listed(c: &Compressor, t: &[u8]) -> bool {
    c.content_types.iter().any(|ct| ct.as_bytes().eq_ignore_ascii_case(t))
}

/// Whether a comma-separated `list` holds `token`, trimmed and compared as `case`-insensitive
/// or not.
fn has_token(list: &[u8], token: &str, case_insensitive: bool) -> bool {
    list.split(|&b| b == b',').map(trim).any(|t| {
        if case_insensitive {
            t.eq_ignore_ascii_case(token.as_bytes())
        } else {
            t == token.as_bytes()
        }
    })
}

/// What the compressors do to one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// The response could be compressed (a cache must key on `accept-encoding`): Envoy adds
    /// `vary` then even when this client does not get it compressed.
    pub vary: bool,
    /// The compressor (index into [`Compression::compressors`]) that compresses it.
    pub compressor: Option<usize>,
}

/// Envoy's `encodeHeaders`, for each compressor of the chain: the response is compressible by
/// it when it is enabled, long enough (a `content-length` of at least its minimum, or chunked),
/// of a listed type (any, without `content-type`), not `no-transform`, not carrying an ETag
/// it refuses, and not encoded already; it compresses a compressible response that has a body
/// and no compressing transfer-coding when the request chose its encoding.
pub fn decide(compression: &Compression, accept: &Accept, head: &ResponseHead<'_>) -> Decision {
    let mut out = Decision::default();
    let content_length = head.header("content-length");
    let chunked = head.header_values("transfer-encoding").any(|te| has_token(te, "chunked", true));
    let content_type = head.header("content-type");
    let no_transform = head.header_values("cache-control").any(|cc| has_token(cc, "no-transform", true));
    let etag = head.header("etag").is_some();
    let encoded = head.header("content-encoding").is_some();
    // No body (HEAD, 204, 304, an empty one): Envoy's headers end the stream.
    let end_stream = head.framing == BodyFraming::None;
    let mut chosen = None;
    for (i, c) in compression.compressors.iter().enumerate() {
        let long_enough = match content_length {
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n >= c.min_content_length),
            None => chunked,
        };
        if !(c.enabled && long_enough) {
            continue;
        }
        let type_ok = content_type.is_none_or(|t| type_listed(c, media_type(t)));
        let refused = !type_ok || no_transform || encoded || (c.disable_on_etag_header && etag);
        if refused {
            continue;
        }
        out.vary = true;
        if end_stream || out.compressor.is_some() || !accept.present {
            continue;
        }
        let coding =
            *chosen.get_or_insert_with(|| accept.choose(&compression.compressors, content_type.map(media_type)));
        let encoding = c.library.encoding();
        let te_ok = !head
            .header_values("transfer-encoding")
            .any(|te| has_token(te, encoding, true) || has_token(te, "gzip", true) || has_token(te, "deflate", true));
        if coding == Some(Coding::of_library(&c.library)) && te_ok {
            out.compressor = Some(i);
        }
    }
    out
}

/// The `vary` value after Envoy's `insertVaryHeader`: `Accept-Encoding` appended to the
/// response's unless it names it already (compared case-sensitively, as Envoy does); `None`
/// to keep the response's as it is.
pub fn vary(current: Option<&[u8]>) -> Option<String> {
    const ACCEPT_ENCODING: &str = "Accept-Encoding";
    match current {
        None => Some(ACCEPT_ENCODING.to_owned()),
        Some(v) if has_token(v, ACCEPT_ENCODING, false) => None,
        Some(v) => Some(format!("{}, {ACCEPT_ENCODING}", String::from_utf8_lossy(v))),
    }
}

/// A strong ETag, which Envoy drops from a compressed response (a weak one, `W/"…"`, stays:
/// the representation is equivalent, not byte-identical).
pub fn strong_etag(value: &[u8]) -> bool {
    value.len() > 2 && !(matches!(value[0], b'w' | b'W') && value[1] == b'/')
}

/// The head a compressed response is written from: the upstream's fields, framed as chunks
/// (its length is unknown until the last byte is compressed).
pub fn rechunked<'b>(head: &ResponseHead<'b>) -> ResponseHead<'b> {
    ResponseHead { framing: BodyFraming::Chunked, content_length: None, chunked: true, ..head.clone() }
}

/// One library's streaming state.
enum Engine {
    Gzip(flate2::Compress),
    /// `None` once finished.
    Brotli(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    Zstd(zstd::stream::raw::Encoder<'static>),
}

thread_local! {
    /// Each core's idle gzip and zstd states, by their parameters: reset and reused by the next
    /// response instead of allocated (a zlib state is over 256 KiB). Brotli's writer cannot be
    /// reset: one is made per response, as Envoy does for every library.
    static IDLE: RefCell<Vec<(Library, Engine)>> = const { RefCell::new(Vec::new()) };
}

/// Idle states kept per core at most.
const MAX_IDLE: usize = 64;

impl Engine {
    fn take(library: Library) -> io::Result<Engine> {
        let idle = IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            let i = idle.iter().position(|(l, _)| *l == library)?;
            Some(idle.swap_remove(i).1)
        });
        if let Some(e) = idle {
            return Ok(e);
        }
        Ok(match library {
            Library::Gzip { level, window_bits } => {
                Engine::Gzip(flate2::Compress::new_gzip(flate2::Compression::new(level), window_bits))
            }
            Library::Brotli { quality, window_bits } => {
                Engine::Brotli(Some(Box::new(brotli::CompressorWriter::new(Vec::new(), 4096, quality, window_bits))))
            }
            Library::Zstd { level, checksum } => {
                let mut e = zstd::stream::raw::Encoder::new(level)?;
                e.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(checksum))?;
                Engine::Zstd(e)
            }
        })
    }

    /// Compresses `input` onto `out`, flushed so that the client can decode everything sent so
    /// far (Envoy's `Flush` per data frame), or finished at the end of the body.
    fn compress(&mut self, input: &[u8], out: &mut Vec<u8>, finish: bool) -> io::Result<()> {
        match self {
            Engine::Gzip(z) => {
                use flate2::{FlushCompress, Status};
                let flush = if finish { FlushCompress::Finish } else { FlushCompress::Sync };
                let mut input = input;
                loop {
                    out.reserve(input.len() / 2 + 64);
                    let before = z.total_in();
                    let status = z.compress_vec(input, out, flush).map_err(io::Error::other)?;
                    input = &input[(z.total_in() - before) as usize..];
                    // Done when the input is in and zlib left room unused (all flushed out).
                    match status {
                        Status::StreamEnd => return Ok(()),
                        _ if input.is_empty() && out.len() < out.capacity() && !finish => return Ok(()),
                        _ => {}
                    }
                }
            }
            Engine::Brotli(writer) => {
                let w = writer.as_mut().ok_or(io::ErrorKind::NotConnected)?;
                w.write_all(input)?;
                if !finish {
                    w.flush()?;
                    out.append(w.get_mut());
                } else if let Some(w) = writer.take() {
                    out.extend_from_slice(&w.into_inner());
                }
                Ok(())
            }
            Engine::Zstd(e) => {
                use zstd::stream::raw::{InBuffer, OutBuffer};
                let mut src = InBuffer::around(input);
                while src.pos() < input.len() {
                    out.reserve(input.len() - src.pos() + 64);
                    let len = out.len();
                    let mut dst = OutBuffer::around_pos(out, len);
                    e.run(&mut src, &mut dst)?;
                }
                loop {
                    out.reserve(4096);
                    let len = out.len();
                    let mut dst = OutBuffer::around_pos(out, len);
                    let left = if finish { e.finish(&mut dst, true)? } else { e.flush(&mut dst)? };
                    if left == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Hands a gzip or zstd state back to this core's idle list, reset.
    fn put_back(self, library: Library) {
        let state = match self {
            Engine::Gzip(mut z) => {
                z.reset();
                Engine::Gzip(z)
            }
            Engine::Zstd(mut e) => {
                if e.reinit().is_err() {
                    return;
                }
                Engine::Zstd(e)
            }
            Engine::Brotli(_) => return,
        };
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            if idle.len() < MAX_IDLE {
                idle.push((library, state));
            }
        });
    }
}

/// A response body compressed as it is read: the upstream's body (framed as `framing`, read
/// through `buf`) comes out of this reader as a chunked body of compressed data, one chunk per
/// upstream read, so that either client codec relays it as it relays any chunked body.
pub struct Compressing<'u, R> {
    src: &'u mut R,
    buf: &'u mut ReadBuf,
    framing: BodyFraming,
    /// A length-framed body's bytes still to read.
    left: u64,
    dec: ChunkedDecoder,
    library: Library,
    engine: Option<Engine>,
    /// Compressed bytes not yet framed, and the framed chunk being handed out from `pos`.
    scratch: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    done: bool,
    /// Uncompressed bytes taken from the upstream.
    pub uncompressed: u64,
}

impl<'u, R: AsyncReadRent> Compressing<'u, R> {
    pub fn new(src: &'u mut R, buf: &'u mut ReadBuf, framing: BodyFraming, library: Library) -> io::Result<Self> {
        let left = match framing {
            BodyFraming::ContentLength(n) => n,
            _ => 0,
        };
        Ok(Compressing {
            src,
            buf,
            framing,
            left,
            dec: ChunkedDecoder::decoding(),
            library,
            engine: Some(Engine::take(library)?),
            // Per response, like the engine's output: a compressed response costs far more CPU
            // than these two allocations.
            scratch: Vec::new(),
            out: Vec::new(),
            pos: 0,
            done: false,
            uncompressed: 0,
        })
    }

    /// Reads the upstream until one more chunk is framed in `out`, or the body ends.
    async fn next_chunk(&mut self) -> io::Result<()> {
        let eof = || io::Error::from(io::ErrorKind::UnexpectedEof);
        self.out.clear();
        self.pos = 0;
        let engine = self.engine.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        self.scratch.clear();
        let finish = match self.framing {
            BodyFraming::ContentLength(_) => {
                if self.left > 0 && self.buf.is_empty() && self.buf.fill(self.src, STREAM_CHUNK).await? == 0 {
                    return Err(eof());
                }
                let k = (self.buf.len() as u64).min(self.left) as usize;
                engine.compress(&self.buf.data()[..k], &mut self.scratch, self.left == k as u64)?;
                self.buf.consume(k);
                self.left -= k as u64;
                self.uncompressed += k as u64;
                self.left == 0
            }
            BodyFraming::Chunked => loop {
                if self.buf.is_empty() && self.buf.fill(self.src, STREAM_CHUNK).await? == 0 {
                    return Err(eof());
                }
                let progress = self
                    .dec
                    .feed(self.buf.data())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                match progress.data {
                    Some(span) => {
                        engine.compress(&self.buf.data()[span.clone()], &mut self.scratch, false)?;
                        self.uncompressed += span.len() as u64;
                        self.buf.consume(span.end);
                        break false;
                    }
                    // The upstream's trailers end here: a compressed body ends with none.
                    None => self.buf.consume(progress.consumed),
                }
                if progress.done {
                    engine.compress(&[], &mut self.scratch, true)?;
                    break true;
                }
            },
            BodyFraming::UntilClose => {
                let n = self.buf.fill(self.src, STREAM_CHUNK).await?;
                let k = self.buf.len();
                engine.compress(&self.buf.data()[..k], &mut self.scratch, n == 0)?;
                self.buf.consume(k);
                self.uncompressed += k as u64;
                n == 0
            }
            BodyFraming::None => {
                engine.compress(&[], &mut self.scratch, true)?;
                true
            }
        };
        // An empty chunk would end the body: only a non-empty one goes out before the end.
        if !self.scratch.is_empty() {
            let _ = write!(self.out, "{:x}\r\n", self.scratch.len());
            self.out.extend_from_slice(&self.scratch);
            self.out.extend_from_slice(b"\r\n");
        }
        if finish {
            self.out.extend_from_slice(b"0\r\n\r\n");
            self.done = true;
            if let Some(e) = self.engine.take() {
                e.put_back(self.library);
            }
        }
        Ok(())
    }

    /// Copies up to `len` framed bytes to `ptr`, compressing more when none are pending; 0 once
    /// the last chunk went out.
    async fn fill(&mut self, ptr: *mut u8, len: usize) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk().await?;
        }
        let n = len.min(self.out.len() - self.pos);
        // SAFETY: `ptr` has room for `len` bytes (monoio's buffer contract), `n <= len`, and
        // `out[pos..pos + n]` is initialised memory of our own that cannot overlap it.
        unsafe { std::ptr::copy_nonoverlapping(self.out.as_ptr().add(self.pos), ptr, n) };
        self.pos += n;
        Ok(n)
    }
}

impl<R: AsyncReadRent> AsyncReadRent for Compressing<'_, R> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        read_rent(buf, async |ptr, len| self.fill(ptr, len).await).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        readv_rent(buf, async |ptr, len| self.fill(ptr, len).await).await
    }
}
