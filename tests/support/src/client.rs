//! A raw-bytes HTTP/1.1 client that reads exactly one framed response at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub version: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header_all(&self.headers, name).into_iter().next()
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        super::header_all(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection; responses are read in order (pipelining works by writing several
/// requests before reading).
pub struct Conn {
    pub reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Self {
        Self::try_open(addr).expect("connect")
    }

    /// `None` when the connection is refused.
    pub fn try_open(addr: SocketAddr) -> Option<Self> {
        let s = TcpStream::connect(addr).ok()?;
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Some(Conn { reader: BufReader::new(s) })
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.reader.get_mut().write_all(raw).unwrap();
    }

    /// Sends `part` `times` more times, each after a pause, then ends the request side and
    /// reads to the end of stream: what followed the last answer read, or the error of a
    /// gateway that reset the connection rather than take what was sent.
    pub fn keep_sending_then_finish(&mut self, part: &[u8], times: usize) -> std::io::Result<Vec<u8>> {
        for _ in 0..times {
            std::thread::sleep(Duration::from_millis(100));
            self.reader.get_mut().write_all(part)?;
        }
        self.reader.get_mut().shutdown(std::net::Shutdown::Write)?;
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        Ok(rest)
    }

    /// Everything the gateway sends until it closes, unframed: for an answer cut short.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        rest
    }

    pub fn get(&mut self, path: &str, host: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        self.read_response(false)
    }

    /// Reads one response; `head` = the request was HEAD (no body follows).
    pub fn read_response(&mut self, head: bool) -> Response {
        self.try_read_response(head).expect("a response")
    }

    /// `None` when the connection closed before a status line.
    pub fn try_read_response(&mut self, head: bool) -> Option<Response> {
        let r = &mut self.reader;
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let version = parts.next()?;
        let version = if version == "HTTP/1.0" { 0 } else { 1 };
        let status: u16 = parts.next()?.parse().ok()?;
        let reason = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line).ok()?;
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':')?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response { status, reason, version, headers, body: Vec::new() };
        if head || status < 200 || status == 204 || status == 304 {
            return Some(resp);
        }
        if resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                r.read_line(&mut line).ok()?;
                let size = usize::from_str_radix(line.trim_end().split(';').next()?, 16).ok()?;
                if size == 0 {
                    // trailers
                    loop {
                        line.clear();
                        r.read_line(&mut line).ok()?;
                        if line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = resp.body.len();
                resp.body.resize(start + size, 0);
                r.read_exact(&mut resp.body[start..]).ok()?;
                line.clear();
                r.read_line(&mut line).ok()?;
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().ok()?;
            resp.body.resize(len, 0);
            r.read_exact(&mut resp.body).ok()?;
        } else {
            r.read_to_end(&mut resp.body).ok()?;
        }
        Some(resp)
    }
}

/// One request on a fresh connection.
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let mut c = Conn::open(addr);
    c.send(raw.as_bytes());
    c.read_response(raw.starts_with("HEAD "))
}

/// One request on a fresh connection; `None` when the connection is refused, or fails or
/// closes before an answer.
pub fn try_request(addr: SocketAddr, raw: &str) -> Option<Response> {
    let mut c = Conn::try_open(addr)?;
    c.reader.get_mut().write_all(raw.as_bytes()).ok()?;
    c.try_read_response(raw.starts_with("HEAD "))
}

/// `GET path` with `Host: host` on a fresh connection.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
}

/// The statuses of `n` such GETs, one after another (a rate limit's admitted and refused).
pub fn statuses(addr: SocketAddr, host: &str, path: &str, n: usize) -> Vec<u16> {
    (0..n).map(|_| get(addr, host, path).status).collect()
}

/// How many of `statuses` are 200.
pub fn admitted(statuses: &[u16]) -> usize {
    statuses.iter().filter(|&&s| s == 200).count()
}
