//! Pure (no I/O) HTTP/1.1 codec for the proxy path: head parsing, head rewriting and body
//! framing, strict about everything that can desynchronise two HTTP parsers (RFC 9112 plus
//! request-smuggling hardening).
//!
//! Heads are parsed in place with `httparse`: a parsed head borrows the read buffer, keeps
//! its header fields as slices into it (a fixed array, no allocation) and remembers a small
//! per-field classification so that rewriting can copy every untouched header line verbatim,
//! in runs, into the output buffer.
//!
//! # Public API
//!
//! Parsing
//! - [`HeaderSlots`]: caller-provided storage for up to [`MAX_HEADERS`] header fields (free
//!   to create; a fresh one per parse attempt). Keeping it out of the parsed head halves
//!   the parse cost (no 3 KB array to initialise and move).
//! - [`parse_request`]`(buf, &mut slots, &Limits) -> Result<Option<RequestHead>, ParseError>`:
//!   `None` while the head is incomplete (and still under the limits).
//! - [`parse_response`]`(buf, &mut slots, request_method_is_head, &Limits)
//!   -> Result<Option<ResponseHead>, ParseError>`.
//! - [`Limits`] `{ max_head, max_request_line, max_headers }` (60 KiB / 16 KiB / 100 by default).
//! - [`BodyFraming`]: `None | ContentLength(u64) | Chunked | UntilClose`.
//! - [`ParseError`] with [`ParseError::status`] (400, 414, 431 or 501 for requests; a proxy
//!   answers 502 to *any* error about an upstream response).
//! - [`RequestHead`]: pub fields `head_len, method, target, version, form, framing,
//!   keep_alive, expect_continue, upgrade`; methods `host(), path(), query(), headers(),
//!   header(name), header_values(name), content_length(), is_head()`.
//! - [`ResponseHead`]: pub fields `head_len, version, status, reason, framing, keep_alive,
//!   upgrade`; methods `headers(), header(name), header_values(name), content_length(),
//!   is_informational(), is_continue(), is_switching_protocols()`.
//! - [`Written`]: a head the codec wrote, read back line by line without a second parse.
//!
//! ```
//! use strait::http::codec::{parse_request, write_request_head, HeaderSlots, Limits, RequestEdits};
//!
//! let buf = b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n";
//! let mut slots = HeaderSlots::new();
//! let head = parse_request(buf, &mut slots, &Limits::default()).unwrap().unwrap();
//! assert_eq!((head.host(), head.path(), head.query()), (Some("example.com"), "/a", Some("b=1")));
//!
//! let mut out = Vec::new();
//! let edits = RequestEdits { x_forwarded_for_append: "10.0.0.1", ..RequestEdits::default() };
//! write_request_head(&mut out, &head, &edits);
//! assert_eq!(
//!     out,
//!     b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\n\
//!       x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
//! );
//! ```
//!
//! Writing (into any [`bytes::BufMut`]: a reused `Vec<u8>` or `BytesMut`)
//! - [`write_request_head`]`(out, &RequestHead, &RequestEdits)`; [`rewrite_try_lines`] updates
//!   the per-try lines ([`TryLines`]) that end it, for a retry.
//! - [`write_response_head`]`(out, &ResponseHead, &ResponseEdits) -> ResponseWritten`.
//! - [`write_simple_response`]`(out, &SimpleResponse, date)`: the gateway's own answers.
//! - [`reason_phrase`]`(status)`: Envoy's reason phrases (Envoy rewrites every status line).
//! - [`DateCache`]: the IMF-fixdate `date` value, formatted once per second; [`with_date`]
//!   lends this thread's.
//!
//! Bodies
//! - [`ChunkedDecoder`]: streaming, zero-copy chunked scanner (`feed(&[u8]) -> Progress`),
//!   in pass-through mode (forward the bytes verbatim) or decode mode (data spans).
//! - [`ContentLengthBody`]: the counting equivalent for `Content-Length` bodies.
//!
//! # Decisions worth knowing
//! - Bare LF anywhere in a head is refused (httparse accepts it), as are obs-fold, whitespace
//!   before a colon, CTLs, non-ASCII or `#` in the request-target.
//! - `Transfer-Encoding` must be exactly `chunked` (one coding, case-insensitive, OWS around
//!   it trimmed as RFC 9110 says). A list whose final coding is not `chunked`, or that repeats
//!   `chunked`, or holds junk, is malformed (400); a well-formed list ending in `chunked` but
//!   with other codings (`gzip, chunked`) is 501, as Envoy answers.
//! - Duplicate `Content-Length` values (several lines or a comma list) are accepted when they
//!   are all the same number (RFC 9110 §8.6) and re-emitted as one line; differing ones are 400.
//! - Status lines are rewritten with Envoy's canonical reason phrase and the version
//!   `HTTP/1.1`, HTTP/1.0 clients included (RFC 9110 §2.5: the highest version the server
//!   speaks); a kept HTTP/1.0 connection is announced with `connection: keep-alive`.
//! - An `Expect: 100-continue` is consumed by the proxy (the caller answers `100 Continue`
//!   itself, as Envoy does by default) and not forwarded.

mod chunked;
mod date;
mod fields;
mod request;
mod response;
mod write;
mod written;

#[cfg(test)]
mod tests;

/// The head limits are the client limits' ([`crate::limits`]), below the protocols.
pub use crate::limits::{Limits, MAX_HEADERS};
pub use chunked::{ChunkedDecoder, ContentLengthBody, Progress};
pub use date::{format_http_date, with_date, DateCache};
pub use fields::HeaderSlots;
pub(crate) use fields::{fold_content_length, Fields};
pub use httparse::Header;
pub use request::{parse_request, RequestHead, TargetForm};
pub use response::{parse_response, ResponseHead};
pub(crate) use write::{edit_request_head, edit_response_head, HeadOut, Own, RequestOut, ResponseOut};
pub use write::{
    put_status_line, reason_phrase, rewrite_try_lines, write_request_head, write_response_head, write_simple_response,
    RequestEdits, ResponseEdits, ResponseWritten, SimpleResponse, TryLines,
};
pub use written::Written;

/// How the message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: the message ends with its head.
    None,
    /// Exactly this many bytes follow the head.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`; walk it with [`ChunkedDecoder`].
    Chunked,
    /// Responses only: the body runs until the server closes the connection.
    UntilClose,
}

/// A protocol error in a head or a chunked body. Every variant means: stop reading this
/// connection (the framing can no longer be trusted), answer [`ParseError::status`] for a
/// request (502 for an upstream response) and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("head larger than the limit")]
    HeadTooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("request line longer than the limit")]
    UriTooLong,
    #[error("invalid method token")]
    InvalidMethod,
    #[error("invalid request-target")]
    InvalidTarget,
    #[error("unsupported or malformed HTTP version")]
    InvalidVersion,
    #[error("invalid status line")]
    InvalidStatus,
    #[error("invalid header field name")]
    InvalidHeaderName,
    #[error("invalid header field value")]
    InvalidHeaderValue,
    #[error("obsolete line folding in a header")]
    ObsFold,
    #[error("whitespace between a header field name and its colon")]
    SpaceBeforeColon,
    #[error("line not terminated by CRLF (bare CR or bare LF)")]
    InvalidLineEnding,
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    #[error("several Host header fields")]
    DuplicateHost,
    #[error("invalid Host or authority")]
    InvalidHost,
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    #[error("differing Content-Length values")]
    ConflictingContentLength,
    #[error("malformed Content-Length")]
    InvalidContentLength,
    #[error("malformed Transfer-Encoding (final coding must be chunked, once)")]
    InvalidTransferEncoding,
    #[error("transfer coding other than chunked")]
    UnsupportedTransferEncoding,
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingHttp10,
    #[error("invalid chunk size line")]
    InvalidChunkSize,
    #[error("chunk size too large")]
    ChunkSizeOverflow,
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    #[error("chunk data not followed by CRLF")]
    MissingChunkCrlf,
    #[error("invalid trailer section")]
    InvalidTrailer,
    #[error("trailer section larger than the limit")]
    TrailersTooLarge,
}

impl ParseError {
    /// Status code to answer a client whose *request* caused this error. (An error in an
    /// upstream response is always answered 502.)
    pub fn status(&self) -> u16 {
        match self {
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::UriTooLong => 414,
            ParseError::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }
}
