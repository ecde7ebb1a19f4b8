//! Response heads from upstreams: in-place parsing and message-body length per RFC 9112
//! §6.3. Upstreams get the same strictness as clients (bare LF, obs-fold, ambiguous
//! framing are errors): a desynchronised upstream connection would answer the next
//! client's request with someone else's bytes.

use super::fields::{classify, fold_content_length, map_common_error, Fields, HeaderSlots, Kind, TeState};
use super::{BodyFraming, Limits, ParseError, MAX_HEADERS};
use httparse::Header;

/// A parsed response head borrowing the read buffer.
#[derive(Clone)]
pub struct ResponseHead<'b> {
    /// Bytes of the buffer the head takes (the body starts here).
    pub head_len: usize,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub status: u16,
    /// Reason phrase as sent (empty when absent or not plain ASCII).
    pub reason: &'b str,
    pub framing: BodyFraming,
    /// Whether the upstream connection may be reused after this response (false for 101,
    /// for `Connection: close`, for HTTP/1.0 without keep-alive, for read-until-close).
    pub keep_alive: bool,
    /// The `Upgrade` value of a 101 response.
    pub upgrade: Option<&'b str>,
    pub(crate) content_length: Option<u64>,
    /// `Transfer-Encoding: chunked` was present (also on HEAD / 304 answers, where it
    /// describes the representation, not this message).
    pub(crate) chunked: bool,
    pub(crate) fields: Fields<'b>,
}

impl<'b> ResponseHead<'b> {
    #[inline]
    pub fn headers(&self) -> &[Header<'b>] {
        self.fields.slice()
    }

    /// First value of a header field, the name compared case-insensitively.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.fields.get(name)
    }

    /// Every value of a header field, in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.fields.values(name)
    }

    /// 1xx: an interim answer; the final response follows on the same connection (except
    /// after 101, where the connection stops being HTTP).
    #[inline]
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }

    #[inline]
    pub fn is_continue(&self) -> bool {
        self.status == 100
    }

    #[inline]
    pub fn is_switching_protocols(&self) -> bool {
        self.status == 101
    }

    /// The `Content-Length` value, collapsed if repeated (present even when the framing is
    /// `None`, e.g. on a HEAD answer).
    #[inline]
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }
}

impl std::fmt::Debug for ResponseHead<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseHead")
            .field("head_len", &self.head_len)
            .field("version", &self.version)
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("framing", &self.framing)
            .field("keep_alive", &self.keep_alive)
            .field("upgrade", &self.upgrade)
            .field("headers", &self.headers())
            .finish()
    }
}

/// Parses a response head at the start of `buf`, keeping its header fields in `slots`
/// (see [`HeaderSlots`]: a fresh one per call). `request_method_is_head`: the request
/// this answers was HEAD (its response never has a body). Any error means: answer the
/// client 502 and close the upstream connection.
pub fn parse_response<'b>(
    buf: &'b [u8],
    slots: &'b mut HeaderSlots<'b>,
    request_method_is_head: bool,
    limits: &Limits,
) -> Result<Option<ResponseHead<'b>>, ParseError> {
    let HeaderSlots { headers: storage, kinds } = slots;
    let max = limits.max_headers.min(MAX_HEADERS);
    let mut res = httparse::Response::new(&mut []);
    // The default (strict) config: no obs-fold, no space before colon, one SP delimiters.
    let config = httparse::ParserConfig::default();
    let head_len = match config.parse_response_with_uninit_headers(&mut res, buf, &mut storage[..max]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head { Err(ParseError::HeadTooLarge) } else { Ok(None) };
        }
        Err(e) => return Err(map_common_error(e, buf)),
    };
    let httparse::Response { version, code, reason, headers } = res;
    let (version, status, reason) = (version.unwrap_or(0), code.unwrap_or(0), reason.unwrap_or(""));
    let mut fields = Fields::new(&buf[..head_len], headers);
    if head_len > limits.max_head {
        return Err(ParseError::HeadTooLarge);
    }
    if !(100..=599).contains(&status) {
        return Err(ParseError::InvalidStatus);
    }
    // Status line end: the first field line, or the final CRLF when there is none.
    let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    if !buf[..skip].chunks(2).all(|c| c == b"\r\n") {
        return Err(ParseError::InvalidLineEnding);
    }
    let line_end = if fields.len > 0 { fields.line_start(0) } else { head_len - 2 };
    fields.check_line_endings(line_end)?;

    let mut content_length = None;
    let mut te = TeState::default();
    let mut upgrade_val = None;
    for (h, slot) in fields.headers.iter().zip(kinds.iter_mut()) {
        let kind = classify(h.name);
        *slot = kind;
        match kind {
            Kind::ContentLength => fold_content_length(h.value, &mut content_length)?,
            Kind::TransferEncoding => te.fold(h.value)?,
            Kind::Connection => fields.conn.fold(h.value),
            Kind::Upgrade => {
                upgrade_val.get_or_insert(h.value);
            }
            _ => {}
        }
    }

    let kinds: &'b [Kind; MAX_HEADERS] = kinds;
    fields.kinds = &kinds[..fields.len];

    // Ambiguous or faulty framing is an error whatever the status: a peer that sends it
    // is not one whose byte counts we want to bet a connection on.
    if te.present {
        if version == 0 {
            return Err(ParseError::TransferEncodingHttp10);
        }
        if content_length.is_some() {
            return Err(ParseError::ContentLengthWithTransferEncoding);
        }
        te.finish()?;
    }
    let no_body = request_method_is_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        BodyFraming::None
    } else if te.present {
        BodyFraming::Chunked
    } else if let Some(n) = content_length {
        BodyFraming::ContentLength(n)
    } else {
        BodyFraming::UntilClose
    };

    let conn = fields.conn;
    let keep_alive = status != 101
        && framing != BodyFraming::UntilClose
        && if version == 1 { !conn.close } else { conn.keep_alive && !conn.close };
    let upgrade = match upgrade_val {
        Some(v) if status == 101 => std::str::from_utf8(v).ok(),
        _ => None,
    };

    Ok(Some(ResponseHead {
        head_len,
        version,
        status,
        reason,
        framing,
        keep_alive,
        upgrade,
        content_length,
        chunked: te.present,
        fields,
    }))
}
