//! The client's half of an exchange, as a codec presents it: where the request body comes
//! from and where the response goes. The exchange is generic over it (monomorphised, never
//! `dyn`): the HTTP/1.1 session implements it today, an HTTP/2 stream beside it, and routing,
//! stages, retries and upstream selection do not change.
//!
//! The exchange speaks HTTP/1.1 bytes with both sides, whatever the upstream speaks: the
//! request body goes up in HTTP/1.1 framing, and the response comes as the HTTP/1.1 codec
//! parsed it; an HTTP/2 upstream is translated at its edge (`h2.rs`). One exception: an
//! HTTP/2 upstream's response reaches an HTTP/2 client as the fields and frames it came in
//! ([`ResponseSource`]), its fields edited by the rules the text gets.
//!
//! A codec whose request body arrives apart from its response's way out (an HTTP/2 stream's
//! DATA) lends the body ([`Client::body`], a [`RequestBody`]): the exchange then streams it up
//! while it relays the response, both ways at once on this core, as Envoy's router does (a
//! bidirectional gRPC call sends a message, waits for the answer, sends the next).

use std::io;

use h2::RecvStream;
use http::HeaderMap;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use super::Replay;
use crate::buf::ReadBuf;
use crate::http::body::BodyError;
use crate::http::codec::{BodyFraming, ResponseEdits, ResponseHead};
use crate::http::compress::Compressing;
use crate::tls_stream::{LentRead, Session};
use crate::upstream::UpstreamStream;

/// Where the relay reads a response from: bytes in HTTP/1.1 framing, and, from an HTTP/2
/// upstream, the stream whose DATA and trailers those bytes would carry, which a client that
/// speaks HTTP/2 too takes as they are.
pub(in crate::http) trait ResponseSource: AsyncReadRent {
    /// The HTTP/2 stream of the rest of the body, once the head was read and no byte of the
    /// body has been; `None` for an HTTP/1.1 upstream.
    fn frames(&mut self) -> Option<&mut RecvStream> {
        None
    }

    /// The fields of the final head just read, as an HTTP/2 upstream sent them (taken: asked
    /// once); `None` for an HTTP/1.1 upstream.
    fn head_fields(&mut self) -> Option<HeaderMap> {
        None
    }
}

impl ResponseSource for UpstreamStream {}
impl ResponseSource for TcpStream {}
impl<C: Session> ResponseSource for LentRead<'_, C> {}
impl<R: AsyncReadRent> ResponseSource for Compressing<'_, R> {}

/// A request body read apart from the client's response: the exchange streams it up while the
/// response comes down.
pub(in crate::http) trait RequestBody: Copy {
    /// Streams the rest of the body to `upstream` in HTTP/1.1 framing up to its end, each
    /// piece kept in `replay` (before it is written) while it fits.
    async fn send<W: AsyncWriteRent>(self, upstream: &mut W, replay: &mut Replay<'_>) -> Result<(), BodyError>;
}

pub(in crate::http) trait Client {
    /// Whether the client speaks HTTP/2, for a cluster under `useClientProtocol`.
    const HTTP2: bool;

    /// The request body as lent by [`Client::body`].
    type Body: RequestBody;

    /// The request body, lent apart from the client so that it streams up while the response
    /// flows down; `None` when one stream carries both ways (HTTP/1.1): [`Client::send_body`]
    /// then sends it before the response is relayed.
    fn body(&self) -> Option<Self::Body>;

    /// Reads the rest of a small request body (at most [`crate::http::body::INLINE_BODY`])
    /// that the client sends unasked, so that a retry or a mirror can send it again. A lent
    /// body takes only what has arrived: a client that waits for an answer before it sends on
    /// must get one.
    async fn hold_body(&mut self) -> io::Result<()>;

    /// Moves the request body behind the upstream head in `out` when it is all here and small,
    /// which makes the request replayable; its length as the client sent it.
    fn inline_body(&mut self, out: &mut Vec<u8>) -> Option<u64>;

    /// Tells a client that waits for `100 Continue` to send its body; nothing for one that
    /// does not wait.
    async fn send_continue(&mut self) -> io::Result<()>;

    /// Streams the rest of the request body to `upstream` up to its end, each piece kept in
    /// `replay` while it fits.
    async fn send_body<W: AsyncWriteRent>(
        &mut self,
        upstream: &mut W,
        replay: &mut Replay<'_>,
    ) -> Result<(), BodyError>;

    /// Replaces what `out` holds with the client's copy of the upstream's interim response
    /// head (`raw`, as received); false, and `out` untouched, when the client does not take it.
    fn interim(&mut self, out: &mut Vec<u8>, raw: &[u8]) -> bool;

    /// Writes into `out` the client's head for the upstream's final (or 101) response `head`,
    /// with the gateway's `edits`. `request_whole`: the request body was all read, so the
    /// client's connection may carry another request. `upstream`: the head's fields as an
    /// HTTP/2 upstream sent them, for an HTTP/2 client ([`Client::HTTP2`]), which edits them
    /// as they are rather than through HTTP/1.1 text.
    fn response_head(
        &mut self,
        out: &mut Vec<u8>,
        head: &ResponseHead<'_>,
        edits: ResponseEdits<'_>,
        request_whole: bool,
        upstream: Option<HeaderMap>,
    );

    /// Moves a small response body that sits whole in `buf` behind the head in `out`, so both
    /// leave at once; its length.
    fn inline_response(&mut self, out: &mut Vec<u8>, buf: &mut ReadBuf, framing: BodyFraming) -> Option<u64>;

    /// Sends what `out` holds to the client.
    async fn send(&mut self, out: &mut Vec<u8>) -> io::Result<()>;

    /// Relays the response body, `framing` as the upstream framed it, from `src` (what was
    /// read already sits in `buf`) to the client, counting what it hands on in `buf`.
    async fn relay_body<R: ResponseSource>(
        &mut self,
        src: &mut R,
        buf: &mut ReadBuf,
        framing: BodyFraming,
    ) -> Result<(), BodyError>;
}
