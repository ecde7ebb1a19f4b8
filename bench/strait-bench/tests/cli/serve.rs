//! `strait-bench serve` spoken to over raw sockets, and `strait-bench tcp` against it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use strait_test_support::closed_port;
use strait_test_support::tls::{Ca, TlsClient};

use super::{run_json, run_json_failing, Served};

/// One HTTP answer as read off the wire.
struct Answer {
    status: u16,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads answers off a connection, keeping bytes that came early (the next pipelined answer).
struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl Client<TcpStream> {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client { stream, buf: Vec::new() }
    }
}

impl<S: Read + Write> Client<S> {
    fn send(&mut self, raw: &str) {
        self.stream.write_all(raw.as_bytes()).unwrap();
        self.stream.flush().unwrap();
    }

    /// The next answer's head, its body left unread.
    fn head(&mut self) -> Answer {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = resp.parse(&self.buf).unwrap() {
                let status = resp.code.unwrap();
                let headers = resp
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                self.buf.drain(..len);
                return Answer { status, headers, body: Vec::new() };
            }
            assert!(self.fill() > 0, "closed before an answer");
        }
    }

    /// The next answer, framed by its Content-Length (the backend always sends one).
    fn answer(&mut self) -> Answer {
        let head = self.head();
        let length: usize = head.header("content-length").expect("a Content-Length").parse().unwrap();
        while self.buf.len() < length {
            assert!(self.fill() > 0, "closed inside a body");
        }
        Answer { body: self.buf.drain(..length).collect(), ..head }
    }

    /// Whether the backend closed the connection (and sent nothing more).
    fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0; 16 * 1024];
        let n = self.stream.read(&mut chunk).unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }
}

const GET: &str = "GET / HTTP/1.1\r\nHost: backend\r\n\r\n";

#[test]
fn http_answers_the_fixed_response() {
    let served = Served::start(&["http", "--size", "100"]);
    let mut c = Client::connect(served.addr);
    for _ in 0..2 {
        c.send(GET);
        let a = c.answer();
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-length"), Some("100"));
        assert_eq!(a.body, "hello".repeat(20).as_bytes());
    }
    // HEAD: the same head and no body, so the next answer follows it at once.
    c.send("HEAD / HTTP/1.1\r\n\r\n");
    let a = c.head();
    assert_eq!((a.status, a.header("content-length")), (200, Some("100")));
    c.send(GET);
    assert_eq!(c.answer().body.len(), 100);
}

#[test]
fn large_bodies_both_ways() {
    // Past the size the backend copies into its write batch: written from the one shared copy.
    let served = Served::start(&["http", "--size", "3000000"]);
    let mut c = Client::connect(served.addr);
    c.send(&GET.repeat(2));
    for _ in 0..2 {
        let a = c.answer();
        assert_eq!(a.body.len(), 3_000_000);
        assert!(a.body.chunks(5).all(|w| w == &b"hello"[..w.len()]));
    }

    let served = Served::start(&["http", "--echo"]);
    let mut c = Client::connect(served.addr);
    let body: String = (0..1_000_000u32).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let request = format!("PUT / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    // The echo streams back while the body still comes: write and read at once.
    let mut writer = c.stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || writer.write_all(request.as_bytes()).unwrap());
    let a = c.answer();
    sending.join().unwrap();
    assert!(a.body == body.as_bytes(), "{} bytes back", a.body.len());
}

#[test]
fn pipelined_requests_get_one_answer_each() {
    let served = Served::start(&["http", "--size", "7"]);
    let mut c = Client::connect(served.addr);
    c.send(&GET.repeat(3));
    for _ in 0..3 {
        let a = c.answer();
        assert_eq!((a.status, &a.body[..]), (200, &b"hellohe"[..]));
    }
    c.stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let extra = c.stream.read(&mut [0; 64]);
    assert!(extra.is_err(), "a fourth answer: {extra:?}");
}

#[test]
fn echo_sends_bodies_back_whatever_their_framing() {
    let served = Served::start(&["http", "--echo"]);
    let mut c = Client::connect(served.addr);
    c.send("POST /a HTTP/1.1\r\nContent-Length: 9\r\n\r\nping pong");
    let a = c.answer();
    assert_eq!((a.status, &a.body[..]), (200, &b"ping pong"[..]));
    // Chunked, in pieces that split the framing.
    c.send("POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    std::thread::sleep(Duration::from_millis(50));
    c.send("lo\r\n6\r\n world\r");
    std::thread::sleep(Duration::from_millis(50));
    c.send("\n0\r\n\r\n");
    let a = c.answer();
    assert_eq!(a.header("content-length"), Some("11"));
    assert_eq!(a.body, b"hello world");
    c.send(GET);
    assert_eq!(c.answer().body, b"");
}

#[test]
fn connection_close_and_http10_close_after_the_answer() {
    let served = Served::start(&["http"]);
    let mut c = Client::connect(served.addr);
    c.send("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    let a = c.answer();
    assert_eq!((a.body.as_slice(), a.header("connection")), (&b"hello"[..], Some("close")));
    assert!(c.closed());

    let mut c = Client::connect(served.addr);
    c.send("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(c.answer().status, 200);
    assert!(c.closed());

    let mut c = Client::connect(served.addr);
    c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.answer().header("connection"), Some("keep-alive"));
    c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.answer().status, 200);
}

#[test]
fn a_bad_request_gets_400_and_the_connection_closes() {
    let served = Served::start(&["http"]);
    let mut c = Client::connect(served.addr);
    c.send("GET / HTTP/1.1\r\nContent-Length: nine\r\n\r\n");
    assert_eq!(c.answer().status, 400);
    assert!(c.closed());
}

#[test]
fn stall_once_delays_exactly_the_nth_request() {
    let served = Served::start(&["http", "--stall-once", "3:700ms"]);
    let mut c = Client::connect(served.addr);
    let took: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            c.send(GET);
            assert_eq!(c.answer().status, 200);
            start.elapsed()
        })
        .collect();
    assert!(took[2] >= Duration::from_millis(700), "{took:?}");
    for (i, t) in took.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert!(*t < Duration::from_millis(350), "request {}: {took:?}", i + 1);
    }
}

#[test]
fn http_over_tls() {
    let ca = Ca::new("strait-bench test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = ca.server(&["localhost"]).write(dir.path(), "server");
    let served = Served::start(&[
        "http",
        "--size",
        "5",
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);

    let stream = TlsClient::new(&ca).connect(served.addr, "localhost").unwrap();
    let mut c = Client { stream, buf: Vec::new() };
    for _ in 0..2 {
        c.send(GET);
        let a = c.answer();
        assert_eq!((a.status, &a.body[..]), (200, &b"hello"[..]));
    }
}

#[test]
fn serve_echo_answers_until_the_client_half_closes() {
    let served = Served::start(&["echo"]);
    let mut s = TcpStream::connect(served.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sent: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let writer = {
        let (mut s, sent) = (s.try_clone().unwrap(), sent.clone());
        std::thread::spawn(move || {
            s.write_all(&sent).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == sent, "{} bytes back of {}", back.len(), sent.len());
}

#[test]
fn tcp_echo_measures_round_trips() {
    let served = Served::start(&["echo"]);
    let r = run_json(&["tcp", &served.addr.to_string(), "--mode", "echo", "-c", "4", "-d", "1s"]);
    assert_eq!(r["mode"], "tcp-echo");
    assert!(r["operations"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["bytes"].as_u64().unwrap(), r["operations"].as_u64().unwrap() * 64, "{r}");
    assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
    assert!(r["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn tcp_throughput_into_a_sink() {
    let served = Served::start(&["sink"]);
    let r = run_json(&["tcp", &served.addr.to_string(), "--mode", "throughput", "-c", "2", "-d", "1s"]);
    assert_eq!(r["mode"], "tcp-throughput");
    assert!(r["bytes"].as_u64().unwrap() > 0, "{r}");
    assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
    assert!(r["latency_us"].is_null(), "{r}");
}

#[test]
fn tcp_against_a_closed_port_ends_on_time_with_connect_errors() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let start = Instant::now();
    let (r, stderr) = run_json_failing(&["tcp", &addr, "--mode", "echo", "-c", "2", "-d", "1s"]);
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert_eq!(r["operations"], 0, "{r}");
    assert!(r["errors"]["connect"].as_u64().unwrap() > 0, "{r}");
    assert!(stderr.contains("no operation succeeded"), "{stderr}");
}
