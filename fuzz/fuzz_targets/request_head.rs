//! Request heads and body framing (`strait::http::codec`): no panic on any bytes; a parsed head
//! lies within the input, holds no bare CR/LF or other CTL, parses the same when it arrives in
//! pieces, and survives the upstream rewrite with its framing intact; the chunked decoder gives
//! the same result however its input is split, in pass-through and decode mode.
#![no_main]

#[path = "../common/head.rs"]
mod head;

use libfuzzer_sys::fuzz_target;
use strait::http::codec::{
    parse_request, write_request_head, BodyFraming, ChunkedDecoder, ContentLengthBody, HeaderSlots, Limits, ParseError,
    RequestEdits, RequestHead, MAX_HEADERS,
};

/// What the rewritten head is parsed with: it may be a little longer than the original.
const ROOMY: Limits = Limits { max_head: 1 << 30, max_request_line: 1 << 30, max_headers: MAX_HEADERS };
/// Small enough that the fuzzer reaches every limit with short inputs.
const SMALL: Limits = Limits { max_head: 512, max_request_line: 128, max_headers: 8 };

fuzz_target!(|data: &[u8]| {
    // The first byte steers: bit 0 fuzzes the chunked decoder alone, bit 1 picks the small
    // limits, the rest is a piece size for split feeding.
    let Some((&ctl, input)) = data.split_first() else { return };
    let piece = usize::from(ctl >> 2) + 1;
    if ctl & 1 == 1 {
        check_chunked(input, piece);
        return;
    }
    let limits = if ctl & 2 == 2 { SMALL } else { Limits::default() };
    let mut slots = HeaderSlots::new();
    match parse_request(input, &mut slots, &limits) {
        Ok(Some(head)) => check_head(input, &head, &limits, piece),
        // Incomplete is only ever said of input still under the head limit.
        Ok(None) => assert!(input.len() < limits.max_head, "incomplete at {} bytes", input.len()),
        Err(e) => assert!(matches!(e.status(), 400 | 414 | 431 | 501), "{e:?}"),
    }
});

fn check_head(input: &[u8], head: &RequestHead<'_>, limits: &Limits, piece: usize) {
    let len = head.head_len;
    let bytes = head::check_bytes(input, len, head.headers().len(), head.version, limits);
    match head.framing {
        BodyFraming::ContentLength(n) => assert_eq!(head.content_length(), Some(n)),
        BodyFraming::Chunked => assert_eq!(head.content_length(), None),
        BodyFraming::None => assert_eq!(head.content_length(), None),
        BodyFraming::UntilClose => panic!("a request body never runs until close"),
    }

    // A reader that gets the head in pieces must only ever see "incomplete" before the end.
    for cut in [len - 1, len / 2, piece.min(len - 1)] {
        let mut slots = HeaderSlots::new();
        let r = parse_request(&input[..cut], &mut slots, limits);
        assert!(matches!(r, Ok(None)), "prefix of {cut} bytes: {r:?}");
    }
    // Nor may bytes after the head change how it parses.
    let mut slots = HeaderSlots::new();
    let alone = parse_request(bytes, &mut slots, limits).expect("head alone").expect("complete");
    assert_eq!((alone.head_len, alone.framing), (len, head.framing));
    // The small limits only refuse more: what passes them passes the defaults, the same way.
    let mut slots = HeaderSlots::new();
    let roomy = parse_request(input, &mut slots, &Limits::default()).expect("default limits").expect("complete");
    assert_eq!((roomy.head_len, roomy.framing, roomy.host()), (len, head.framing, head.host()));

    check_rewrite(head, piece);

    let body = &input[len..];
    match head.framing {
        BodyFraming::ContentLength(n) => {
            let mut cl = ContentLengthBody::new(n);
            let took = cl.feed(body.len());
            assert_eq!(took as u64, n.min(body.len() as u64));
            assert_eq!(cl.is_done(), n <= body.len() as u64);
        }
        BodyFraming::Chunked => check_chunked(body, piece),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
}

/// The head sent upstream parses again, with the same method, target, authority and, above
/// all, the same framing: a disagreement there is request smuggling.
fn check_rewrite(head: &RequestHead<'_>, piece: usize) {
    // Room for the lines the rewrite adds (host, x-forwarded-*, x-request-id, framing, connection).
    if head.headers().len() > MAX_HEADERS - 8 {
        return;
    }
    let keep_alive = piece.is_multiple_of(2);
    let edits = RequestEdits {
        x_forwarded_for_append: "192.0.2.1",
        request_id: Some(b"fuzz"),
        keep_alive,
        ..RequestEdits::default()
    };
    let mut out = Vec::new();
    write_request_head(&mut out, head, &edits);
    let mut slots = HeaderSlots::new();
    let sent = match parse_request(&out, &mut slots, &ROOMY) {
        Ok(Some(sent)) => sent,
        r => panic!("rewritten head does not parse: {r:?}\n{}", String::from_utf8_lossy(&out)),
    };
    assert_eq!(sent.head_len, out.len());
    assert_eq!(sent.version, 1);
    assert_eq!(sent.method, head.method);
    assert_eq!(sent.framing, head.framing);
    assert_eq!((sent.path(), sent.query()), (head.path(), head.query()));
    // An HTTP/1.0 request without Host goes upstream with an empty one.
    assert_eq!(sent.host(), Some(head.host().unwrap_or("")));
    assert_eq!(sent.upgrade, head.upgrade);
    assert_eq!(sent.keep_alive, keep_alive || head.upgrade.is_some());
}

/// What a chunked scan ends with.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Message bytes and whether the message ended, or the error (wherever it was met).
    end: Result<(usize, bool), ParseError>,
    /// Decode mode: the data bytes, de-chunked, up to the end or the error.
    data: Vec<u8>,
}

/// Feeds `body` to `dec` in pieces of at most `piece` bytes, as a connection would.
fn scan(mut dec: ChunkedDecoder, body: &[u8], piece: usize) -> Outcome {
    let (mut consumed, mut done, mut data) = (0, false, Vec::new());
    while consumed < body.len() && !done {
        let input = &body[consumed..body.len().min(consumed.saturating_add(piece))];
        let p = match dec.feed(input) {
            Ok(p) => p,
            Err(e) => return Outcome { end: Err(e), data },
        };
        assert!(p.consumed <= input.len());
        assert_eq!(p.done, dec.is_done());
        // Short only at the end of the message or after a data span (its tail).
        match &p.data {
            Some(span) => {
                assert!(span.start < span.end && span.end == p.consumed);
                data.extend_from_slice(&input[span.clone()]);
            }
            None => assert!(p.done || p.consumed == input.len()),
        }
        // Every call makes progress: no caller loops forever.
        assert!(p.consumed > 0 || p.done);
        consumed += p.consumed;
        done = p.done;
    }
    Outcome { end: Ok((consumed, done)), data }
}

fn check_chunked(body: &[u8], piece: usize) {
    let whole = scan(ChunkedDecoder::new(), body, usize::MAX);
    assert!(whole.data.is_empty());
    match whole.end {
        Ok((consumed, true)) => assert!(consumed >= 5 && body[..consumed].ends_with(b"\r\n")),
        Ok((consumed, false)) => assert_eq!(consumed, body.len()),
        Err(_) => {}
    }
    let decoded = scan(ChunkedDecoder::decoding(), body, usize::MAX);
    // Pass-through and decode mode frame the message alike.
    assert_eq!(decoded.end, whole.end);
    if let Ok((consumed, _)) = decoded.end {
        assert!(decoded.data.len() <= consumed);
    }
    // Neither mode depends on where reads split the input.
    assert_eq!(scan(ChunkedDecoder::new(), body, piece), whole);
    assert_eq!(scan(ChunkedDecoder::decoding(), body, piece), decoded);
    assert_eq!(scan(ChunkedDecoder::decoding(), body, 1), decoded);

    // The data of a complete body, sent again as one chunk, decodes to itself.
    if matches!(decoded.end, Ok((_, true))) && !decoded.data.is_empty() {
        let mut again = format!("{:x}\r\n", decoded.data.len()).into_bytes();
        again.extend_from_slice(&decoded.data);
        again.extend_from_slice(b"\r\n0\r\n\r\n");
        let re = scan(ChunkedDecoder::decoding(), &again, usize::MAX);
        assert_eq!(re, Outcome { end: Ok((again.len(), true)), data: decoded.data });
    }
}
