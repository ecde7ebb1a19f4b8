//! `serve http`: an HTTP/1.1 keep-alive origin, generic over the stream (TCP or TLS). Requests
//! are parsed in place (httparse) from one reused buffer; every request the buffer holds whole
//! is answered and the answers go out in one write, so a pipelining client costs one write per
//! batch. Bodies are read off (Content-Length or chunked) and, with `--echo`, sent back;
//! otherwise every answer is the same response, serialized once.

use std::io;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use strait::kit::{ChunkedDecoder, ReadBuf};

/// A request head, chunk-size line or trailer line longer than this is refused: no client the
/// backend serves sends one, and the read buffer must not grow without bound.
const MAX_LINE: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// A connection's read buffer starts this big, and each read gets at least `READ_ROOM` of it.
const READ_BUF: usize = 16 * 1024;
const READ_ROOM: usize = 4 * 1024;

/// Answers not yet written start in this much room (a deep pipeline of small answers grows it).
const OUT_BUF: usize = 4 * 1024;

/// A fixed body up to this size is copied into the batch that goes out in one write; a bigger
/// one (the 1 MiB scenario) is written from the thread's one copy instead.
const INLINE_MAX: usize = 16 * 1024;

/// What `fixed_body` repeats.
const BODY_PATTERN: &[u8] = b"hello";

const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The fixed body: "hello", as the C backend answers, repeated or cut to `size`.
pub fn fixed_body(size: usize) -> Bytes {
    BODY_PATTERN.iter().copied().cycle().take(size).collect::<Vec<u8>>().into()
}

/// `serve http`'s and `serve h2`'s flags, shared by the threads.
#[derive(Clone)]
pub struct Config {
    pub size: usize,
    pub echo: bool,
    pub stall: Option<Arc<Stall>>,
    pub relay: Option<std::net::SocketAddr>,
}

/// `--stall-once N:DURATION`.
pub struct Stall {
    at: u64,
    pub(super) wait: Duration,
    /// Requests seen so far, all threads together.
    seen: AtomicU64,
}

impl Stall {
    pub fn new(at: u64, wait: Duration) -> Self {
        Stall { at, wait, seen: AtomicU64::new(0) }
    }

    /// Whether the request just read is the `at`th.
    pub(super) fn is_due(&self) -> bool {
        // Once past it the counter is only read, so threads stop contending for its cache line.
        self.seen.load(Relaxed) < self.at && self.seen.fetch_add(1, Relaxed) + 1 == self.at
    }
}

/// One thread's server: the fixed answer serialized once, in the three forms a connection's
/// persistence asks for.
pub struct Server {
    /// Indexed by `Persist as usize`.
    heads: [Box<[u8]>; 3],
    body: Bytes,
    echo: bool,
    stall: Option<Arc<Stall>>,
}

impl Server {
    pub fn new(config: &Config) -> Self {
        let size = config.size;
        let head = |persist: Persist| {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n{}\r\n",
                persist.header()
            );
            head.into_bytes().into_boxed_slice()
        };
        Server {
            heads: [Persist::KeepAlive, Persist::KeepAlive10, Persist::Close].map(head),
            body: fixed_body(size),
            echo: config.echo,
            stall: config.stall.clone(),
        }
    }
}

/// What happens to the connection after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1's default: nothing to say.
    KeepAlive = 0,
    /// HTTP/1.0 keeps the connection only when the answer says so too.
    KeepAlive10 = 1,
    Close = 2,
}

impl Persist {
    fn header(self) -> &'static str {
        match self {
            Persist::KeepAlive => "",
            Persist::KeepAlive10 => "Connection: keep-alive\r\n",
            Persist::Close => "Connection: close\r\n",
        }
    }
}

/// What a request head says about reading and answering the request.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    /// Bytes of the head, its final CRLF included.
    len: usize,
    persist: Persist,
    body: Framing,
    /// A HEAD request: answered without a body.
    no_body: bool,
    /// The client waits for `100 Continue` before it sends its body.
    expect_continue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

/// A request the backend cannot frame: answered with 400, then the connection is closed.
#[derive(Debug, PartialEq, Eq)]
struct BadRequest;

/// Parses the head at the start of `buf`: `None` while it is not all there.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, BadRequest> {
    let mut headers = [MaybeUninit::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_LINE => return Ok(None),
        _ => return Err(BadRequest),
    };
    let mut length = None;
    // Whether the last transfer coding named is chunked, once one is.
    let mut last_chunked = None;
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value).ok_or(BadRequest)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadRequest);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            last_chunked = Some(tokens(h.value).last().is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    // A request body is chunked only if chunked is its last coding, and chunked framing wins
    // over a Content-Length (RFC 9112 §6.1, §6.3).
    let body = match last_chunked {
        Some(true) => Framing::Chunked,
        Some(false) => return Err(BadRequest),
        None => Framing::Length(length.unwrap_or(0)),
    };
    let persist = match (req.version, close, keep_alive) {
        (_, true, _) => Persist::Close,
        (Some(0), false, true) => Persist::KeepAlive10,
        (Some(0), false, false) => Persist::Close,
        _ => Persist::KeepAlive,
    };
    Ok(Some(Head {
        len,
        persist,
        body,
        no_body: req.method == Some("HEAD"),
        expect_continue: expect_continue && body != Framing::Length(0),
    }))
}

/// Digits only: `u64::from_str` would also take a sign.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The elements of a comma-separated header value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// Serves HTTP/1.1 on `stream` until the client closes, asks to close, errs or sends what
/// cannot be framed.
pub async fn serve<S: AsyncReadRent + AsyncWriteRent>(stream: S, server: Rc<Server>) {
    let mut conn = Conn {
        stream,
        server,
        rb: ReadBuf::with_capacity(READ_BUF),
        out: Vec::with_capacity(OUT_BUF),
        state: State::Head,
        echoed: Vec::new(),
    };
    let _ = conn.run().await;
}

struct Conn<S> {
    stream: S,
    server: Rc<Server>,
    rb: ReadBuf,
    /// Answers not yet written: everything one read completed goes out in one write.
    out: Vec<u8>,
    state: State,
    /// A chunked body being echoed: its length must be known before its head goes out.
    echoed: Vec<u8>,
}

enum State {
    Head,
    Body(Request, Body),
}

/// What the answer to a request whose body is still being read needs.
#[derive(Clone, Copy)]
struct Request {
    persist: Persist,
    no_body: bool,
}

enum Body {
    /// Bytes to go.
    Length(u64),
    Chunked(ChunkedDecoder),
}

#[derive(PartialEq, Eq)]
enum Flow {
    Read,
    Close,
}

impl<S: AsyncReadRent + AsyncWriteRent> Conn<S> {
    async fn run(&mut self) -> io::Result<()> {
        loop {
            let flow = self.answer_buffered().await?;
            if !self.out.is_empty() {
                self.flush().await?;
            }
            if flow == Flow::Close {
                return self.stream.shutdown().await;
            }
            if self.rb.fill(&mut self.stream, READ_ROOM).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Answers every request the buffer holds whole and reads off as much of the next body as
    /// has come.
    async fn answer_buffered(&mut self) -> io::Result<Flow> {
        loop {
            match std::mem::replace(&mut self.state, State::Head) {
                State::Head => {
                    let head = match parse_head(self.rb.data()) {
                        Ok(Some(head)) => head,
                        Ok(None) => return Ok(Flow::Read),
                        Err(BadRequest) => return Ok(self.bad_request()),
                    };
                    self.rb.consume(head.len);
                    if let Some(wait) = self.server.stall.as_ref().filter(|s| s.is_due()).map(|s| s.wait) {
                        // The answers before it are not held back with it.
                        self.flush().await?;
                        monoio::time::sleep(wait).await;
                    }
                    if head.expect_continue {
                        self.out.extend_from_slice(CONTINUE);
                    }
                    let req = Request { persist: head.persist, no_body: head.no_body };
                    match head.body {
                        Framing::Length(len) => {
                            // Its length is known: an echo streams back as the body comes.
                            if self.server.echo {
                                self.echo_head(req, len);
                            }
                            if len == 0 {
                                if self.answered(req).await? == Flow::Close {
                                    return Ok(Flow::Close);
                                }
                            } else {
                                self.state = State::Body(req, Body::Length(len));
                            }
                        }
                        Framing::Chunked => {
                            // Only an echo needs the data spans; a sink walks each read in one go.
                            let dec = if self.server.echo { ChunkedDecoder::decoding() } else { ChunkedDecoder::new() };
                            self.state = State::Body(req, Body::Chunked(dec));
                        }
                    }
                }
                State::Body(req, Body::Length(left)) => {
                    let n = left.min(self.rb.len() as u64);
                    if n == 0 {
                        self.state = State::Body(req, Body::Length(left));
                        return Ok(Flow::Read);
                    }
                    if self.server.echo && !req.no_body {
                        self.out.extend_from_slice(&self.rb.data()[..n as usize]);
                    }
                    self.rb.consume(n as usize);
                    if n < left {
                        self.state = State::Body(req, Body::Length(left - n));
                    } else if self.answered(req).await? == Flow::Close {
                        return Ok(Flow::Close);
                    }
                }
                State::Body(req, Body::Chunked(mut chunked)) => {
                    let Ok(progress) = chunked.feed(self.rb.data()) else {
                        return Ok(self.bad_request());
                    };
                    if let Some(span) = progress.data.clone().filter(|_| self.server.echo) {
                        self.echoed.extend_from_slice(&self.rb.data()[span]);
                    }
                    self.rb.consume(progress.consumed);
                    if !progress.done {
                        // Without a data span, every buffered byte was walked: read more.
                        let read = progress.data.is_none();
                        self.state = State::Body(req, Body::Chunked(chunked));
                        if read {
                            return Ok(Flow::Read);
                        }
                        continue;
                    }
                    if self.server.echo {
                        self.echo_head(req, self.echoed.len() as u64);
                        if !req.no_body {
                            self.out.extend_from_slice(&self.echoed);
                        }
                        self.echoed.clear();
                    }
                    if self.answered(req).await? == Flow::Close {
                        return Ok(Flow::Close);
                    }
                }
            }
        }
    }

    /// The request has been read whole. An echo is queued by then; a fixed answer is queued now.
    async fn answered(&mut self, req: Request) -> io::Result<Flow> {
        if !self.server.echo {
            self.out.extend_from_slice(&self.server.heads[req.persist as usize]);
            if !req.no_body {
                if self.server.body.len() <= INLINE_MAX {
                    self.out.extend_from_slice(&self.server.body);
                } else {
                    let body = self.server.body.clone();
                    self.flush().await?;
                    let (res, _) = self.stream.write_all(body).await;
                    res?;
                }
            }
        }
        Ok(if req.persist == Persist::Close { Flow::Close } else { Flow::Read })
    }

    fn echo_head(&mut self, req: Request, len: u64) {
        self.out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: ");
        self.out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(req.persist.header().as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn bad_request(&mut self) -> Flow {
        self.out.extend_from_slice(BAD_REQUEST);
        Flow::Close
    }

    async fn flush(&mut self) -> io::Result<()> {
        let (res, mut out) = self.stream.write_all(std::mem::take(&mut self.out)).await;
        out.clear();
        self.out = out;
        res.map(drop)
    }
}

#[cfg(test)]
mod tests;
