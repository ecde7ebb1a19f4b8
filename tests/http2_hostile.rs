//! Hostile HTTP/2 clients, on both drivers, their frames written by hand (`support::h2`): each
//! attack meets a bound (a GOAWAY, a refused stream, or work and memory that stay bounded) and
//! nothing malformed reaches the HTTP/1.1 upstream.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strait_test_support::{self as support, both_drivers, gateway};

use support::backend::Backend;
use support::config::service_entry;
use support::h2::*;
use support::tcp::TcpBackend;
use support::Gateway;

/// `/slow` waits 30 s in a fault delay before it asks any upstream; `/big` is a 1 GiB answer.
const HTTP: &str = "  - name: slow
    match:
    - uri:
        exact: /slow
    fault:
      delay:
        fixedDelay: 30s
        percentage:
          value: 100
    route:
    - destination:
        host: app.local
  - name: big
    match:
    - uri:
        exact: /big
    route:
    - destination:
        host: big.local
  - name: app
    route:
    - destination:
        host: app.local
";

struct Setup {
    gw: Gateway,
    addr: SocketAddr,
    app: Backend,
    /// Body bytes the 1 GiB backend has written so far.
    big_sent: Arc<AtomicU64>,
    _big: TcpBackend,
}

fn setup(driver: support::Driver) -> Setup {
    let app = Backend::start("app");
    let big_sent = Arc::new(AtomicU64::new(0));
    let sent = big_sent.clone();
    let big = TcpBackend::start(move |mut s, _| {
        if support::read_raw_head(&mut s).is_none() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let _ = s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", 1u64 << 30).as_bytes());
        while sent.load(Ordering::Relaxed) < 1 << 30 && s.write_all(&chunk).is_ok() {
            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    let extra = vec![
        service_entry("app", "app.local", 80, &[app.port()]),
        service_entry("big", "big.local", 80, &[big.port()]),
    ];
    let (gw, addr) = gateway!(driver).start_app(HTTP, extra);
    Setup { gw, addr, app, big_sent, _big: big }
}

/// The gateway's resident memory, in KiB.
fn rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A plain request on a fresh connection is still answered.
fn still_serves(addr: SocketAddr) {
    let mut h2 = H2::connect(addr);
    h2.headers(1, &request("GET", "app.test", "/"), true).unwrap();
    assert_eq!(h2.outcome(1), Ok(()), "a well-behaved request after the attack");
}

/// `count` frames of `one` written from another thread, until the gateway stops reading (a
/// 5 s write stall) or closes; the bytes written.
fn flood(h2: &H2, one: &[u8], count: usize) -> std::thread::JoinHandle<usize> {
    let mut stream = h2.stream.try_clone().unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let burst = one.repeat(1024);
    let total = one.len().max(1) * count;
    std::thread::spawn(move || {
        let mut written = 0;
        while written < total && stream.write_all(&burst).is_ok() {
            written += burst.len();
        }
        written
    })
}

both_drivers! {
    fn rapid_reset_is_ended_with_enhance_your_calm(driver) {
        let s = setup(driver);
        let mut h2 = H2::connect(s.addr);
        let pairs = |ids: std::ops::Range<u32>| -> Vec<u8> {
            ids.flat_map(|i| {
                let id = 2 * i + 1;
                let headers = frame(HEADERS, END_HEADERS | END_STREAM, id, &block(&request("GET", "app.test", "/")));
                [headers, frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes())].concat()
            })
            .collect()
        };
        // Ten streams reset in the write that opens them: h2 hands them over already reset,
        // and none is forwarded.
        h2.send(&pairs(0..10)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(s.app.count(), 0, "a stream reset before it was taken asked the upstream");
        // A thousand more at once: past h2's 20 reset before they are taken.
        let _ = h2.send(&pairs(10..1010));
        assert_eq!(h2.goaway(), Some(ENHANCE_YOUR_CALM));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(s.app.count(), 0);
        still_serves(s.addr);
    }

    fn rapid_reset_at_any_pace_ends_the_connection(driver) {
        let s = setup(driver);
        let mut h2 = H2::connect(s.addr);
        // One stream at a time, reset once its request has reached the upstream: h2's bound
        // on resets of streams not yet taken never fills; Envoy's premature-reset bound (half
        // of 500 streams reset within a second) does.
        let mut sent = 0;
        for i in 0..600u32 {
            let id = 2 * i + 1;
            if h2.headers(id, &request("GET", "app.test", "/"), true).is_err() {
                break;
            }
            // (Once the connection has ended, the last HEADERS may still be written: 2 s.)
            let deadline = Instant::now() + Duration::from_secs(2);
            while s.app.count() <= i as usize && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if h2.send(&frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes())).is_err() {
                break;
            }
            sent += 1;
        }
        assert!(h2.closed(), "{sent} streams reset early left the connection open");
        assert!(sent < 300, "{sent} streams reset early before the connection ended");
        still_serves(s.addr);
    }

    fn continuation_flood_is_ended_past_the_header_list_bound(driver) {
        let s = setup(driver);
        // Endless CONTINUATION without END_HEADERS, empty ones and ones that add a field each.
        for field in [Vec::new(), { let mut f = Vec::new(); literal(&mut f, b"x-flood", &[b'a'; 1000]); f }] {
            let mut h2 = H2::connect(s.addr);
            h2.send(&frame(HEADERS, 0, 1, &block(&request("GET", "app.test", "/")))).unwrap();
            let writer = flood(&h2, &frame(CONTINUATION, 0, 1, &field), 1 << 20);
            // Empty ones meet the empty-frame bound (closed at once), full ones h2's bound on
            // CONTINUATION frames per block (GOAWAY ENHANCE_YOUR_CALM).
            let code = h2.goaway();
            assert!(code != Some(0) && h2.closed(), "the connection went on (GOAWAY {code:?})");
            let written = writer.join().unwrap();
            assert!(written < 64 << 20, "the gateway read {written} bytes of one header block");
        }
        assert_eq!(s.app.count(), 0);
        still_serves(s.addr);
    }

    fn hpack_bomb_is_refused(driver) {
        let s = setup(driver);
        let mut h2 = H2::connect(s.addr);
        // One 4 KB field put in the dynamic table, then named by its index (one byte) 100
        // times: a 4 KB block that decodes to 400 KB, past max_header_list_size (60 KiB).
        let mut b = block(&request("GET", "app.test", "/"));
        b.push(0x40);
        hpack_int(&mut b, 7, 0, 6);
        b.extend_from_slice(b"x-bomb");
        hpack_int(&mut b, 7, 0, 4000);
        b.extend_from_slice(&[b'a'; 4000]);
        b.extend_from_slice(&[0x80 | 62; 100]);
        h2.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &b)).unwrap();
        // h2 answers 431 and resets the stream, or ends the connection past its abuse bound.
        let _ = h2.outcome(1);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(s.app.count(), 0, "the bomb reached the upstream");
        still_serves(s.addr);
    }

    fn ping_and_settings_floods_stall_only_their_own_connection(driver) {
        let s = setup(driver);
        let before = rss_kib(&s.gw);
        for (name, one) in [("PING", frame(PING, 0, 0, &[7; 8])), ("SETTINGS", frame(SETTINGS, 0, 0, &[]))] {
            let mut h2 = H2::connect(s.addr);
            // 200 000 frames written, none of their ACKs read: h2 holds one ACK at a time and
            // reads on only once it is written, so an unread flood stalls its own connection
            // (the bound Envoy's max_outbound_control_frames sets on its queue of ACKs).
            let written = flood(&h2, &one, 200_000).join().unwrap();
            still_serves(s.addr);
            let grown = rss_kib(&s.gw).saturating_sub(before);
            assert!(grown < 64 * 1024, "{name} flood ({written} bytes) grew the gateway by {grown} KiB");
            // Read, the flood is answered and the connection goes on.
            h2.headers(1, &request("GET", "app.test", "/"), true).unwrap();
            assert_eq!(h2.outcome(1), Ok(()), "{name}");
        }
    }

    fn empty_priority_and_window_update_floods_end_the_connection(driver) {
        let s = setup(driver);
        // A stream held open in a fault delay, its body to come: what the frames name.
        let post = [request("POST", "app.test", "/slow"), vec![("content-length", "0")]].concat();
        let floods = [
            // Envoy's max_consecutive_inbound_frames_with_empty_payload (1).
            ("empty DATA", frame(DATA, 0, 1, &[])),
            // Envoy's max_inbound_priority_frames_per_stream (100 per stream opened).
            ("PRIORITY", frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 16])),
            // Envoy's max_inbound_window_update_frames_per_data_frame_sent (10), no DATA sent.
            ("WINDOW_UPDATE", frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes())),
        ];
        for (name, one) in floods {
            let mut h2 = H2::connect(s.addr);
            h2.headers(1, &post, false).unwrap();
            let _ = h2.send(&one.repeat(1000));
            assert!(h2.closed(), "a {name} flood left the connection open");
        }
        assert_eq!(s.app.count(), 0);
        still_serves(s.addr);
    }

    fn frame_errors_end_the_connection_with_the_code_rfc_9113_names(driver) {
        let s = setup(driver);
        let get = frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&request("GET", "app.test", "/slow")));
        let window = [&SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes()[..], &(1u32 << 31).to_be_bytes()].concat();
        for (name, bad, code) in [
            ("a 6-byte PING", frame(PING, 0, 0, &[0; 6]), FRAME_SIZE_ERROR),
            ("a SETTINGS ACK with a payload", frame(SETTINGS, ACK, 0, &[0]), FRAME_SIZE_ERROR),
            ("a 3-byte WINDOW_UPDATE", frame(WINDOW_UPDATE, 0, 0, &[0; 3]), FRAME_SIZE_ERROR),
            ("an initial window of 2^31", frame(SETTINGS, 0, 0, &window), FLOW_CONTROL_ERROR),
            ("DATA after END_STREAM", [get.clone(), frame(DATA, END_STREAM, 1, b"late")].concat(), STREAM_CLOSED),
            ("HEADERS after END_STREAM", [get.clone(), get.clone()].concat(), STREAM_CLOSED),
            // A literal with incremental indexing that stops before its name (httpwg's case):
            // a block that cannot be decompressed (RFC 9113 §4.3).
            ("a header block HPACK cannot decode", frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x40]), COMPRESSION_ERROR),
        ] {
            let mut h2 = H2::connect(s.addr);
            h2.send(&bad).unwrap();
            // h2 0.4.21 alone said PROTOCOL_ERROR for each of these.
            assert_eq!(h2.goaway(), Some(code), "{name}");
            assert!(h2.closed(), "{name}: left open");
        }
        assert_eq!(s.app.count(), 0);
        still_serves(s.addr);
    }

    fn a_client_goaway_leaves_the_connection_answering_pings(driver) {
        let s = setup(driver);
        let mut h2 = H2::connect(s.addr);
        // Last stream 0, an error code RFC 9113 does not define (httpwg's case), and a PING well
        // after it: the GOAWAY says the client opens no more streams, not that the server
        // should hang up (RFC 9113 §6.8); Envoy keeps serving such a connection too.
        let goaway = [&0u32.to_be_bytes()[..], &0xffu32.to_be_bytes()].concat();
        h2.send(&frame(GOAWAY, 0, 0, &goaway)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        h2.send(&frame(PING, 0, 0, b"strait!!")).unwrap();
        let ack = h2.until(|f| f.kind == PING || f.kind == GOAWAY).expect("an answer to the PING");
        assert_eq!((ack.kind, ack.flags, &ack.payload[..]), (PING, ACK, &b"strait!!"[..]));
        still_serves(s.addr);
    }

    fn pseudo_header_fields_in_trailers_reset_the_stream(driver) {
        let s = setup(driver);
        let mut h2 = H2::connect(s.addr);
        // A body, then trailers carrying `:path`: a malformed request (RFC 9113 §8.1).
        let mut bytes = frame(HEADERS, END_HEADERS, 1, &block(&request("POST", "app.test", "/")));
        bytes.extend(frame(DATA, 0, 1, b"body"));
        bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&[(":path", "/other"), ("x-t", "1")])));
        h2.send(&bytes).unwrap();
        assert_eq!(h2.outcome(1), Err(Some(PROTOCOL_ERROR)));
        std::thread::sleep(Duration::from_millis(300));
        let whole = s.app.requests().iter().filter(|r| r.body == b"body").count();
        assert_eq!(whole, 0, "the malformed request reached the upstream whole");
        still_serves(s.addr);
    }

    fn a_client_push_promise_ends_the_connection(driver) {
        let s = setup(driver);
        let mut h2 = H2::connect(s.addr);
        // On an idle stream, promising stream 2 with a response's block, END_HEADERS not set
        // (httpwg's case): h2 would wait for its CONTINUATION.
        let promise = [&2u32.to_be_bytes()[..], &block(&[(":status", "200")])].concat();
        h2.send(&frame(PUSH_PROMISE, 0, 1, &promise)).unwrap();
        let code = h2.goaway();
        assert!(matches!(code, None | Some(PROTOCOL_ERROR)) && h2.closed(), "GOAWAY {code:?}, or left open");
        assert_eq!(s.app.count(), 0);
    }

    fn streams_beyond_max_concurrent_streams_are_refused(driver) {
        let s = setup(driver);
        let mut h2 = H2::connect(s.addr);
        let mut burst = Vec::new();
        for i in 0..1025u32 {
            burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &block(&request("GET", "app.test", "/slow"))));
        }
        h2.send(&burst).unwrap();
        let refused = h2.until(|f| f.kind == RST_STREAM || f.kind == GOAWAY).expect("a refusal");
        assert_eq!((refused.kind, refused.stream, refused.code()), (RST_STREAM, 2049, Some(REFUSED_STREAM)));
        assert_eq!(s.app.count(), 0);
    }

    fn a_client_that_never_reads_pins_no_memory(driver) {
        let s = setup(driver);
        // A zero stream window: the response's DATA may not go out at all.
        let mut h2 = H2::connect_with(s.addr, &[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
        h2.headers(1, &request("GET", "app.test", "/big"), true).unwrap();
        assert!(support::wait_until(Duration::from_secs(10), || s.big_sent.load(Ordering::Relaxed) > 0).is_some());
        std::thread::sleep(Duration::from_secs(3));
        let sent = s.big_sent.load(Ordering::Relaxed);
        assert!(sent < 32 << 20, "the gateway took {sent} bytes of an answer its client cannot take");
        still_serves(s.addr);
    }

    fn h2_smuggling_into_http1_is_refused(driver) {
        let s = setup(driver);
        let get = |extra: &[(&'static str, &'static str)]| [request("GET", "app.test", "/"), extra.to_vec()].concat();
        let post = |extra: &[(&'static str, &'static str)]| [request("POST", "app.test", "/"), extra.to_vec()].concat();
        let headers_only: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("transfer-encoding", get(&[("transfer-encoding", "chunked")])),
            ("connection", get(&[("connection", "keep-alive")])),
            ("keep-alive", get(&[("keep-alive", "timeout=5")])),
            ("upgrade", get(&[("upgrade", "websocket")])),
            ("te other than trailers", get(&[("te", "gzip")])),
            ("uppercase name", get(&[("X-Upper", "a")])),
            ("CR LF in a value", get(&[("x-a", "b\r\nx-injected: 1")])),
            ("LF in a value", get(&[("x-a", "b\nx-injected: 1")])),
            ("NUL in a value", get(&[("x-a", "b\0c")])),
            ("leading space in a value", get(&[("x-a", " b")])),
            ("trailing tab in a value", get(&[("x-a", "b\t")])),
            ("CONNECT without :authority", vec![(":method", "CONNECT")]),
            ("missing :path", vec![(":method", "GET"), (":scheme", "http"), (":authority", "app.test")]),
            ("missing :method", vec![(":scheme", "http"), (":authority", "app.test"), (":path", "/")]),
            ("duplicate :path", get(&[(":path", "/other")])),
            ("pseudo after a regular field", [vec![(":method", "GET"), ("x-a", "b")], request("GET", "app.test", "/")[1..].to_vec()].concat()),
            ("empty :path", vec![(":method", "GET"), (":scheme", "http"), (":authority", "app.test"), (":path", "")]),
            ("unknown pseudo", get(&[(":foo", "bar")])),
            ("host differing from :authority", get(&[("host", "other.test")])),
        ];
        for (name, fields) in &headers_only {
            let mut h2 = H2::connect(s.addr);
            h2.headers(1, fields, true).unwrap();
            assert_eq!(h2.outcome(1), Err(Some(PROTOCOL_ERROR)), "{name}");
        }
        // content-length against the DATA that came, more or less, in one write with its head.
        for (name, length, data) in [("longer DATA", "5", 10), ("shorter DATA", "10", 5)] {
            let mut h2 = H2::connect(s.addr);
            let mut bytes = frame(HEADERS, END_HEADERS, 1, &block(&post(&[("content-length", length)])));
            bytes.extend(frame(DATA, END_STREAM, 1, &vec![b'd'; data]));
            h2.send(&bytes).unwrap();
            assert_eq!(h2.outcome(1), Err(Some(PROTOCOL_ERROR)), "{name}");
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(s.app.count(), 0, "a malformed request reached the upstream: {:?}", s.app.requests().first().map(|r| &r.target));
        still_serves(s.addr);
    }
}
