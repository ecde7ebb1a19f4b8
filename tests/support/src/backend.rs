//! A real HTTP/1.1 backend on 127.0.0.1:0 for the tests, one thread per connection.
//!
//! It answers by path: `/status/N` (status N), `/delay/MS` (answers after MS ms), `/size/N`
//! (N body bytes, Content-Length), `/chunked/N` (N body bytes, chunked), `/upload` (drains the
//! request body and answers its length and checksum), `/dated` (200 with [`DATE`] as its `date`),
//! `/grpc-trailers/N` (a gRPC answer: three messages, then `grpc-status: N` in trailers),
//! anything else: 200 with the backend's
//! name. Every response carries `x-backend: NAME`; every request is recorded. A [`Mode`] other
//! than `Normal` overrides all of this for every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header_all(&self.headers, name).into_iter().next()
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        super::header_all(&self.headers, name)
    }
}

/// How a backend answers every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// By path, as the module says.
    Normal,
    /// Always this status, with the backend's name as body.
    Status(u16),
    /// Waits this long, then answers 200 with its name.
    Stall(Duration),
    /// A gRPC trailers-only answer: 200, `content-type: application/grpc`, `grpc-status: N`.
    Grpc(u8),
    /// Answers 200 at once and sends a chunked request body back as it reads it, each chunk
    /// as it came: a server that streams replies while it reads.
    Echo,
    /// The first connection closes, unanswered, once this many bytes of the request body (as
    /// framed) have arrived; the others are served as `Normal`.
    CutFirst(usize),
}

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Self::with_mode(name, Mode::Normal)
    }

    pub fn with_mode(name: &str, mode: Mode) -> Backend {
        Self::at(name, "127.0.0.1:0".parse().unwrap(), mode)
    }

    /// A backend on `addr` (e.g. another loopback address, on a port a first backend holds).
    pub fn at(name: &str, addr: SocketAddr, mode: Mode) -> Backend {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let b = Backend {
            name: name.to_string(),
            addr,
            connections: Arc::default(),
            received: Arc::default(),
            stop: Arc::default(),
        };
        let (name, conns, rec, stop) = (b.name.clone(), b.connections.clone(), b.received.clone(), b.stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let first = conns.fetch_add(1, Ordering::Relaxed) == 0;
                let mode = match mode {
                    Mode::CutFirst(_) if !first => Mode::Normal,
                    mode => mode,
                };
                let (name, rec) = (name.clone(), rec.clone());
                std::thread::spawn(move || serve(stream, &name, &rec, mode));
            }
        });
        b
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.requests().pop().expect("the backend received a request")
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A request line and header fields, leniently (the tests' own requests and the gateway's);
/// `None` at the end of the stream.
pub fn read_head(r: &mut impl BufRead) -> Option<Received> {
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(Received { method, target, headers, body: Vec::new() })
}

/// The `date` a `/dated` answer carries.
pub const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// Bodies above this are counted, not kept.
const KEEP_BODY: usize = 1 << 20;

fn serve(stream: TcpStream, name: &str, rec: &Mutex<Vec<Received>>, mode: Mode) {
    stream.set_nodelay(true).unwrap();
    let mut r = BufReader::with_capacity(1 << 16, stream.try_clone().unwrap());
    let mut w = stream;
    loop {
        let Some(req) = read_head(&mut r) else {
            return;
        };
        if let Mode::CutFirst(n) = mode {
            let mut body = vec![0; n];
            if r.read_exact(&mut body).is_ok() {
                rec.lock().unwrap().push(Received { body, ..req });
            }
            return;
        }
        let echo = match mode {
            Mode::Echo => {
                let head = format!("HTTP/1.1 200 OK\r\nx-backend: {name}\r\ntransfer-encoding: chunked\r\n\r\n");
                if w.write_all(head.as_bytes()).is_err() {
                    return;
                }
                Some(&mut w)
            }
            _ => None,
        };
        let (body, len, sum) = match read_body(&mut r, &req, echo) {
            Some(b) => b,
            None => return,
        };
        let close = req.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let path = req.target.split('?').next().unwrap_or("").to_string();
        let is_head = req.method == "HEAD";
        rec.lock().unwrap().push(Received { body, ..req });
        let conn = if close { "connection: close\r\n" } else { "" };
        if mode == Mode::Echo {
            continue;
        }
        if let Mode::Grpc(code) = mode {
            let ok = write!(
                w,
                "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-type: application/grpc\r\ngrpc-status: {code}\r\ncontent-length: 0\r\n{conn}\r\n"
            );
            if ok.is_err() || close {
                return;
            }
            continue;
        }
        let fixed = match mode {
            Mode::Normal | Mode::Grpc(_) | Mode::Echo | Mode::CutFirst(_) => None,
            Mode::Status(code) => Some(code),
            Mode::Stall(wait) => {
                std::thread::sleep(wait);
                Some(200)
            }
        };
        let ok = if let Some(code) = fixed.or_else(|| path.strip_prefix("/status/").map(|c| c.parse().unwrap_or(200))) {
            // A 204 or 304 has no body (RFC 9110 15.3.5, 15.4.5): bytes after its head would be
            // read as the start of the connection's next answer.
            let body = if matches!(code, 204 | 304) { "" } else { name };
            let length = if body.is_empty() { String::new() } else { format!("content-length: {}\r\n", body.len()) };
            write!(w, "HTTP/1.1 {code} X\r\nx-backend: {name}\r\n{length}{conn}\r\n{body}")
        } else if let Some(ms) = path.strip_prefix("/delay/") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            write!(w, "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: {}\r\n{conn}\r\n{}", name.len(), name)
        } else if let Some(n) = path.strip_prefix("/size/") {
            let n: usize = n.parse().unwrap_or(0);
            write!(w, "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: {n}\r\n{conn}\r\n").and_then(|_| {
                if is_head {
                    Ok(())
                } else {
                    write_pattern(&mut w, n, |w, b| w.write_all(b))
                }
            })
        } else if let Some(n) = path.strip_prefix("/chunked/") {
            let n: usize = n.parse().unwrap_or(0);
            write!(w, "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ntransfer-encoding: chunked\r\n{conn}\r\n").and_then(
                |_| {
                    write_pattern(&mut w, n, |w, b| {
                        write!(w, "{:x}\r\n", b.len())?;
                        w.write_all(b)?;
                        w.write_all(b"\r\n")
                    })?;
                    w.write_all(b"0\r\n\r\n")
                },
            )
        } else if let Some(code) = path.strip_prefix("/grpc-trailers/") {
            // A gRPC answer whose status comes after its body, in chunked trailers; its three
            // messages (2, 0 and 3 bytes) in chunks that cut them and their prefixes.
            write!(
                w,
                "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n{conn}\r\n\
                 3\r\n\0\0\0\r\n9\r\n\0\x02ab\0\0\0\0\0\r\n8\r\n\0\0\0\0\x03xyz\r\n0\r\ngrpc-status: {code}\r\n\r\n"
            )
        } else if path == "/dated" {
            write!(w, "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ndate: {DATE}\r\ncontent-length: 0\r\n{conn}\r\n")
        } else if path == "/upload" {
            let body = format!("{len} {sum}");
            write!(w, "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: {}\r\n{conn}\r\n{body}", body.len())
        } else {
            write!(w, "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: {}\r\n{conn}\r\n{}", name.len(), name)
        };
        if ok.is_err() || close {
            return;
        }
        // `/close-idle/MS`: close the kept-alive connection MS later, as a backend's idle
        // timeout does. `/drop-next`: close it when the next request arrives, unanswered.
        if let Some(ms) = path.strip_prefix("/close-idle/") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            return;
        }
        if path == "/drop-next" {
            let _ = r.read_line(&mut String::new());
            return;
        }
    }
}

/// The deterministic body the backend sends: byte i is `i % 251` (so truncation or reordering
/// shows in the checksum).
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The checksum `/upload` answers and tests compute: a wrapping sum of byte × (i % 7 + 1).
pub fn checksum(sum: &mut u64, offset: usize, bytes: &[u8]) {
    for (k, b) in bytes.iter().enumerate() {
        *sum = sum.wrapping_add(u64::from(*b) * ((offset + k) % 7 + 1) as u64);
    }
}

fn write_pattern(
    w: &mut TcpStream,
    n: usize,
    mut put: impl FnMut(&mut TcpStream, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let block: Vec<u8> = (0..251 * 256).map(pattern_byte).collect();
    let mut sent = 0;
    while sent < n {
        let k = (n - sent).min(block.len());
        put(w, &block[..k])?;
        sent += k;
    }
    Ok(())
}

/// Reads the request body; returns (kept bytes, total length, checksum). A chunked body's
/// chunks are written back to `echo` as they are read, and its end.
fn read_body(
    r: &mut BufReader<TcpStream>,
    req: &Received,
    mut echo: Option<&mut TcpStream>,
) -> Option<(Vec<u8>, usize, u64)> {
    let mut kept = Vec::new();
    let (mut len, mut sum) = (0usize, 0u64);
    let mut take = |chunk: &[u8], len: &mut usize, echo: &mut Option<&mut TcpStream>| {
        if let Some(w) = echo {
            let _ = write!(w, "{:x}\r\n", chunk.len())
                .and_then(|()| w.write_all(chunk))
                .and_then(|()| w.write_all(b"\r\n"));
        }
        checksum(&mut sum, *len, chunk);
        if kept.len() < KEEP_BODY {
            kept.extend_from_slice(&chunk[..chunk.len().min(KEEP_BODY - kept.len())]);
        }
        *len += chunk.len();
    };
    let mut buf = vec![0u8; 1 << 16];
    if req.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut line = String::new();
            r.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.trim_end().split(';').next()?, 16).ok()?;
            if size == 0 {
                if let Some(w) = &mut echo {
                    w.write_all(b"0\r\n\r\n").ok()?;
                }
                loop {
                    line.clear();
                    r.read_line(&mut line).ok()?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut left = size;
            while left > 0 {
                let k = left.min(buf.len());
                r.read_exact(&mut buf[..k]).ok()?;
                take(&buf[..k], &mut len, &mut echo);
                left -= k;
            }
            line.clear();
            r.read_line(&mut line).ok()?;
        }
    } else if let Some(cl) = req.header("content-length") {
        let mut left: usize = cl.parse().ok()?;
        while left > 0 {
            let k = left.min(buf.len());
            r.read_exact(&mut buf[..k]).ok()?;
            take(&buf[..k], &mut len, &mut None);
            left -= k;
        }
    }
    Some((kept, len, sum))
}
