//! Request heads: parsing, Content-Length and Transfer-Encoding framing, line syntax, limits.

use super::*;

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
