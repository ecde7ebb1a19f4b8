//! Hostile requests, byte for byte: smuggling attempts (RFC 9112 framing and beyond), malformed
//! lines and fields, limits. For each, what the client gets, exactly what the upstream
//! received (nothing, or one request with one unambiguous framing), and then that a request on
//! a second connection is still answered by the upstream as itself (no desync left behind).

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use support::backend::{Backend, Received};
use support::client::Conn;
use support::config::app_behind_rule;
use support::{free_port, Driver, Gateway};

/// What a hostile request must come to.
enum Expect {
    /// Answered with this status by the gateway and the connection closed; nothing upstream.
    Refused(u16),
    /// Forwarded as exactly one request: this method, target and body, framed once.
    Forwarded { method: &'static str, target: &'static str, body: &'static [u8] },
}

use Expect::{Forwarded, Refused};

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, raw: impl AsRef<[u8]>, expect: Expect) -> Case {
    Case { name, raw: raw.as_ref().to_vec(), expect }
}

/// `POST /` to app.test with `fields` (each ending in CRLF) and then `rest` after the head.
fn post(fields: &str, rest: &str) -> String {
    format!("POST / HTTP/1.1\r\nHost: app.test\r\n{fields}\r\n{rest}")
}

fn get_with(fields: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: app.test\r\n{fields}\r\n")
}

const GET_OK: Expect = Forwarded { method: "GET", target: "/", body: b"" };
const POST_HELLO: Expect = Forwarded { method: "POST", target: "/", body: b"hello" };

fn cases() -> Vec<Case> {
    let chunked = |body: &str| post("Transfer-Encoding: chunked\r\n", body);
    vec![
        // Content-Length and Transfer-Encoding together, in either order: refused (RFC 9112
        // §6.1 lets a server pick TE; a gateway cannot know what the upstream would pick).
        case(
            "cl then te",
            post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Refused(400),
        ),
        case(
            "te then cl",
            post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Refused(400),
        ),
        case(
            "cl with te identity",
            post("Content-Length: 5\r\nTransfer-Encoding: identity\r\n", "hello"),
            Refused(400),
        ),
        // Content-Length values.
        case("differing cl fields", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), Refused(400)),
        case("differing cl list", post("Content-Length: 5, 6\r\n", "hello!"), Refused(400)),
        case("cl not a number", post("Content-Length: abc\r\n", "hello"), Refused(400)),
        case("cl negative", post("Content-Length: -5\r\n", "hello"), Refused(400)),
        case("cl with plus", post("Content-Length: +5\r\n", "hello"), Refused(400)),
        case("cl in hex", post("Content-Length: 0x5\r\n", "hello"), Refused(400)),
        case("cl with inner space", post("Content-Length: 5 5\r\n", "hello"), Refused(400)),
        case("cl overflows", post("Content-Length: 99999999999999999999999\r\n", "hello"), Refused(400)),
        case("cl empty", post("Content-Length: \r\n", "hello"), Refused(400)),
        case("cl with trailing junk", post("Content-Length: 5x\r\n", "hello"), Refused(400)),
        case("cl with leading zeros", post("Content-Length: 005\r\n", "hello"), POST_HELLO),
        case("cl repeated alike", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), POST_HELLO),
        case("cl list alike", post("Content-Length: 5, 5\r\n", "hello"), POST_HELLO),
        // Transfer-Encoding values: only a final, single `chunked` frames a request; without
        // it the length is unknowable (400, RFC 9112 §6.3); a coding before it is one Strait
        // does not implement (501).
        case(
            "te chunked then identity",
            post("Transfer-Encoding: chunked, identity\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Refused(400),
        ),
        case("te gzip alone", post("Transfer-Encoding: gzip\r\n", "hello"), Refused(400)),
        case(
            "te gzip then chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Refused(501),
        ),
        case("te xchunked", post("Transfer-Encoding: xchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("te chunkedx", post("Transfer-Encoding: chunkedx\r\n", "5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case(
            "te chunked twice in a list",
            post("Transfer-Encoding: chunked, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Refused(400),
        ),
        case(
            "te chunked in two fields",
            post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Refused(400),
        ),
        case("te quoted", post("Transfer-Encoding: \"chunked\"\r\n", "5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case(
            "te with vertical tab",
            post("Transfer-Encoding:\x0bchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Refused(400),
        ),
        case("te with form feed", post("Transfer-Encoding: chunked\x0c\r\n", "5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case(
            "te name with space before colon",
            post("Transfer-Encoding : chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Refused(400),
        ),
        case("te folded", post("Transfer-Encoding:\r\n chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("te empty", post("Transfer-Encoding: \r\n", "hello"), Refused(400)),
        case("te in capitals", post("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"), POST_HELLO),
        case(
            "te with surrounding whitespace",
            post("Transfer-Encoding: \t chunked \t\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            POST_HELLO,
        ),
        case(
            "http/1.0 with te",
            "POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Refused(400),
        ),
        // Chunk framing.
        case("chunk size overflows", chunked("fffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("chunk size with junk", chunked("5x\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("chunk size negative", chunked("-5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("chunk size with leading space", chunked(" 5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("chunk size with 0x", chunked("0x5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("chunk size empty", chunked("\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("chunk size line ends in bare lf", chunked("5\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("chunk data longer than its size", chunked("5\r\nhelloXX\r\n0\r\n\r\n"), Refused(400)),
        case("chunk data without crlf", chunked("5\r\nhello0\r\n\r\n"), Refused(400)),
        case("chunk extension with bare cr", chunked("5;a=b\rc\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        case("chunk extensions", chunked("5;name=value;x\r\nhello\r\n0\r\n\r\n"), POST_HELLO),
        case("chunk size in capitals", chunked("2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"), POST_HELLO),
        case("chunked with trailer", chunked("5\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\n"), POST_HELLO),
        // Line endings, whitespace and bytes a field may not hold.
        case("bare lf line endings", "GET / HTTP/1.1\nHost: app.test\n\n", Refused(400)),
        case("bare cr in a value", get_with("X-A: a\rb\r\n"), Refused(400)),
        case("bare lf ending one field", "GET / HTTP/1.1\r\nHost: app.test\nX-A: b\r\n\r\n", Refused(400)),
        case("nul in a value", get_with("X-A: a\0b\r\n"), Refused(400)),
        case("nul in a name", get_with("X-\0A: b\r\n"), Refused(400)),
        case("control byte in a value", get_with("X-A: a\x01b\r\n"), Refused(400)),
        case("del in a value", get_with("X-A: a\x7fb\r\n"), Refused(400)),
        case("space inside a name", get_with("X A: b\r\n"), Refused(400)),
        case("empty name", get_with(": b\r\n"), Refused(400)),
        case("space before colon", get_with("X-A : b\r\n"), Refused(400)),
        case("tab before colon", get_with("X-A\t: b\r\n"), Refused(400)),
        case("obs-fold", get_with("X-A: a\r\n b\r\n"), Refused(400)),
        case("field line without colon", get_with("X-A b\r\n"), Refused(400)),
        case("leading whitespace on the first field", "GET / HTTP/1.1\r\n Host: app.test\r\n\r\n", Refused(400)),
        // Request lines.
        case("invalid method", "G(T / HTTP/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("two spaces after the method", "GET  / HTTP/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("tab as separator", "GET\t/ HTTP/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("space in the target", "GET /a b HTTP/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("control byte in the target", "GET /a\x01b HTTP/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("non-ascii in the target", "GET /caf\u{e9} HTTP/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("target not a path", "GET foo HTTP/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("fragment in the target", "GET /a#b HTTP/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("asterisk with get", "GET * HTTP/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("http/0.9", "GET /\r\n\r\n", Refused(400)),
        case("lowercase version", "GET / http/1.1\r\nHost: app.test\r\n\r\n", Refused(400)),
        // Only HTTP/1.0 and 1.1 are spoken on this port.
        case("version 1.2", "GET / HTTP/1.2\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("version 2.0", "GET / HTTP/2.0\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("version with junk", "GET / HTTP/1.1x\r\nHost: app.test\r\n\r\n", Refused(400)),
        case("missing host", "GET / HTTP/1.1\r\n\r\n", Refused(400)),
        case("two hosts", get_with("Host: other.test\r\n"), Refused(400)),
        case("host with a space", "GET / HTTP/1.1\r\nHost: app .test\r\n\r\n", Refused(400)),
        case("host with userinfo", "GET / HTTP/1.1\r\nHost: user@app.test\r\n\r\n", Refused(400)),
        // Limits: 60 KiB of head, 16 KiB of request line, 100 fields.
        case("head too large", get_with(&format!("X-Big: {}\r\n", "b".repeat(61 * 1024))), Refused(431)),
        case(
            "request line too long",
            format!("GET /{} HTTP/1.1\r\nHost: app.test\r\n\r\n", "a".repeat(17 * 1024)),
            Refused(414),
        ),
        case("too many fields", get_with(&(0..101).map(|i| format!("X-{i}: v\r\n")).collect::<String>()), Refused(431)),
        // Accepted as they are, and forwarded so.
        case("plain get", get_with(""), GET_OK),
        case("obs-text in a value", get_with("X-A: caf\u{e9}\r\n"), GET_OK),
        case("empty value", get_with("X-A:\r\n"), GET_OK),
        case(
            "absolute form",
            "GET http://app.test/p?q=1 HTTP/1.1\r\nHost: app.test\r\n\r\n",
            Forwarded { method: "GET", target: "/p?q=1", body: b"" },
        ),
        case(
            "body on a get",
            get_with("Content-Length: 5\r\n") + "hello",
            Forwarded { method: "GET", target: "/", body: b"hello" },
        ),
    ]
}

/// The one backend and a gateway in front of it (`app.test` → `app.local`), no retries so
/// that a request is never sent twice.
fn start(driver: Driver) -> (Gateway, SocketAddr, Backend) {
    let backend = Backend::start("app");
    let port = free_port();
    let http = "  - retries:\n      attempts: 0\n    route:\n    - destination:\n        host: app.local\n";
    let config = app_behind_rule(port, &[backend.port()], http, "    loadBalancer:\n      simple: ROUND_ROBIN\n");
    let gw = gateway!(driver).file("gw.yaml", &config).workers(1).start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap(), backend)
}

/// Sends `c`, checks the client's side, and returns what reached the backend meanwhile.
fn run_case(addr: SocketAddr, backend: &Backend, c: &Case) -> Vec<Received> {
    let before = backend.count();
    let mut conn = Conn::open(addr);
    conn.send(&c.raw);
    let resp = conn.try_read_response(false);
    match c.expect {
        Refused(status) => {
            let resp = resp.unwrap_or_else(|| panic!("{}: no answer", c.name));
            assert_eq!(resp.status, status, "{}: status", c.name);
            // The connection is closed after the refusal: nothing more is read from it.
            let stream = conn.reader.get_mut();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut rest = Vec::new();
            let closed = stream.read_to_end(&mut rest).is_ok();
            assert!(closed && rest.is_empty(), "{}: left open or more sent: {rest:?}", c.name);
        }
        Forwarded { .. } => {
            let resp = resp.unwrap_or_else(|| panic!("{}: no answer", c.name));
            assert_eq!(resp.status, 200, "{}: status", c.name);
        }
    }
    // A request on a second connection: answered by the upstream as itself.
    let mut next = Conn::open(addr);
    let resp = next.get("/follow-up", "app.test");
    assert_eq!((resp.status, resp.header("x-backend")), (200, Some("app")), "{}: follow-up", c.name);
    let received = backend.requests().split_off(before);
    let (follow_up, received) = received.split_last().unwrap_or_else(|| panic!("{}: follow-up lost", c.name));
    assert_eq!(follow_up.target, "/follow-up", "{}: the follow-up answered something else", c.name);
    received.to_vec()
}

/// The request as the upstream got it: one framing, and the expected line and body.
fn assert_forwarded(c: &Case, got: &[Received], method: &str, target: &str, body: &[u8]) {
    assert_eq!(got.len(), 1, "{}: upstream got {} requests", c.name, got.len());
    let r = &got[0];
    assert_eq!((r.method.as_str(), r.target.as_str(), r.body.as_slice()), (method, target, body), "{}", c.name);
    let te = r.header_all("transfer-encoding");
    let cl = r.header_all("content-length");
    assert!(te.is_empty() || cl.is_empty(), "{}: both framings upstream: {:?}", c.name, r.headers);
    assert!(te.len() <= 1 && cl.len() <= 1, "{}: repeated framing upstream: {:?}", c.name, r.headers);
    if let Some(te) = te.first() {
        assert_eq!(*te, "chunked", "{}", c.name);
    }
    if let Some(cl) = cl.first() {
        assert_eq!(*cl, body.len().to_string(), "{}: content-length upstream", c.name);
    }
    assert!(!body.is_empty() || te.is_empty(), "{}", c.name);
}

both_drivers! {
    fn hostile_requests_are_refused_or_forwarded_unambiguously(driver) {
        let (_gw, addr, backend) = start(driver);
        let cases = cases();
        assert!(cases.len() >= 60, "{} cases", cases.len());
        // Every case runs; the failures are listed together.
        let failed: Vec<&str> = cases
            .iter()
            .filter(|c| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let got = run_case(addr, &backend, c);
                    match c.expect {
                        Refused(_) => assert!(got.is_empty(), "{}: reached the upstream: {got:?}", c.name),
                        Forwarded { method, target, body } => assert_forwarded(c, &got, method, target, body),
                    }
                }))
                .is_err()
            })
            .map(|c| c.name)
            .collect();
        assert!(failed.is_empty(), "{} of {} failed: {failed:?}", failed.len(), cases.len());
    }
}

both_drivers! {
    fn nothing_after_connection_close_is_read(driver) {
        let (_gw, addr, backend) = start(driver);
        let mut c = Conn::open(addr);
        c.send(b"GET /first HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\nGET /second HTTP/1.1\r\nHost: app.test\r\n\r\n");
        assert_eq!(c.read_response(false).status, 200);
        assert!(c.try_read_response(false).is_none(), "the connection closes after the first");
        let targets: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
        assert_eq!(targets, ["/first"]);
    }

    fn a_body_is_never_taken_for_a_request(driver) {
        let (_gw, addr, backend) = start(driver);
        let inner = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";
        let mut c = Conn::open(addr);
        c.send(format!("POST /cl HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n{inner}", inner.len()).as_bytes());
        assert_eq!(c.read_response(false).status, 200);
        c.send(format!("POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len()).as_bytes());
        assert_eq!(c.read_response(false).status, 200);
        assert_eq!(c.get("/after", "app.test").status, 200);
        let got = backend.requests();
        let targets: Vec<&str> = got.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["/cl", "/chunked", "/after"]);
        assert!(got[..2].iter().all(|r| r.body == inner.as_bytes()));
    }

    fn a_client_that_aborts_mid_body_leaves_no_dirty_upstream_connection(driver) {
        let (_gw, addr, backend) = start(driver);
        for _ in 0..3 {
            let mut c = Conn::open(addr);
            c.send(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nonly ten b");
            std::thread::sleep(Duration::from_millis(100));
            drop(c);
            // Were the upstream connection pooled, this request would be read as the rest of
            // the aborted body.
            let resp = Conn::open(addr).get("/follow-up", "app.test");
            assert_eq!((resp.status, resp.header("x-backend")), (200, Some("app")));
        }
        let targets: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
        assert_eq!(targets, ["/follow-up"; 3]);
    }
}
