//! Broken and hostile upstreams, byte for byte: ambiguous framing, invalid status lines,
//! oversized heads, HTTP/0.9 bodies, bytes past the framed response, an unasked 101, a body cut
//! short, an answer before the request body was read. For each, what the client gets, and that
//! the upstream connection it came on is never used again.

use strait_test_support::{self as support, both_drivers, gateway};

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::client::Conn;
use support::config::app_behind_rule;
use support::{free_port, Driver, Gateway};

/// A backend that answers `GET /NAME` with the raw bytes of script NAME (then closes when the
/// script says so) and `/ok` with a plain 200. It remembers which connections sent a script,
/// and flags any request that arrives on one of those afterwards: a reuse of a tainted
/// connection.
struct Scripted {
    addr: SocketAddr,
    reused_after_fault: Arc<Mutex<Vec<String>>>,
}

/// What the backend sends for one path, and whether it closes the connection after.
struct Script {
    name: &'static str,
    bytes: Vec<u8>,
    close: bool,
}

impl Scripted {
    fn start(scripts: Vec<Script>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reused: Arc<Mutex<Vec<String>>> = Arc::default();
        let scripts = Arc::new(scripts);
        let flagged = reused.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (scripts, flagged) = (scripts.clone(), flagged.clone());
                std::thread::spawn(move || serve(stream, &scripts, &flagged));
            }
        });
        Scripted { addr, reused_after_fault: reused }
    }
}

fn serve(stream: TcpStream, scripts: &[Script], flagged: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut tainted_by: Option<&str> = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").trim_start_matches('/').to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        if let Some(fault) = tainted_by {
            flagged.lock().unwrap().push(format!("{path} after {fault}"));
        }
        let Some(script) = scripts.iter().find(|s| s.name == path) else {
            let mut body = vec![0; length];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            continue;
        };
        // The script is the answer, whatever of the request body is still unread.
        let _ = w.write_all(&script.bytes);
        if script.close {
            return;
        }
        tainted_by = Some(script.name);
    }
}

/// What the client must see.
enum Client {
    /// A local answer with this status.
    Status(u16),
    /// The response head with this status, then a body cut short by a closed connection: never
    /// the whole declared body.
    Cut(u16),
    /// Exactly this response body with this status.
    Relayed(u16, &'static str),
}

fn script(name: &'static str, bytes: impl AsRef<[u8]>, close: bool) -> Script {
    Script { name, bytes: bytes.as_ref().to_vec(), close }
}

fn cases() -> Vec<(Script, Client)> {
    use Client::{Cut, Relayed, Status};
    let ok_head = |extra: &str| format!("HTTP/1.1 200 OK\r\n{extra}\r\n");
    vec![
        (
            script(
                "cl-and-te",
                ok_head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n",
                false,
            ),
            Status(502),
        ),
        (script("differing-cl", ok_head("Content-Length: 5\r\nContent-Length: 6\r\n") + "hello!", false), Status(502)),
        (script("bad-cl", ok_head("Content-Length: five\r\n") + "hello", false), Status(502)),
        (
            script("te-not-chunked", ok_head("Transfer-Encoding: gzip\r\nContent-Length: 5\r\n") + "hello", false),
            Status(502),
        ),
        (script("status-999", "HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n", false), Status(502)),
        (script("status-99", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", false), Status(502)),
        (script("status-600", "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", false), Status(502)),
        (script("status-letters", "HTTP/1.1 abc Odd\r\nContent-Length: 0\r\n\r\n", false), Status(502)),
        (script("version-2", "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", false), Status(502)),
        (script("nul-in-field", ok_head("X-A: a\0b\r\nContent-Length: 0\r\n"), false), Status(502)),
        (script("obs-fold", ok_head("X-A: a\r\n b\r\nContent-Length: 0\r\n"), false), Status(502)),
        (
            script("huge-head", ok_head(&format!("X-Big: {}\r\nContent-Length: 0\r\n", "b".repeat(100 * 1024))), false),
            Status(502),
        ),
        (script("http09", "hello, no status line at all\r\n\r\n", true), Status(502)),
        (
            script(
                "unasked-101",
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                false,
            ),
            Status(502),
        ),
        (script("bad-chunk", ok_head("Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\nzz\r\n", false), Cut(200)),
        (script("cl-cut-short", ok_head("Content-Length: 100\r\n") + "only ten b", true), Cut(200)),
        (script("chunked-cut-short", ok_head("Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n", true), Cut(200)),
        (
            script(
                "bytes-past-the-end",
                ok_head("Content-Length: 2\r\n") + "hiHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled",
                false,
            ),
            Relayed(200, "hi"),
        ),
        (script("until-close", "HTTP/1.1 200 OK\r\n\r\nall of it", true), Relayed(200, "all of it")),
    ]
}

fn start(driver: Driver, scripts: Vec<Script>) -> (Gateway, SocketAddr, Scripted) {
    let backend = Scripted::start(scripts);
    let port = free_port();
    let http = "  - retries:\n      attempts: 0\n    route:\n    - destination:\n        host: app.local\n";
    let config = app_behind_rule(port, &[backend.addr.port()], http, "    loadBalancer:\n      simple: ROUND_ROBIN\n");
    let gw = gateway!(driver).file("gw.yaml", &config).workers(1).start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap(), backend)
}

/// Reads what is left on `c` until the gateway closes it.
fn rest_until_close(c: &mut Conn) -> Vec<u8> {
    let mut rest = Vec::new();
    c.reader.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.reader.read_to_end(&mut rest).expect("the gateway closes the connection");
    rest
}

both_drivers! {
    fn broken_upstream_responses_never_reach_the_client_as_whole_or_reuse_the_connection(driver) {
        let cases = cases();
        let names: Vec<&str> = cases.iter().map(|(s, _)| s.name).collect();
        let (scripts, expected): (Vec<Script>, Vec<Client>) = cases.into_iter().unzip();
        let (_gw, addr, backend) = start(driver, scripts);
        for (name, client) in names.iter().zip(&expected) {
            let mut c = Conn::open(addr);
            c.send(format!("POST /{name} HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello").as_bytes());
            match client {
                Client::Status(status) => {
                    let resp = c.try_read_response(false).unwrap_or_else(|| panic!("{name}: no answer"));
                    assert_eq!(resp.status, *status, "{name}");
                }
                Client::Relayed(status, body) => {
                    let resp = c.try_read_response(false).unwrap_or_else(|| panic!("{name}: no answer"));
                    assert_eq!((resp.status, resp.body_text().as_str()), (*status, *body), "{name}");
                }
                Client::Cut(status) => {
                    // The head went out; the body must not end as if it were whole.
                    let mut line = String::new();
                    c.reader.read_line(&mut line).unwrap();
                    assert!(line.starts_with(&format!("HTTP/1.1 {status} ")), "{name}: {line:?}");
                    let rest = String::from_utf8_lossy(&rest_until_close(&mut c)).into_owned();
                    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{name}: head cut: {rest:?}"));
                    assert!(!body.ends_with("0\r\n\r\n"), "{name}: a cut chunked body ended cleanly: {rest:?}");
                    if let Some(len) = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned)) {
                        assert!(body.len() < len.parse::<usize>().unwrap(), "{name}: whole body relayed: {rest:?}");
                    }
                }
            }
            // Requests that follow, on this connection if it stayed open and on a new one,
            // reach the upstream on clean connections only.
            for _ in 0..3 {
                let resp = Conn::open(addr).get("/ok", "app.test");
                assert_eq!((resp.status, resp.body_text().as_str()), (200, "ok"), "{name}: follow-up");
            }
        }
        let reused = backend.reused_after_fault.lock().unwrap().clone();
        assert!(reused.is_empty(), "tainted upstream connections reused: {reused:?}");
        // Every case was told apart by its own script.
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
    }
}

both_drivers! {
    fn an_answer_before_the_whole_body_is_relayed_and_both_connections_close(driver) {
        let early = script("early", "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig", false);
        let (_gw, addr, backend) = start(driver, vec![early]);
        for _ in 0..2 {
            let mut c = Conn::open(addr);
            // A megabyte announced, a kilobyte sent: the upstream refuses it at once.
            c.send(format!("POST /early HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000\r\n\r\n{}", "x".repeat(1024)).as_bytes());
            let resp = c.try_read_response(false).expect("the early answer is relayed");
            assert_eq!((resp.status, resp.body_text().as_str()), (413, "big"));
            // The client connection closes, its body unread, and says so; what the client still
            // sends is read and dropped, not met with a reset.
            assert_eq!(resp.header("connection"), Some("close"));
            let rest = c.keep_sending_then_finish(&[b'x'; 64 * 1024], 3).expect("the close lingers");
            assert!(rest.is_empty(), "nothing after the answer");
            let resp = Conn::open(addr).get("/ok", "app.test");
            assert_eq!((resp.status, resp.body_text().as_str()), (200, "ok"));
        }
        let reused = backend.reused_after_fault.lock().unwrap().clone();
        assert!(reused.is_empty(), "the upstream connection that answered early was reused: {reused:?}");
    }
}
