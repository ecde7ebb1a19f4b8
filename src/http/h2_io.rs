//! What the HTTP/2 edges (clients in `h2/`, upstreams in `exchange/h2.rs` and `mirror.rs`)
//! share: tokio's poll-based `AsyncRead`/`AsyncWrite`, which h2 speaks, over one of our
//! rent-based streams (a socket, or the TLS stream over it), on either monoio driver; DATA sent
//! within the peer's window ([`send_data`]); an upstream request head written as HTTP/1.1
//! turned into an HTTP/2 request ([`request_of`], [`DataWriter`]); and the HTTP/2 names of the
//! fields the gateway writes ([`own_field`], [`field_name`]).
//!
//! Why not monoio's `poll-io` (`TcpStream::into_poll_io`): it covers a bare socket only, and a
//! TLS connection here is our own rustls stream (`tls_stream.rs`), so TLS would need a second
//! adapter anyway; nor does it let the h2c sniff hand over the bytes the HTTP/1.1 session read
//! first. Why not `monoio-compat`'s `StreamWrapper`: it lends one stream to a read and a write
//! in flight at once through a raw pointer, which our TLS stream (one rustls session) cannot
//! soundly take. Here the stream is taken apart into its [`Duplex`] halves, each owned by its
//! one operation in flight, so a read and a write may wait at once without aliasing anything.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::SendStream;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use monoio::buf::{IoBuf, IoVecBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::BufResult;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::duplex::Duplex;
use crate::http::body::STREAM_CHUNK;
use crate::http::codec::{self, BodyFraming, ChunkedDecoder, Own, ParseError, Written};

/// Room for one read: a TLS record's worth, h2's largest default frame and its header.
const READ_ROOM: usize = 16 * 1024 + 9;

/// An operation in flight, owning its half and its buffer (boxed: h2 polls, it cannot hold
/// our futures; one allocation per socket operation, on the HTTP/2 path only).
type Op<H, T> = Pin<Box<dyn Future<Output = (H, T)>>>;

enum Side<H, T> {
    Idle(H),
    Busy(Op<H, T>),
    /// Only between taking the half out and putting it back, or after a shutdown.
    Gone,
}

/// What watches the frames passing a [`PollIo`]: a client connection's flood bounds
/// (`h2/flood.rs`); nothing (`()`) on an upstream connection.
pub(super) trait FrameWatch {
    /// Bytes read from the peer.
    fn inbound(&mut self, bytes: &[u8]);
    /// Bytes about to be written to the peer.
    fn outbound(&mut self, bytes: &[u8]);
    /// Why the connection must end, once it must.
    fn tripped(&self) -> Option<&'static str>;
    /// The GOAWAY frame to send before it ends, if any.
    fn goaway(&self) -> Option<[u8; 17]>;
}

impl FrameWatch for () {
    fn inbound(&mut self, _: &[u8]) {}
    fn outbound(&mut self, _: &[u8]) {}
    fn tripped(&self) -> Option<&'static str> {
        None
    }
    fn goaway(&self) -> Option<[u8; 17]> {
        None
    }
}

/// One stream as h2's transport.
pub(super) struct PollIo<S: Duplex, W: FrameWatch = ()> {
    read: Side<S::Read, (io::Result<usize>, Vec<u8>)>,
    /// What the last read brought and h2 has not taken yet: `rbuf[pos..]`.
    rbuf: Vec<u8>,
    pos: usize,
    write: Side<S::Write, (io::Result<()>, Vec<u8>)>,
    /// The write buffer, back between writes for its allocation.
    wbuf: Vec<u8>,
    shut: bool,
    watch: W,
    /// Whether the watch's GOAWAY was written (or tried).
    said_goaway: bool,
}

// The halves are moved into boxed operations, never pinned in place.
impl<S: Duplex, W: FrameWatch> Unpin for PollIo<S, W> {}

impl<S: Duplex> PollIo<S>
where
    S::Read: 'static,
    S::Write: 'static,
{
    /// An upstream connection: nothing watches its frames.
    pub(super) fn new(stream: S) -> Self {
        Self::watched(stream, Vec::new(), ())
    }
}

impl<S: Duplex, W: FrameWatch> PollIo<S, W>
where
    S::Read: 'static,
    S::Write: 'static,
{
    /// `first`: bytes already read from `stream` (the h2c sniff's), handed to h2 first;
    /// `watch` sees every frame both ways.
    pub(super) fn watched(stream: S, first: Vec<u8>, mut watch: W) -> Self {
        let (r, w) = stream.into_halves();
        watch.inbound(&first);
        PollIo {
            read: Side::Idle(r),
            rbuf: first,
            pos: 0,
            write: Side::Idle(w),
            wbuf: Vec::new(),
            shut: false,
            watch,
            said_goaway: false,
        }
    }

    /// Writes the watch's GOAWAY once, after whatever write is in flight; ready when it is
    /// written or cannot be.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.said_goaway {
            if ready!(self.poll_written(cx)).is_err() {
                return Poll::Ready(());
            }
            self.said_goaway = true;
            match self.watch.goaway() {
                Some(frame) if self.start_write(&frame) => {}
                _ => return Poll::Ready(()),
            }
        }
        self.poll_written(cx).map(drop)
    }

    /// Starts writing `data` (copied into the write buffer) when no write is in flight;
    /// whether it started.
    fn start_write(&mut self, data: &[u8]) -> bool {
        let mut half = match std::mem::replace(&mut self.write, Side::Gone) {
            Side::Idle(half) => half,
            other => {
                self.write = other;
                return false;
            }
        };
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        buf.extend_from_slice(data);
        self.write = Side::Busy(Box::pin(async move {
            let (res, buf) = half.write_all(buf).await;
            (half, (res.map(drop), buf))
        }));
        true
    }

    /// Waits for the write in flight, if any, to end; its error, if it failed.
    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Side::Busy(op) = &mut self.write else {
            return Poll::Ready(Ok(()));
        };
        let (half, (res, buf)) = ready!(op.as_mut().poll(cx));
        self.write = Side::Idle(half);
        self.wbuf = buf;
        Poll::Ready(res)
    }
}

impl<S: Duplex, W: FrameWatch> AsyncRead for PollIo<S, W>
where
    S::Read: 'static,
    S::Write: 'static,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // A flood ends the connection: h2 sees the transport fail and closes it, as Envoy
            // closes a connection past its flood bounds; a frame error, after the GOAWAY with
            // its code is written.
            if let Some(why) = this.watch.tripped() {
                ready!(this.poll_goaway(cx));
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
            }
            if this.pos < this.rbuf.len() {
                let n = out.remaining().min(this.rbuf.len() - this.pos);
                out.put_slice(&this.rbuf[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            match std::mem::replace(&mut this.read, Side::Gone) {
                Side::Idle(mut half) => {
                    let mut buf = std::mem::take(&mut this.rbuf);
                    buf.clear();
                    buf.reserve(READ_ROOM);
                    this.pos = 0;
                    this.read = Side::Busy(Box::pin(async move {
                        let (res, buf) = half.read(buf).await;
                        (half, (res, buf))
                    }));
                }
                Side::Busy(mut op) => match op.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.read = Side::Busy(op);
                        return Poll::Pending;
                    }
                    Poll::Ready((half, (res, buf))) => {
                        this.read = Side::Idle(half);
                        this.rbuf = buf;
                        this.pos = 0;
                        match res {
                            // End of stream: nothing put in `out`.
                            Ok(0) => return Poll::Ready(Ok(())),
                            Ok(_) => this.watch.inbound(&this.rbuf),
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                },
                Side::Gone => return Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
            }
        }
    }
}

impl<S: Duplex, W: FrameWatch> AsyncWrite for PollIo<S, W>
where
    S::Read: 'static,
    S::Write: 'static,
{
    /// Takes `data` at once into the write buffer and starts writing it; the next write (or a
    /// flush) waits for that one to end, so at most one buffer is ever in flight.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_written(cx))?;
        if !this.start_write(data) {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        }
        this.watch.outbound(data);
        // Submitted now, and the task woken when it ends.
        match this.poll_written(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(data.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_written(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_written(cx))?;
            if this.shut {
                return Poll::Ready(Ok(()));
            }
            let Side::Idle(mut half) = std::mem::replace(&mut this.write, Side::Gone) else {
                return Poll::Ready(Ok(()));
            };
            this.shut = true;
            this.write = Side::Busy(Box::pin(async move {
                let res = half.shutdown().await;
                (half, (res, Vec::new()))
            }));
        }
    }
}

/// Sends `data` on `stream` within its flow-control window, waiting for capacity, so that
/// nothing queues in h2 beyond what the peer lets us send: a response to a client, or a
/// request body to an upstream.
pub(super) async fn send_data(stream: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> io::Result<()> {
    if data.is_empty() {
        return if end { stream.send_data(data, true).map_err(io::Error::other) } else { Ok(()) };
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let room = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(room)) => room,
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => return Err(io::ErrorKind::BrokenPipe.into()),
        };
        let piece = data.split_to(room.min(data.len()));
        stream.send_data(piece, end && data.is_empty()).map_err(io::Error::other)?;
    }
    Ok(())
}

/// Flow-control windows we give an upstream: what it may send ahead of the relay's reads, per
/// stream and per connection, as the client side bounds them (README's "HTTP/2").
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// How the gateway opens HTTP/2 connections to upstreams.
pub(super) fn client_builder() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        // Request data queued per stream: the body writer waits for window before it reads on.
        .max_send_buffer_size(STREAM_CHUNK)
        // istiod's clusters take no server push (Envoy does not support it upstream).
        .enable_push(false);
    builder
}

/// Fields that are connection-specific in HTTP/2 (RFC 9113 §8.2.2): an HTTP/2 message carrying
/// one is malformed, and none is sent as an HTTP/2 field.
pub(super) fn connection_specific(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 5] = [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The HTTP/2 request for the HTTP/1.1 head the codec wrote at the start of `out`: its length
/// and how the body after it is framed. `tls`: the upstream is reached over TLS (`:scheme`
/// https, as Envoy sets it from the upstream transport). The head is read back line by line
/// ([`Written`]): the codec checked every byte of it already.
pub(super) fn request_of(out: &[u8], tls: bool) -> Result<(http::Request<()>, usize, BodyFraming), ParseError> {
    let head = Written::of(out).ok_or(ParseError::HeadTooLarge)?;
    let (method, target) = head.request_line().ok_or(ParseError::InvalidTarget)?;
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::from_bytes(method).map_err(|_| ParseError::InvalidMethod)?;
    // One copy of the head that every value is a slice of, rather than a copy of each value.
    let shared = Bytes::copy_from_slice(&out[..head.len]);
    let (mut authority, mut chunked, mut length) = (None, false, None);
    let fields = request.headers_mut();
    *fields = HeaderMap::with_capacity(FIELDS_ROOM);
    for (name, value) in head.fields() {
        if name.eq_ignore_ascii_case(b"host") {
            authority = Some(value);
            continue;
        }
        // The body's HTTP/1.1 framing, which DATA frames replace.
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = true;
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            codec::fold_content_length(value, &mut length)?;
        }
        if connection_specific(name) {
            continue;
        }
        // `te` only as `trailers` (RFC 9113 §8.2.2), which gRPC sends.
        if name.eq_ignore_ascii_case(b"te") && !value.eq_ignore_ascii_case(b"trailers") {
            continue;
        }
        let name = field_name(name).map_err(|_| ParseError::InvalidHeaderName)?;
        let mut value = HeaderValue::from_maybe_shared(shared_slice(&shared, out, value))
            .map_err(|_| ParseError::InvalidHeaderValue)?;
        // A value new on every request would only churn the connection's HPACK table (each
        // inserted, then evicted some forty requests later): sent as never indexed instead.
        if name == X_REQUEST_ID {
            value.set_sensitive(true);
        }
        fields.append(name, value);
    }
    let authority = authority.ok_or(ParseError::MissingHost)?;
    let authority =
        Authority::from_maybe_shared(shared_slice(&shared, out, authority)).map_err(|_| ParseError::InvalidHost)?;
    let path =
        PathAndQuery::from_maybe_shared(shared_slice(&shared, out, target)).map_err(|_| ParseError::InvalidTarget)?;
    *request.uri_mut() = http::Uri::builder()
        .scheme(if tls { Scheme::HTTPS } else { Scheme::HTTP })
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| ParseError::InvalidTarget)?;
    let framing = match (chunked, length) {
        (true, _) => BodyFraming::Chunked,
        (false, Some(n)) => BodyFraming::ContentLength(n),
        (false, None) => BodyFraming::None,
    };
    Ok((request, head.len, framing))
}

/// The fields a head's map is made with room for, without growing: a request as the gateway
/// forwards it carries about ten (the client's, the forwarding fields, the request id), a
/// response fewer. An empty map would be allocated at the first field, then again at the
/// seventh.
pub(super) const FIELDS_ROOM: usize = 12;

/// `x-request-id`, which the gateway sets on every request (Envoy's request id).
pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The HTTP/2 field name of a field the gateway writes: a constant, where `from_bytes` (or
/// `from_static` at run time) would look every name up, and allocate a copy of each outside
/// `http`'s standard set.
pub(super) fn own_field(own: Own) -> HeaderName {
    use http::header;
    match own {
        Own::Host => header::HOST,
        Own::ContentLength => header::CONTENT_LENGTH,
        Own::TransferEncoding => header::TRANSFER_ENCODING,
        Own::Connection => header::CONNECTION,
        Own::Upgrade => header::UPGRADE,
        Own::Date => header::DATE,
        Own::Server => header::SERVER,
        Own::XRequestId => X_REQUEST_ID,
        Own::XForwardedFor => const { HeaderName::from_static(Own::XForwardedFor.name()) },
        Own::XForwardedProto => const { HeaderName::from_static(Own::XForwardedProto.name()) },
        Own::XForwardedClientCert => const { HeaderName::from_static(Own::XForwardedClientCert.name()) },
        Own::XEnvoyExternalAddress => const { HeaderName::from_static(Own::XEnvoyExternalAddress.name()) },
        Own::XEnvoyAttemptCount => const { HeaderName::from_static(Own::XEnvoyAttemptCount.name()) },
        Own::XEnvoyExpectedRqTimeoutMs => const { HeaderName::from_static(Own::XEnvoyExpectedRqTimeoutMs.name()) },
        Own::XEnvoyUpstreamServiceTime => const { HeaderName::from_static(Own::XEnvoyUpstreamServiceTime.name()) },
        Own::GrpcTimeout => const { HeaderName::from_static(Own::GrpcTimeout.name()) },
    }
}

/// An HTTP/2 field name (lower case, RFC 9113 §8.2.1) for `name`: the gateway's own fields,
/// which the codec writes in lower case, by [`own_field`].
pub(super) fn field_name(name: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    match Own::ALL.iter().find(|own| own.name().as_bytes() == name) {
        Some(&own) => Ok(own_field(own)),
        None => HeaderName::from_bytes(name),
    }
}

/// The part of `shared` (a copy of `whole`'s start) that `part` (a slice of `whole`) is.
pub(super) fn shared_slice(shared: &Bytes, whole: &[u8], part: &[u8]) -> Bytes {
    let at = part.as_ptr() as usize - whole.as_ptr() as usize;
    shared.slice(at..at + part.len())
}

/// The request body's way up: HTTP/1.1-framed bytes (as the client's codec writes them) in,
/// DATA frames out, each sent within the stream's window before the next bytes are taken, so
/// nothing is released that has not gone.
pub(super) struct DataWriter {
    pub(super) stream: SendStream<Bytes>,
    /// De-frames a chunked body; `None`: the bytes are the body (a length framed it).
    pub(super) decoder: Option<ChunkedDecoder>,
}

impl DataWriter {
    /// Sends what `data` carries of the body.
    pub(super) async fn push(&mut self, data: &[u8]) -> io::Result<()> {
        self.send(data, false).await
    }

    /// Sends `data`, all that is left of the body: the stream ends with its last DATA frame,
    /// not with an empty one after it, as Envoy ends a body it holds whole.
    pub(super) async fn push_last(&mut self, data: &[u8]) -> io::Result<()> {
        self.send(data, true).await
    }

    async fn send(&mut self, mut data: &[u8], last: bool) -> io::Result<()> {
        let DataWriter { stream, decoder } = self;
        let Some(decoder) = decoder else {
            return send_data(stream, Bytes::copy_from_slice(data), last).await;
        };
        // Each piece goes once the next is found, so that the last one can carry the end.
        let mut held: Option<Bytes> = None;
        while !data.is_empty() && !decoder.is_done() {
            let progress = decoder.feed(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Some(span) = progress.data {
                if let Some(before) = held.replace(Bytes::copy_from_slice(&data[span])) {
                    send_data(stream, before, false).await?;
                }
            }
            data = &data[progress.consumed..];
        }
        match held {
            Some(piece) => send_data(stream, piece, last).await,
            None => send_data(stream, Bytes::new(), last).await,
        }
    }

    /// Ends the stream. A chunked body's trailers are not sent on (gRPC clients send none).
    pub(super) async fn finish(&mut self) -> io::Result<()> {
        send_data(&mut self.stream, Bytes::new(), true).await
    }
}

impl AsyncWriteRent for DataWriter {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: monoio's contract: `read_ptr` points at `bytes_init` initialised bytes, which
        // live as long as `buf` (and stay put when it moves).
        let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let res = self.push(bytes).await.map(|()| bytes.len());
        (res, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: monoio's contract: `read_iovec_ptr` points at `read_iovec_len` iovecs, each
        // over initialised bytes that live as long as `buf`.
        let iovecs = unsafe { std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len()) };
        let mut total = 0;
        for v in iovecs {
            // SAFETY: as above.
            let bytes = unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len) };
            if let Err(e) = self.push(bytes).await {
                return (Err(e), buf);
            }
            total += bytes.len();
        }
        (Ok(total), buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.finish().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_head_becomes_an_h2_request_without_its_connection_fields() {
        let out = b"POST /p?q=1 HTTP/1.1\r\nhost: app.local\r\nconnection: keep-alive\r\nte: trailers\r\n\
                    transfer-encoding: chunked\r\nx-a: b\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (request, head_len, framing) = request_of(out, false).unwrap();
        assert_eq!(request.uri(), "http://app.local/p?q=1");
        assert_eq!(request.method(), "POST");
        let names: Vec<_> = request.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["te", "x-a"]);
        assert_eq!(framing, BodyFraming::Chunked);
        assert_eq!(&out[head_len..head_len + 3], b"3\r\n");
        let (request, _, framing) = request_of(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n", true).unwrap();
        assert_eq!((request.uri().to_string().as_str(), framing), ("https://h/", BodyFraming::None));
    }

    #[test]
    fn field_names_are_lower_case_whether_the_gateways_own_or_not() {
        for (name, lower) in [
            (&b"X-Forwarded-For"[..], "x-forwarded-for"),
            (b"x-envoy-upstream-service-time", "x-envoy-upstream-service-time"),
            (b"X-Custom", "x-custom"),
            (b"Content-Type", "content-type"),
            (b"x", "x"),
        ] {
            assert_eq!(field_name(name).unwrap().as_str(), lower);
        }
        assert!(field_name(b"x bad").is_err());
        assert!(field_name(b"").is_err());
    }
}
