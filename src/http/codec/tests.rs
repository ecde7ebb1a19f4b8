//! Unit tests of the codec: every strictness rule with a valid and an invalid case, the
//! response framing matrix, head rewriting, and the chunked scanner (split input must give
//! the same answer as whole input).

use super::*;

fn lim() -> Limits {
    Limits::default()
}

/// Header storage for one parse. Leaked: tests parse a few hundred small heads, and this
/// keeps every helper a one-liner.
fn slots<'b>() -> &'b mut HeaderSlots<'b> {
    Box::leak(Box::new(HeaderSlots::new()))
}

fn parse(s: &[u8]) -> Result<Option<RequestHead<'_>>, ParseError> {
    parse_request(s, slots(), &lim())
}

fn ok(s: &[u8]) -> RequestHead<'_> {
    match parse(s) {
        Ok(Some(h)) => h,
        other => panic!("expected a complete head for {:?}, got {other:?}", String::from_utf8_lossy(s)),
    }
}

fn err(s: &[u8]) -> ParseError {
    match parse(s) {
        Err(e) => e,
        other => panic!("expected an error for {:?}, got {other:?}", String::from_utf8_lossy(s)),
    }
}

fn resp(s: &[u8], head: bool) -> Result<Option<ResponseHead<'_>>, ParseError> {
    parse_response(s, slots(), head, &lim())
}

fn resp_ok(s: &[u8], head: bool) -> ResponseHead<'_> {
    resp(s, head).unwrap().unwrap()
}

fn rewrite(s: &[u8], edits: &RequestEdits<'_>) -> String {
    let h = ok(s);
    let mut out = Vec::new();
    write_request_head(&mut out, &h, edits);
    String::from_utf8(out).unwrap()
}

fn rewrite_resp(s: &[u8], head_req: bool, edits: &ResponseEdits<'_>) -> (String, ResponseWritten) {
    let h = resp_ok(s, head_req);
    let mut out = Vec::new();
    let w = write_response_head(&mut out, &h, edits);
    (String::from_utf8(out).unwrap(), w)
}

/// Header lines of a written head, lowercased names, for order-insensitive checks.
fn lines(head: &str) -> Vec<String> {
    head.split("\r\n").skip(1).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

fn count_name(head: &str, name: &str) -> usize {
    lines(head).iter().filter(|l| l.split(':').next().unwrap().eq_ignore_ascii_case(name)).count()
}

const BROWSER: &[u8] = b"GET /static/app.js?v=3 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=abc123\r\n\
\r\n";

// ---------------------------------------------------------------- request parsing

#[test]
fn parses_typical_request() {
    let h = ok(BROWSER);
    assert_eq!(h.head_len, BROWSER.len());
    assert_eq!(h.method, "GET");
    assert_eq!(h.target, "/static/app.js?v=3");
    assert_eq!(h.path(), "/static/app.js");
    assert_eq!(h.query(), Some("v=3"));
    assert_eq!(h.version, 1);
    assert_eq!(h.form, TargetForm::Origin);
    assert_eq!(h.host(), Some("www.example.com"));
    assert_eq!(h.framing, BodyFraming::None);
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert_eq!(h.upgrade, None);
    assert_eq!(h.headers().len(), 8);
    assert_eq!(h.header("accept"), Some(&b"*/*"[..]));
    assert_eq!(h.header("ACCEPT-LANGUAGE"), Some(&b"en-US,en;q=0.5"[..]));
    assert_eq!(h.header("x-missing"), None);
    assert!(!h.is_head());
}

#[test]
fn incomplete_head_is_none_at_every_cut() {
    for cut in 0..BROWSER.len() {
        assert!(matches!(parse(&BROWSER[..cut]), Ok(None)), "cut at {cut}");
    }
}

#[test]
fn head_len_stops_before_body_and_pipelined_request() {
    let s = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n";
    let h = ok(s);
    assert_eq!(&s[h.head_len..h.head_len + 5], b"hello");
    assert_eq!(h.framing, BodyFraming::ContentLength(5));
    assert_eq!(h.content_length(), Some(5));
}

#[test]
fn header_values_lists_every_line() {
    let h = ok(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    let v: Vec<&[u8]> = h.header_values("X-a").collect();
    assert_eq!(v, vec![&b"1"[..], &b"2"[..]]);
}

#[test]
fn keep_alive_defaults_by_version() {
    assert!(ok(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").keep_alive);
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n").keep_alive);
    assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n").keep_alive);
}

#[test]
fn http10_without_host_is_accepted() {
    let h = ok(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(h.version, 0);
    assert_eq!(h.host(), None);
}

#[test]
fn expect_continue_only_on_http11() {
    assert!(ok(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").expect_continue);
    assert!(!ok(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue);
    assert!(!ok(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n").expect_continue);
}

#[test]
fn upgrade_needs_connection_token() {
    let ws = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(ok(ws).upgrade, Some("websocket"));
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n").upgrade, None);
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n").upgrade, None);
    assert_eq!(ok(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade, None);
}

#[test]
fn leading_empty_lines_must_be_crlf() {
    let h = ok(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(h.method, "GET");
    assert_eq!(err(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), ParseError::InvalidLineEnding);
}

// ---------------------------------------------------------------- Content-Length

#[test]
fn content_length_duplicates_collapse_when_equal() {
    let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::ContentLength(7));
    let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 7 ,7\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::ContentLength(7));
    let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\nContent-Length: 7\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::ContentLength(7));
    let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::ContentLength(0));
}

#[test]
fn content_length_conflicts_are_refused() {
    for s in [
        &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 8\r\n\r\n",
    ] {
        assert_eq!(err(s), ParseError::ConflictingContentLength);
        assert_eq!(err(s).status(), 400);
    }
}

#[test]
fn content_length_malformed_values_are_refused() {
    for v in ["+5", "-5", "5 5", "0x5", "5a", "", "5,", ",5", "5,,5", "1_0", "99999999999999999999", "٣"] {
        let s = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(parse(s.as_bytes()).unwrap_err(), ParseError::InvalidContentLength, "{v:?}");
    }
    // Largest u64 is still a number (the body reader bounds it in practice).
    let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::ContentLength(u64::MAX));
}

// ---------------------------------------------------------------- Transfer-Encoding

#[test]
fn chunked_is_recognised_case_insensitively() {
    for v in ["chunked", "Chunked", "CHUNKED"] {
        let s = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {v}\r\n\r\n");
        assert_eq!(parse(s.as_bytes()).unwrap().unwrap().framing, BodyFraming::Chunked);
    }
}

#[test]
fn chunked_with_surrounding_ows_is_accepted_deliberately() {
    // OWS around a field value is not part of it (RFC 9110 §5.5); httparse trims it and
    // every conforming parser does the same, so `chunked ` is plain chunked.
    for v in ["chunked ", " chunked", "chunked\t"] {
        let s = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:{v}\r\n\r\n");
        assert_eq!(parse(s.as_bytes()).unwrap().unwrap().framing, BodyFraming::Chunked, "{v:?}");
    }
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    for s in [
        &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    ] {
        assert_eq!(err(s), ParseError::ContentLengthWithTransferEncoding);
    }
}

#[test]
fn transfer_encoding_not_ending_in_chunked_is_refused() {
    for v in [
        "chunked, identity",
        "identity",
        "gzip",
        "xchunked",
        "chunkedx",
        "chunked, chunked",
        "chunked;foo=bar",
        "chunked x",
        ",chunked",
        "chunked,",
        "",
        "\"chunked\"",
    ] {
        let s = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {v}\r\n\r\n");
        assert_eq!(parse(s.as_bytes()).unwrap_err(), ParseError::InvalidTransferEncoding, "{v:?}");
    }
    let two = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(two), ParseError::InvalidTransferEncoding);
    let after = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(err(after), ParseError::InvalidTransferEncoding);
}

#[test]
fn other_codings_before_chunked_are_not_implemented() {
    let s = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    assert_eq!(err(s), ParseError::UnsupportedTransferEncoding);
    assert_eq!(err(s).status(), 501);
    let s = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(s), ParseError::UnsupportedTransferEncoding);
}

#[test]
fn transfer_encoding_on_http10_is_refused() {
    let s = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(s), ParseError::TransferEncodingHttp10);
}

// ---------------------------------------------------------------- line syntax

#[test]
fn bare_lf_is_refused_everywhere() {
    for s in [
        &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: h\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\n",
        b"GET / HTTP/1.1\nHost: h\n\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1 \n\r\n",
        b"GET / HTTP/1.0\n\n",
    ] {
        assert_eq!(err(s), ParseError::InvalidLineEnding, "{:?}", String::from_utf8_lossy(s));
    }
}

#[test]
fn bare_cr_is_refused() {
    for s in [
        &b"GET / HTTP/1.1\rHost: h\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\rX",
    ] {
        assert_eq!(err(s).status(), 400, "{:?}", String::from_utf8_lossy(s));
    }
}

#[test]
fn obs_fold_is_refused() {
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  continued\r\n\r\n"), ParseError::ObsFold);
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tcontinued\r\n\r\n"), ParseError::ObsFold);
    // Whitespace before the first field line is the same trick.
    assert_eq!(err(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"), ParseError::ObsFold);
}

#[test]
fn whitespace_before_colon_is_refused() {
    assert_eq!(err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n"), ParseError::SpaceBeforeColon);
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"), ParseError::SpaceBeforeColon);
}

#[test]
fn ctl_bytes_in_fields_are_refused() {
    for v in [&b"a\0b"[..], b"a\x01b", b"a\x7fb", b"a\x1bb", b"\0"] {
        let mut s = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: ".to_vec();
        s.extend_from_slice(v);
        s.extend_from_slice(b"\r\n\r\n");
        assert_eq!(err(&s), ParseError::InvalidHeaderValue, "{v:?}");
    }
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: h\r\nX\0A: 1\r\n\r\n"), ParseError::InvalidHeaderName);
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: 1\r\n\r\n"), ParseError::InvalidHeaderName);
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n"), ParseError::InvalidHeaderName);
    // obs-text in a value is legal (RFC 9110 §5.5).
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xc3\xa9\r\n\r\n").header("x-a"), Some(&b"caf\xc3\xa9"[..]));
}

#[test]
fn invalid_method_is_refused() {
    for s in [
        &b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"G\0T / HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        assert_eq!(err(s), ParseError::InvalidMethod, "{:?}", String::from_utf8_lossy(s));
    }
}

#[test]
fn request_target_forms_are_checked() {
    for s in [
        &b"GET foo HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET http://user@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        let e = err(s);
        assert!(
            matches!(e, ParseError::InvalidTarget | ParseError::InvalidVersion),
            "{:?}: {e:?}",
            String::from_utf8_lossy(s)
        );
    }
    let h = ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((h.form, h.path()), (TargetForm::Asterisk, "*"));
    let h = ok(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_eq!((h.form, h.host()), (TargetForm::Authority, Some("example.com:443")));
}

#[test]
fn absolute_form_authority_wins_over_host() {
    let h = ok(b"GET HTTP://api.example.com:8080?x=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(h.form, TargetForm::Absolute);
    assert_eq!(h.host(), Some("api.example.com:8080"));
    assert_eq!(h.path(), "/");
    assert_eq!(h.query(), Some("x=1"));
    let h = ok(b"GET https://a.b/c/d HTTP/1.1\r\nHost: a.b\r\n\r\n");
    assert_eq!((h.host(), h.path(), h.query()), (Some("a.b"), "/c/d", None));
    // Host is still mandatory on HTTP/1.1 (RFC 9112 §3.2).
    assert_eq!(err(b"GET http://a.b/ HTTP/1.1\r\n\r\n"), ParseError::MissingHost);
}

#[test]
fn only_http10_and_http11_are_accepted() {
    for v in ["HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.1 ", "HTTP/1", "HTTP/0.9", "HTTP/1.10"] {
        let s = format!("GET / {v}\r\nHost: h\r\n\r\n");
        let e = parse(s.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400, "{v:?}: {e:?}");
    }
    assert_eq!(err(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"), ParseError::InvalidVersion);
}

#[test]
fn host_rules() {
    assert_eq!(err(b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"), ParseError::MissingHost);
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), ParseError::DuplicateHost);
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), ParseError::InvalidHost);
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), ParseError::InvalidHost);
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"), ParseError::InvalidHost);
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHOST: [::1]:8080\r\n\r\n").host(), Some("[::1]:8080"));
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host(), Some(""));
}

// ---------------------------------------------------------------- limits

#[test]
fn head_too_large() {
    let limits = Limits { max_head: 64, ..Limits::default() };
    let mut s = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: ".to_vec();
    s.resize(64, b'a');
    assert_eq!(parse_request(&s, slots(), &limits).unwrap_err(), ParseError::HeadTooLarge);
    assert_eq!(ParseError::HeadTooLarge.status(), 431);
    // Complete but over the limit.
    s.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_request(&s, slots(), &limits).unwrap_err(), ParseError::HeadTooLarge);
    // Under it: just incomplete.
    assert!(matches!(parse_request(&s[..40], slots(), &limits), Ok(None)));
}

#[test]
fn too_many_headers() {
    let mut s = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        s.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    s.extend_from_slice(b"\r\n");
    assert_eq!(err(&s), ParseError::TooManyHeaders);
    assert_eq!(err(&s).status(), 431);
    let limits = Limits { max_headers: 2, ..Limits::default() };
    let s = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_eq!(parse_request(s, slots(), &limits).unwrap_err(), ParseError::TooManyHeaders);
}

#[test]
fn request_line_too_long() {
    let limits = Limits { max_request_line: 32, ..Limits::default() };
    let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(40));
    assert_eq!(parse_request(long.as_bytes(), slots(), &limits).unwrap_err(), ParseError::UriTooLong);
    assert_eq!(ParseError::UriTooLong.status(), 414);
    // Still arriving, and already too long.
    let partial = format!("GET /{}", "a".repeat(40));
    assert_eq!(parse_request(partial.as_bytes(), slots(), &limits).unwrap_err(), ParseError::UriTooLong);
    // Exactly at the limit is fine.
    let at = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(32 - 14));
    assert!(parse_request(at.as_bytes(), slots(), &limits).unwrap().is_some());
}

#[test]
fn error_statuses() {
    assert_eq!(ParseError::InvalidTarget.status(), 400);
    assert_eq!(ParseError::MissingHost.status(), 400);
    assert_eq!(ParseError::TooManyHeaders.status(), 431);
    assert_eq!(ParseError::UnsupportedTransferEncoding.status(), 501);
    assert_eq!(ParseError::InvalidChunkSize.status(), 400);
}

// ---------------------------------------------------------------- responses

#[test]
fn response_framing_matrix() {
    let cases: &[(&[u8], bool, BodyFraming)] = &[
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, BodyFraming::ContentLength(5)),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, BodyFraming::None),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, BodyFraming::Chunked),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, BodyFraming::None),
        (b"HTTP/1.1 200 OK\r\n\r\n", false, BodyFraming::UntilClose),
        (b"HTTP/1.1 200 OK\r\n\r\n", true, BodyFraming::None),
        (b"HTTP/1.1 100 Continue\r\n\r\n", false, BodyFraming::None),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            false,
            BodyFraming::None,
        ),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", false, BodyFraming::None),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, BodyFraming::None),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, BodyFraming::None),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", false, BodyFraming::None),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, BodyFraming::ContentLength(0)),
        (b"HTTP/1.0 200 OK\r\n\r\n", false, BodyFraming::UntilClose),
    ];
    for (s, head, framing) in cases {
        assert_eq!(resp_ok(s, *head).framing, *framing, "{:?} head={head}", String::from_utf8_lossy(s));
    }
}

#[test]
fn response_keep_alive() {
    assert!(resp_ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false).keep_alive);
    assert!(!resp_ok(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false).keep_alive);
    assert!(!resp_ok(b"HTTP/1.1 200 OK\r\n\r\n", false).keep_alive);
    assert!(!resp_ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).keep_alive);
    assert!(resp_ok(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false).keep_alive);
    let h = resp_ok(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false);
    assert!(h.is_switching_protocols() && h.is_informational() && !h.keep_alive);
    assert_eq!(h.upgrade, Some("websocket"));
    let h = resp_ok(b"HTTP/1.1 100 Continue\r\n\r\n", false);
    assert!(h.is_continue() && h.is_informational());
}

#[test]
fn response_ambiguous_framing_is_an_error() {
    for s in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
        b"HTTP/1.1 099 Odd\r\n\r\n",
        b"HTTP/1.1 600 Odd\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
    ] {
        assert!(resp(s, false).is_err(), "{:?}", String::from_utf8_lossy(s));
    }
}

#[test]
fn response_incomplete_and_too_large() {
    let s = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    for cut in 0..s.len() {
        assert!(matches!(resp(&s[..cut], false), Ok(None)));
    }
    let limits = Limits { max_head: 16, ..Limits::default() };
    assert_eq!(parse_response(&s[..20], slots(), false, &limits).unwrap_err(), ParseError::HeadTooLarge);
}

// ---------------------------------------------------------------- request rewriting

#[test]
fn rewrite_keeps_untouched_lines_verbatim() {
    let out = rewrite(BROWSER, &RequestEdits { x_forwarded_for_append: "10.0.0.1", ..RequestEdits::default() });
    assert_eq!(
        out,
        "GET /static/app.js?v=3 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://www.example.com/\r\n\
Cookie: session=abc123\r\n\
x-forwarded-for: 10.0.0.1\r\n\
x-forwarded-proto: http\r\n\
\r\n"
    );
}

#[test]
fn rewrite_removes_hop_by_hop_and_nominated_headers() {
    let s = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret, Host, Content-Length\r\n\
Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nX-Secret: s\r\n\
Upgrade: foo\r\nHTTP2-Settings: AAA\r\nContent-Length: 3\r\nX-Keep: k\r\n\r\n";
    let out = rewrite(s, &RequestEdits::default());
    for gone in ["connection", "keep-alive", "proxy-connection", "te", "x-secret", "upgrade", "http2-settings"] {
        assert_eq!(count_name(&out, gone), 0, "{gone} in {out}");
    }
    // A client cannot nominate Host or the framing header away.
    assert_eq!(count_name(&out, "host"), 1);
    assert_eq!(count_name(&out, "content-length"), 1);
    assert!(out.contains("X-Keep: k\r\n"));
}

#[test]
fn rewrite_keeps_te_trailers() {
    let out = rewrite(b"GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n", &RequestEdits::default());
    assert!(out.contains("TE: trailers\r\n"));
}

#[test]
fn rewrite_appends_to_x_forwarded_for() {
    let s = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2, 3.3.3.3\r\n\r\n";
    let out = rewrite(s, &RequestEdits { x_forwarded_for_append: "9.9.9.9", ..RequestEdits::default() });
    assert_eq!(count_name(&out, "x-forwarded-for"), 1);
    assert!(out.contains("x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 9.9.9.9\r\n"), "{out}");
    let out = rewrite(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        &RequestEdits { x_forwarded_for_append: "9.9.9.9", ..RequestEdits::default() },
    );
    assert!(out.contains("x-forwarded-for: 9.9.9.9\r\n"));
    // Empty append: the client's line is left as it was.
    let out = rewrite(s, &RequestEdits::default());
    assert_eq!(count_name(&out, "x-forwarded-for"), 2);
}

#[test]
fn rewrite_strips_client_x_envoy_and_overwrites_gateway_headers() {
    let s = b"GET / HTTP/1.1\r\nHost: h\r\nX-Envoy-Retry-On: 5xx\r\nx-envoy-external-address: 6.6.6.6\r\n\
X-Forwarded-Proto: https\r\nX-Request-Id: client-id\r\nX-Envoyish: kept\r\n\r\n";
    let out = rewrite(
        s,
        &RequestEdits {
            x_forwarded_proto: "http",
            request_id: Some("gw-id"),
            x_envoy_external_address: Some("7.7.7.7"),
            ..RequestEdits::default()
        },
    );
    assert_eq!(count_name(&out, "x-envoy-retry-on"), 0);
    assert!(out.contains("x-envoy-external-address: 7.7.7.7\r\n"));
    assert_eq!(count_name(&out, "x-envoy-external-address"), 1);
    assert!(out.contains("x-forwarded-proto: http\r\n"));
    assert_eq!(count_name(&out, "x-forwarded-proto"), 1);
    assert!(out.contains("x-request-id: gw-id\r\n"));
    assert_eq!(count_name(&out, "x-request-id"), 1);
    assert!(out.contains("X-Envoyish: kept\r\n"));
    // request_id None keeps the client's.
    let out = rewrite(s, &RequestEdits::default());
    assert!(out.contains("X-Request-Id: client-id\r\n"));
}

#[test]
fn try_lines_end_the_head_and_a_retry_rewrites_them_in_place() {
    let s = b"POST /p HTTP/1.1\r\nHost: h\r\nX-Envoy-Attempt-Count: 7\r\nContent-Length: 4\r\n\r\n";
    let first = TryLines { attempt: Some(1), expected_timeout_ms: Some(1000) };
    let mut out = Vec::new();
    write_request_head(&mut out, &ok(s), &RequestEdits { try_lines: first, ..RequestEdits::default() });
    assert!(out.ends_with(b"x-envoy-attempt-count: 1\r\nx-envoy-expected-rq-timeout-ms: 1000\r\n\r\n"));
    let mut head_end = out.len();
    out.extend_from_slice(b"body");
    // Longer, shorter, then without the timeout line: the head parses back, the body follows.
    let mut old = first;
    for (new, attempt, expected) in [
        (TryLines { attempt: Some(10), expected_timeout_ms: Some(12345) }, "10", Some("12345")),
        (TryLines { attempt: Some(2), expected_timeout_ms: Some(5) }, "2", Some("5")),
        (TryLines { attempt: Some(3), expected_timeout_ms: None }, "3", None),
    ] {
        head_end = rewrite_try_lines(&mut out, head_end, &old, &new);
        let back = ok(&out);
        assert_eq!(back.head_len, head_end);
        let text = |n: &str| back.header(n).map(|v| std::str::from_utf8(v).unwrap().to_string());
        assert_eq!(back.header_values("x-envoy-attempt-count").count(), 1, "the client's line is dropped");
        assert_eq!(text("x-envoy-attempt-count").as_deref(), Some(attempt));
        assert_eq!(text("x-envoy-expected-rq-timeout-ms").as_deref(), expected);
        assert_eq!(&out[head_end..], b"body");
        old = new;
    }
}

#[test]
fn rewrite_writes_framing_exactly_once() {
    let s = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n";
    let out = rewrite(s, &RequestEdits::default());
    assert_eq!(count_name(&out, "content-length"), 1);
    assert!(out.contains("content-length: 5\r\n"));
    let s = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked \r\n\r\n";
    let out = rewrite(s, &RequestEdits::default());
    assert_eq!(count_name(&out, "transfer-encoding"), 1);
    assert!(out.contains("transfer-encoding: chunked\r\n"));
    assert_eq!(count_name(&out, "content-length"), 0);
}

#[test]
fn rewrite_path_authority_and_version() {
    let s = b"GET /old?q=1 HTTP/1.0\r\nHost: a.example\r\nX-A: 1\r\n\r\n";
    let out = rewrite(
        s,
        &RequestEdits {
            path: Some("/new?q=1"),
            authority: Some("b.internal"),
            keep_alive: false,
            ..RequestEdits::default()
        },
    );
    assert!(out.starts_with("GET /new?q=1 HTTP/1.1\r\nhost: b.internal\r\n"), "{out}");
    assert_eq!(count_name(&out, "host"), 1);
    assert!(out.contains("connection: close\r\n"));
    // Absolute-form goes upstream as origin-form with the target's authority as Host.
    let out = rewrite(b"GET http://a.b:81?x HTTP/1.1\r\nHost: other\r\n\r\n", &RequestEdits::default());
    assert!(out.starts_with("GET /?x HTTP/1.1\r\nhost: a.b:81\r\n"), "{out}");
    assert_eq!(count_name(&out, "host"), 1);
    // HTTP/1.0 without Host still gets one (empty) upstream.
    let out = rewrite(b"GET / HTTP/1.0\r\n\r\n", &RequestEdits::default());
    assert!(out.starts_with("GET / HTTP/1.1\r\nhost: \r\n"), "{out}");
}

#[test]
fn rewrite_upgrade_kept_or_dropped() {
    let s = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
    let out = rewrite(s, &RequestEdits::default());
    assert!(out.contains("connection: upgrade\r\nupgrade: websocket\r\n"), "{out}");
    assert_eq!(count_name(&out, "upgrade"), 1);
    assert!(out.contains("Sec-WebSocket-Key: k\r\n"));
    let out = rewrite(s, &RequestEdits { allow_upgrade: false, ..RequestEdits::default() });
    assert_eq!(count_name(&out, "upgrade"), 0);
    assert_eq!(count_name(&out, "connection"), 0);
}

#[test]
fn rewrite_consumes_expect_continue() {
    let s = b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    assert_eq!(count_name(&rewrite(s, &RequestEdits::default()), "expect"), 0);
}

#[test]
fn rewrite_add_and_remove_lists() {
    let s = b"GET / HTTP/1.1\r\nHost: h\r\nX-Drop: 1\r\nx-drop: 2\r\nX-Keep: 3\r\n\r\n";
    let out = rewrite(
        s,
        &RequestEdits {
            remove: &["X-DROP", "host"],
            add: &[("x-add", "a"), ("x-add", "b")],
            ..RequestEdits::default()
        },
    );
    assert_eq!(count_name(&out, "x-drop"), 0);
    assert_eq!(count_name(&out, "host"), 1);
    assert!(out.contains("X-Keep: 3\r\n"));
    assert!(out.ends_with("x-add: a\r\nx-add: b\r\n\r\n"));
}

#[test]
fn rewritten_request_parses_back() {
    let edits = RequestEdits {
        path: Some("/x"),
        x_forwarded_for_append: "10.1.1.1",
        request_id: Some("id"),
        x_envoy_external_address: Some("10.1.1.1"),
        ..RequestEdits::default()
    };
    let out = rewrite(BROWSER, &edits);
    let h = ok(out.as_bytes());
    assert_eq!(h.head_len, out.len());
    assert_eq!(h.target, "/x");
    assert_eq!(h.host(), Some("www.example.com"));
    assert_eq!(h.header("x-request-id"), Some(&b"id"[..]));
}

// ---------------------------------------------------------------- response rewriting

#[test]
fn rewrite_response_overwrites_server_and_adds_gateway_headers() {
    let s = b"HTTP/1.1 200 Okay-ish\r\nServer: nginx\r\nContent-Type: text/html\r\nConnection: keep-alive\r\n\
Keep-Alive: timeout=5\r\nContent-Length: 2\r\nX-Envoy-Upstream-Service-Time: 99\r\n\r\n";
    let (out, w) = rewrite_resp(
        s,
        false,
        &ResponseEdits {
            upstream_service_time_ms: Some(12),
            date: Some(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            ..ResponseEdits::default()
        },
    );
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\ncontent-length: 2\r\n\
date: Sun, 06 Nov 1994 08:49:37 GMT\r\nserver: istio-envoy\r\nx-envoy-upstream-service-time: 12\r\n\r\n"
    );
    assert_eq!(w, ResponseWritten { dechunk: false, close: false });
}

#[test]
fn rewrite_response_adds_date_only_where_there_is_none() {
    let ours = ResponseEdits { date: Some(b"Sun, 06 Nov 1994 08:49:37 GMT"), ..ResponseEdits::default() };
    let upstream = b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n";
    let (out, _) = rewrite_resp(upstream, false, &ours);
    assert_eq!(count_name(&out, "date"), 1);
    assert!(out.contains("Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"), "the upstream's is kept: {out}");
    let (out, _) = rewrite_resp(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, &ours);
    assert!(out.contains("date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"), "{out}");
    // A route that removes the upstream's gets ours; one that sets its own keeps it alone.
    let (out, _) = rewrite_resp(upstream, false, &ResponseEdits { remove: &["date"], ..ours });
    assert_eq!(
        lines(&out).iter().filter(|l| l.starts_with("date:")).collect::<Vec<_>>(),
        ["date: Sun, 06 Nov 1994 08:49:37 GMT"]
    );
    let (out, _) = rewrite_resp(upstream, false, &ResponseEdits { remove: &["date"], add: &[("date", "x")], ..ours });
    assert_eq!(lines(&out).iter().filter(|l| l.starts_with("date:")).collect::<Vec<_>>(), ["date: x"]);
    // Interim answers get none.
    let (out, _) = rewrite_resp(b"HTTP/1.1 103 Early Hints\r\n\r\n", false, &ours);
    assert_eq!(count_name(&out, "date"), 0);
}

#[test]
fn rewrite_response_close_and_until_close() {
    let (out, w) = rewrite_resp(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        false,
        &ResponseEdits { close: true, ..ResponseEdits::default() },
    );
    assert!(out.contains("connection: close\r\n") && w.close);
    let (out, w) = rewrite_resp(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n", false, &ResponseEdits::default());
    assert!(out.contains("connection: close\r\n") && w.close, "{out}");
    assert_eq!(count_name(&out, "content-length") + count_name(&out, "transfer-encoding"), 0);
}

#[test]
fn rewrite_response_dechunks_for_http10_client() {
    let s = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n";
    let (out, w) = rewrite_resp(s, false, &ResponseEdits { http10_client: true, ..ResponseEdits::default() });
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "the version the gateway speaks: {out}");
    assert_eq!(count_name(&out, "transfer-encoding"), 0);
    assert!(out.contains("connection: close\r\n"));
    assert_eq!(w, ResponseWritten { dechunk: true, close: true });
    // Content-Length answers keep a 1.0 client's connection alive when asked.
    let (out, w) = rewrite_resp(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
        false,
        &ResponseEdits { http10_client: true, ..ResponseEdits::default() },
    );
    assert!(out.contains("content-length: 3\r\nserver: istio-envoy\r\nconnection: keep-alive\r\n"), "{out}");
    assert!(!w.close);
    // Chunked to an HTTP/1.1 client passes through, once.
    let (out, w) = rewrite_resp(s, false, &ResponseEdits::default());
    assert_eq!(count_name(&out, "transfer-encoding"), 1);
    assert!(!w.dechunk && !w.close);
}

#[test]
fn rewrite_response_switching_protocols() {
    let s = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
    let (out, w) = rewrite_resp(s, false, &ResponseEdits::default());
    assert!(out.starts_with("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n"), "{out}");
    assert!(out.contains("connection: upgrade\r\nupgrade: websocket\r\n"));
    assert!(!w.close);
}

#[test]
fn rewrite_response_bodyless_statuses() {
    let (out, _) =
        rewrite_resp(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false, &ResponseEdits::default());
    assert_eq!(count_name(&out, "content-length"), 0);
    let (out, w) = rewrite_resp(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", true, &ResponseEdits::default());
    assert!(out.contains("content-length: 42\r\n") && !w.close);
    let (out, _) = rewrite_resp(b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n", false, &ResponseEdits::default());
    assert!(out.contains("ETag: \"a\"\r\n") && !out.contains("connection"));
    // Interim answers carry no gateway headers.
    let (out, _) = rewrite_resp(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false, &ResponseEdits::default());
    assert_eq!(out, "HTTP/1.1 103 Unknown\r\nLink: </a>\r\n\r\n");
}

#[test]
fn simple_responses() {
    let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
    let mut out = Vec::new();
    write_simple_response(
        &mut out,
        &SimpleResponse { status: 503, body: b"no healthy upstream", ..SimpleResponse::default() },
        date,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 19\r\ncontent-type: text/plain\r\n\
date: Sun, 06 Nov 1994 08:49:37 GMT\r\nserver: istio-envoy\r\n\r\nno healthy upstream"
    );
    let mut out = Vec::new();
    write_simple_response(&mut out, &SimpleResponse { status: 404, ..SimpleResponse::default() }, date);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nserver: istio-envoy\r\n\r\n"
    );
    let mut out = Vec::new();
    write_simple_response(
        &mut out,
        &SimpleResponse {
            status: 400,
            body: b"bad",
            close: true,
            omit_body: true,
            headers: &[("x-a", "1")],
            ..SimpleResponse::default()
        },
        date,
    );
    let s = String::from_utf8(out).unwrap();
    assert!(s.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n"));
    assert!(s.ends_with("x-a: 1\r\nconnection: close\r\n\r\n"), "{s}");
    let mut out = Vec::new();
    write_simple_response(
        &mut out,
        &SimpleResponse {
            status: 200,
            body: b"{}",
            headers: &[("Content-Type", "application/json")],
            ..SimpleResponse::default()
        },
        date,
    );
    let s = String::from_utf8(out).unwrap();
    assert_eq!(count_name(&s, "content-type"), 1, "a configured content-type replaces the default: {s}");
    assert!(s.contains("Content-Type: application/json\r\n"), "{s}");
    let mut out = Vec::new();
    write_simple_response(&mut out, &SimpleResponse { status: 404, http10: true, ..SimpleResponse::default() }, date);
    let s = String::from_utf8(out).unwrap();
    assert!(s.starts_with("HTTP/1.1 404 ") && s.ends_with("connection: keep-alive\r\n\r\n"), "{s}");
    for status in [204, 304] {
        let mut out = Vec::new();
        write_simple_response(
            &mut out,
            &SimpleResponse { status, body: b"ignored", ..SimpleResponse::default() },
            date,
        );
        let s = String::from_utf8(out).unwrap();
        assert_eq!(count_name(&s, "content-length") + count_name(&s, "content-type"), 0, "{s}");
        assert!(s.ends_with("server: istio-envoy\r\n\r\n"), "no body: {s}");
    }
    assert_eq!(reason_phrase(504), "Gateway Timeout");
    assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    assert_eq!(reason_phrase(299), "Unknown");
}

#[test]
fn http_dates() {
    let mut b = [0u8; 29];
    for (secs, want) in [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 GMT"),
        (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
        (4_133_980_799, "Fri, 31 Dec 2100 23:59:59 GMT"),
    ] {
        format_http_date(secs, &mut b);
        assert_eq!(std::str::from_utf8(&b).unwrap(), want);
    }
    let mut c = DateCache::new();
    assert_eq!(c.at(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(c.now().len(), 29);
}

// ---------------------------------------------------------------- chunked bodies

/// Feeds `body` whole and byte by byte in decode mode; both must agree on the bytes
/// consumed and the data, and on errors.
fn decode(body: &[u8]) -> Result<(usize, Vec<u8>), ParseError> {
    let whole = {
        let mut d = ChunkedDecoder::decoding();
        let mut pos = 0;
        let mut data = Vec::new();
        loop {
            let p = d.feed(&body[pos..])?;
            if let Some(r) = p.data {
                data.extend_from_slice(&body[pos + r.start..pos + r.end]);
            }
            pos += p.consumed;
            if p.done || pos == body.len() {
                break;
            }
        }
        (pos, data, d.is_done())
    };
    let bytewise = {
        let mut d = ChunkedDecoder::decoding();
        let mut pos = 0;
        let mut data = Vec::new();
        let mut res = Ok(());
        while pos < body.len() && !d.is_done() {
            match d.feed(&body[pos..pos + 1]) {
                Ok(p) => {
                    if let Some(r) = p.data {
                        data.extend_from_slice(&body[pos + r.start..pos + r.end]);
                    }
                    assert!(p.consumed <= 1);
                    pos += p.consumed;
                }
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        res.map(|()| (pos, data, d.is_done()))
    };
    let (pos, data, done) = whole;
    assert_eq!(bytewise, Ok((pos, data.clone(), done)));
    // The pass-through scanner agrees on where the message ends.
    let p = ChunkedDecoder::new().feed(body)?;
    assert_eq!((p.consumed, p.done), (pos, done));
    assert!(done, "incomplete body");
    Ok((pos, data))
}

fn decode_err(body: &[u8]) -> ParseError {
    let whole = ChunkedDecoder::new().feed(body).unwrap_err();
    let mut d = ChunkedDecoder::new();
    let split = body.iter().map(|b| d.feed(std::slice::from_ref(b))).find_map(Result::err);
    assert_eq!(split, Some(whole), "byte-by-byte disagrees for {:?}", String::from_utf8_lossy(body));
    whole
}

#[test]
fn chunked_body_ends_exactly_and_leaves_pipelined_bytes() {
    let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let (consumed, data) = decode(body).unwrap();
    assert_eq!(&body[consumed..], b"GET / HTTP/1.1\r\n");
    assert_eq!(data, b"hello world");
}

#[test]
fn chunked_split_feeding_matches_whole() {
    for body in [
        &b"0\r\n\r\n"[..],
        b"1\r\na\r\n0\r\n\r\n",
        b"A\r\n0123456789\r\n0\r\n\r\n",
        b"00005\r\nhello\r\n000\r\n\r\n",
        b"5;ext=1;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n",
        b"5 ;ext\r\nhello\r\n0\r\n\r\n",
        b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
        b"10\r\n0123456789abcdef\r\n0\r\n\r\nextra",
    ] {
        decode(body).unwrap();
    }
}

#[test]
fn chunked_pass_through_has_no_data_spans() {
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    let p = ChunkedDecoder::new().feed(body).unwrap();
    assert_eq!(p, Progress { consumed: body.len(), data: None, done: true });
    // Split mid-data: consumes everything, not done.
    let mut d = ChunkedDecoder::new();
    assert_eq!(d.feed(&body[..6]).unwrap(), Progress { consumed: 6, data: None, done: false });
    assert_eq!(d.feed(&body[6..]).unwrap(), Progress { consumed: body.len() - 6, data: None, done: true });
    // After done, nothing more is consumed.
    assert_eq!(d.feed(b"xyz").unwrap(), Progress { consumed: 0, data: None, done: true });
}

#[test]
fn chunk_size_overflow_is_refused() {
    assert_eq!(decode_err(b"8000000000000000\r\n"), ParseError::ChunkSizeOverflow);
    assert_eq!(decode_err(b"ffffffffffffffffff\r\n"), ParseError::ChunkSizeOverflow);
    // 2^63 - 1 is the largest size accepted (the data then simply streams).
    let mut d = ChunkedDecoder::new();
    assert!(d.feed(b"7fffffffffffffff\r\nabc").is_ok());
    // Leading zeros do not count towards overflow.
    decode(b"0000000000000000000000005\r\nhello\r\n0\r\n\r\n").unwrap();
}

#[test]
fn chunk_size_junk_is_refused() {
    for body in [&b"5x\r\n"[..], b"5 \r\n", b"\r\n", b"-5\r\n", b"0x5\r\n", b"+5\r\n", b" 5\r\n", b"5\t\r\n", b"g\r\n"]
    {
        assert_eq!(decode_err(body), ParseError::InvalidChunkSize, "{:?}", String::from_utf8_lossy(body));
    }
}

#[test]
fn chunk_data_must_end_with_crlf() {
    assert_eq!(decode_err(b"5\r\nhelloX\r\n0\r\n\r\n"), ParseError::MissingChunkCrlf);
    assert_eq!(decode_err(b"5\r\nhello\rX0\r\n\r\n"), ParseError::MissingChunkCrlf);
    assert_eq!(decode_err(b"3\r\nhello\r\n"), ParseError::MissingChunkCrlf);
}

#[test]
fn chunked_bare_lf_is_refused() {
    assert_eq!(decode_err(b"5\nhello\r\n0\r\n\r\n"), ParseError::InvalidChunkSize);
    assert_eq!(decode_err(b"5\r\nhello\n0\r\n\r\n"), ParseError::MissingChunkCrlf);
    assert_eq!(decode_err(b"5;a\nb\r\nhello\r\n"), ParseError::InvalidChunkExtension);
    assert_eq!(decode_err(b"0\r\n\n"), ParseError::InvalidTrailer);
    assert_eq!(decode_err(b"0\r\nA: b\n\r\n"), ParseError::InvalidTrailer);
    assert_eq!(decode_err(b"0\r\n\rX"), ParseError::InvalidTrailer);
}

#[test]
fn chunk_extension_bytes_are_checked() {
    assert_eq!(decode_err(b"5;a\0\r\nhello\r\n"), ParseError::InvalidChunkExtension);
    let mut long = b"5;".to_vec();
    long.resize(5000, b'a');
    assert_eq!(decode_err(&long), ParseError::InvalidChunkExtension);
}

#[test]
fn chunked_trailers_are_checked() {
    for body in [
        &b"0\r\nA: 1\r\n folded\r\n\r\n"[..],
        b"0\r\nA : 1\r\n\r\n",
        b"0\r\nA: \x001\r\n\r\n",
        b"0\r\nno-colon\r\n\r\n",
        b"0\r\n:x\r\n\r\n",
    ] {
        assert_eq!(decode_err(body), ParseError::InvalidTrailer, "{:?}", String::from_utf8_lossy(body));
    }
    let mut big = b"0\r\nX: ".to_vec();
    big.resize(20_000, b'a');
    assert_eq!(decode_err(&big), ParseError::TrailersTooLarge);
}

#[test]
fn content_length_body_counts() {
    let mut b = ContentLengthBody::new(10);
    assert_eq!(b.feed(4), 4);
    assert!(!b.is_done());
    assert_eq!(b.feed(100), 6);
    assert!(b.is_done());
    assert_eq!(b.feed(5), 0);
}

// ---------------------------------------------------------------- API usage

#[test]
fn incremental_reading_with_fresh_slots_per_attempt() {
    // The pattern the proxy path uses: append to the read buffer, re-parse with a fresh
    // (free) HeaderSlots, stop at the first complete head.
    let mut buf = Vec::new();
    let mut arrivals = [&b"GET /x HT"[..], b"TP/1.1\r\nHost: h\r\n", b"\r\nbody"].into_iter();
    let head_len = loop {
        buf.extend_from_slice(arrivals.next().unwrap());
        let mut slots = HeaderSlots::new();
        match parse_request(&buf, &mut slots, &Limits::default()) {
            Ok(Some(h)) => break h.head_len,
            Ok(None) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&buf[head_len..], b"body");
}

#[test]
fn writers_accept_bytes_mut() {
    let mut slots = HeaderSlots::new();
    let h = parse_request(BROWSER, &mut slots, &Limits::default()).unwrap().unwrap();
    let mut a = Vec::new();
    let mut b = bytes::BytesMut::new();
    write_request_head(&mut a, &h, &RequestEdits::default());
    write_request_head(&mut b, &h, &RequestEdits::default());
    assert_eq!(&a[..], &b[..]);
}

#[test]
fn exactly_max_headers_fit() {
    let limits = Limits { max_headers: 3, ..Limits::default() };
    let s = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    assert!(parse_request(s, slots(), &limits).unwrap().is_some());
}
