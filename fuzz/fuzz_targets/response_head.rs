//! Upstream response heads (`strait::http::codec::parse_response`): no panic on any bytes; a
//! parsed head lies within the input, holds no bare CR/LF or other CTL, has a valid status and
//! the body length RFC 9112 §6.3 gives it, parses the same when it arrives in pieces, and the
//! head written to the client parses again with the framing the proxy forwards.
#![no_main]

#[path = "../common/head.rs"]
mod head;

use libfuzzer_sys::fuzz_target;
use strait::http::codec::{
    parse_response, reason_phrase, write_response_head, BodyFraming, HeaderSlots, Limits, ResponseEdits, ResponseHead,
    MAX_HEADERS,
};

/// What the rewritten head is parsed with: it may be a little longer than the original.
const ROOMY: Limits = Limits { max_head: 1 << 30, max_request_line: 1 << 30, max_headers: MAX_HEADERS };
/// Small enough that the fuzzer reaches every limit with short inputs.
const SMALL: Limits = Limits { max_head: 512, max_request_line: 128, max_headers: 8 };

fuzz_target!(|data: &[u8]| {
    // The first byte steers: bit 0 says the request was HEAD, bit 1 picks the small limits,
    // bit 2 an HTTP/1.0 client, bit 3 a client connection closing; the rest is a prefix length.
    let Some((&ctl, input)) = data.split_first() else { return };
    let is_head = ctl & 1 == 1;
    let limits = if ctl & 2 == 2 { SMALL } else { Limits::default() };
    let mut slots = HeaderSlots::new();
    match parse_response(input, &mut slots, is_head, &limits) {
        Ok(Some(head)) => check_head(input, &head, is_head, &limits, ctl),
        Ok(None) => assert!(input.len() < limits.max_head, "incomplete at {} bytes", input.len()),
        Err(_) => {}
    }
});

fn check_head(input: &[u8], head: &ResponseHead<'_>, is_head: bool, limits: &Limits, ctl: u8) {
    let len = head.head_len;
    head::check_bytes(input, len, head.headers().len(), head.version, limits);
    assert!((100..=599).contains(&head.status));

    // RFC 9112 §6.3: which responses have a body, and how long it is.
    let no_body = is_head || head.is_informational() || head.status == 204 || head.status == 304;
    match head.framing {
        BodyFraming::None => assert!(no_body),
        BodyFraming::ContentLength(n) => assert!(!no_body && head.content_length() == Some(n)),
        BodyFraming::Chunked => assert!(!no_body && head.content_length().is_none()),
        BodyFraming::UntilClose => assert!(!no_body && head.content_length().is_none() && !head.keep_alive),
    }
    if head.is_switching_protocols() {
        assert!(!head.keep_alive);
    } else {
        assert!(head.upgrade.is_none());
    }

    // A reader that gets the head in pieces must only ever see "incomplete" before the end.
    for cut in [len - 1, len / 2, usize::from(ctl >> 4).min(len - 1)] {
        let mut slots = HeaderSlots::new();
        let r = parse_response(&input[..cut], &mut slots, is_head, limits);
        assert!(matches!(r, Ok(None)), "prefix of {cut} bytes: {r:?}");
    }
    // The small limits only refuse more: what passes them passes the defaults, the same way.
    let mut slots = HeaderSlots::new();
    let roomy = parse_response(input, &mut slots, is_head, &Limits::default()).expect("defaults").expect("complete");
    assert_eq!((roomy.head_len, roomy.status, roomy.framing), (len, head.status, head.framing));

    check_rewrite(head, is_head, ctl);
}

/// The head written to the client parses again, with the status and the framing of the body
/// bytes the proxy forwards (de-chunked for an HTTP/1.0 client).
fn check_rewrite(head: &ResponseHead<'_>, is_head: bool, ctl: u8) {
    // Room for the lines the rewrite adds (framing, date, server, service time, connection).
    if head.headers().len() > MAX_HEADERS - 8 {
        return;
    }
    let http10_client = ctl & 4 == 4;
    let edits = ResponseEdits {
        upstream_service_time_ms: Some(7),
        date: Some(b"Thu, 01 Jan 2026 00:00:00 GMT"),
        close: ctl & 8 == 8,
        http10_client,
        ..ResponseEdits::default()
    };
    let mut out = Vec::new();
    let written = write_response_head(&mut out, head, &edits);
    let mut slots = HeaderSlots::new();
    let sent = match parse_response(&out, &mut slots, is_head, &ROOMY) {
        Ok(Some(sent)) => sent,
        r => panic!("rewritten head does not parse: {r:?}\n{}", String::from_utf8_lossy(&out)),
    };
    assert_eq!(sent.head_len, out.len());
    assert_eq!(sent.version, 1, "HTTP/1.1, to HTTP/1.0 clients too");
    assert_eq!((sent.status, sent.reason), (head.status, reason_phrase(head.status)));
    let forwarded = if written.dechunk { BodyFraming::UntilClose } else { head.framing };
    assert_eq!(sent.framing, forwarded);
    assert_eq!(written.dechunk, http10_client && head.framing == BodyFraming::Chunked);
    if head.status >= 200 {
        assert_eq!(sent.keep_alive, !written.close);
    }
    assert_eq!(sent.upgrade, head.upgrade);
}
