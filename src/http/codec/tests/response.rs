//! Response heads: the framing matrix, keep-alive, ambiguous framing, incomplete heads.

use super::*;

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
