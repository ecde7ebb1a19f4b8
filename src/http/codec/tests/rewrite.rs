//! Head rewriting, both ways: untouched lines verbatim, hop-by-hop headers, forwarding headers.

use super::*;

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
            request_id: Some(b"gw-id"),
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
fn behind_trusted_proxies_the_clients_x_forwarded_proto_is_kept() {
    let s = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n";
    let out = rewrite(s, &RequestEdits { keep_client_proto: true, ..RequestEdits::default() });
    assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
    assert_eq!(count_name(&out, "x-forwarded-proto"), 1);
    // None sent: the connection's scheme.
    let out = rewrite(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        &RequestEdits { keep_client_proto: true, ..RequestEdits::default() },
    );
    assert!(out.contains("x-forwarded-proto: http\r\n"), "{out}");
}

#[test]
fn append_forward_joins_the_gateways_client_cert_element_to_the_clients_value() {
    let s =
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Client-Cert: By=a;Hash=1\r\nx-forwarded-client-cert: By=b\r\n\r\n";
    let edits = RequestEdits {
        x_forwarded_client_cert: Some("By=gw;Hash=2"),
        keep_client_cert: true,
        ..RequestEdits::default()
    };
    let out = rewrite(s, &edits);
    assert_eq!(count_name(&out, "x-forwarded-client-cert"), 1, "{out}");
    assert!(out.contains("x-forwarded-client-cert: By=a;Hash=1,By=b,By=gw;Hash=2\r\n"), "{out}");
    // FORWARD_ONLY keeps the client's lines as they came.
    let out = rewrite(s, &RequestEdits { keep_client_cert: true, ..RequestEdits::default() });
    assert_eq!(count_name(&out, "x-forwarded-client-cert"), 2, "{out}");
}

#[test]
fn try_lines_end_the_head_and_a_retry_rewrites_them_in_place() {
    let s = b"POST /p HTTP/1.1\r\nHost: h\r\nX-Envoy-Attempt-Count: 7\r\nContent-Length: 4\r\n\r\n";
    let first = TryLines { attempt: Some(1), expected_timeout_ms: Some(1000), grpc_timeout: false };
    let mut out = Vec::new();
    write_request_head(&mut out, &ok(s), &RequestEdits { try_lines: first, ..RequestEdits::default() });
    assert!(out.ends_with(b"x-envoy-attempt-count: 1\r\nx-envoy-expected-rq-timeout-ms: 1000\r\n\r\n"));
    let mut head_end = out.len();
    out.extend_from_slice(b"body");
    // Longer, shorter, then without the timeout line: the head parses back, the body follows.
    let mut old = first;
    for (new, attempt, expected) in [
        (TryLines { attempt: Some(10), expected_timeout_ms: Some(12345), grpc_timeout: false }, "10", Some("12345")),
        (TryLines { attempt: Some(2), expected_timeout_ms: Some(5), grpc_timeout: false }, "2", Some("5")),
        (TryLines { attempt: Some(3), expected_timeout_ms: None, grpc_timeout: false }, "3", None),
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
fn a_grpc_try_says_its_timeout_in_grpc_timeout_too() {
    let s = b"POST /p HTTP/1.1\r\nHost: h\r\ngrpc-timeout: 10S\r\nContent-Length: 4\r\n\r\n";
    let first = TryLines { attempt: Some(1), expected_timeout_ms: Some(250), grpc_timeout: true };
    assert!(first.writes_grpc_timeout());
    let edits = RequestEdits { try_lines: first, remove: &["grpc-timeout"], ..RequestEdits::default() };
    let mut out = Vec::new();
    write_request_head(&mut out, &ok(s), &edits);
    assert!(out.ends_with(b"x-envoy-expected-rq-timeout-ms: 250\r\ngrpc-timeout: 250m\r\n\r\n"));
    let mut head_end = out.len();
    out.extend_from_slice(b"body");
    let mut old = first;
    for (ms, value) in [(200_000_000, "200000S"), (7, "7m")] {
        let new = TryLines { attempt: Some(2), expected_timeout_ms: Some(ms), grpc_timeout: true };
        head_end = rewrite_try_lines(&mut out, head_end, &old, &new);
        let back = ok(&out);
        assert_eq!(back.head_len, head_end);
        let values: Vec<_> = back.header_values("grpc-timeout").map(|v| std::str::from_utf8(v).unwrap()).collect();
        assert_eq!(values, [value]);
        assert_eq!(&out[head_end..], b"body");
        old = new;
    }
    let untimed = TryLines { attempt: Some(1), expected_timeout_ms: None, grpc_timeout: true };
    assert!(!untimed.writes_grpc_timeout(), "without a timeout the client's line stays");
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
        request_id: Some(b"id"),
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
