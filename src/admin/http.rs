//! Just enough HTTP/1.1 for the admin port: one request per connection, then close, each read
//! and write bounded by a deadline for the whole request or answer.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Request heads larger than this are refused; admin requests are a line and a few headers.
const MAX_HEAD: usize = 16 * 1024;
/// A `POST /reload` body is ignored but read, so closing does not reset the connection.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub query: Option<String>,
    /// The `Host` and `Origin` fields, which decide whether a state-changing request came
    /// from a page of another site.
    pub host: Option<String>,
    pub origin: Option<String>,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes() }
    }
}

/// Reads one request, head and body, which must all have come by `deadline`: a client that
/// trickles bytes is cut off as surely as a silent one (`TimedOut`).
pub fn read_request(stream: &mut TcpStream, deadline: Instant) -> io::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = read_by(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
            httparse::Status::Complete(head_len) => {
                let field = |name: &str| {
                    let h = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))?;
                    Some(String::from_utf8_lossy(h.value).trim().to_string())
                };
                let body_len = field("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0).min(MAX_BODY);
                let target = req.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_string(), Some(q.to_string())),
                    None => (target.to_string(), None),
                };
                let request = Request {
                    method: req.method.unwrap_or("GET").to_string(),
                    path,
                    query,
                    host: field("host"),
                    origin: field("origin"),
                };
                let mut unread = (head_len + body_len).saturating_sub(buf.len());
                while unread > 0 {
                    let want = unread.min(chunk.len());
                    match read_by(stream, &mut chunk[..want], deadline)? {
                        0 => break,
                        n => unread -= n,
                    }
                }
                return Ok(request);
            }
            httparse::Status::Partial if buf.len() >= MAX_HEAD => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
            }
            httparse::Status::Partial => {}
        }
    }
}

/// Writes the answer, all of it by `deadline` (`TimedOut` otherwise): a client that stops
/// reading cannot hold the connection open.
pub fn write_response(stream: &mut TcpStream, resp: &Response, head_only: bool, deadline: Instant) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    write_by(stream, head.as_bytes(), deadline)?;
    if !head_only {
        write_by(stream, &resp.body, deadline)?;
    }
    Ok(())
}

/// One read, waiting no later than `deadline`.
fn read_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    stream.set_read_timeout(Some(left(deadline)?))?;
    stream.read(buf)
}

fn write_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(left(deadline)?))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The time left before `deadline`, or `TimedOut` once it has passed (a socket timeout of zero
/// would mean none at all).
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}

/// Whether `authority` (a `Host` value, or an origin without its scheme) names the admin
/// listener as the client reached it at `local`: its IP address and port (80 when absent), or
/// `localhost` with the port when that address is a loopback one. A name any other site could
/// point at this host (DNS rebinding) does not.
pub fn names_admin(authority: &str, local: SocketAddr) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, rest)) if rest.is_empty() || rest.starts_with(':') => (ip, rest.strip_prefix(':')),
            _ => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port_ok = match port {
        Some(port) => port.parse::<u16>().is_ok_and(|p| p == local.port()),
        None => local.port() == 80,
    };
    let host_ok = match host.parse::<IpAddr>() {
        Ok(ip) => ip == local.ip(),
        Err(_) => host.eq_ignore_ascii_case("localhost") && local.ip().is_loopback(),
    };
    port_ok && host_ok
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
