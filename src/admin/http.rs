//! Just enough HTTP/1.1 for the admin port: one request per connection, then close.

use std::io::{self, Read, Write};
use std::net::TcpStream;

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

pub fn read_request(stream: &mut TcpStream) -> io::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
            httparse::Status::Complete(head_len) => {
                let body_len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(MAX_BODY);
                let target = req.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_string(), Some(q.to_string())),
                    None => (target.to_string(), None),
                };
                let request = Request { method: req.method.unwrap_or("GET").to_string(), path, query };
                let unread = (head_len + body_len).saturating_sub(buf.len());
                io::copy(&mut Read::take(&mut *stream, unread as u64), &mut io::sink())?;
                return Ok(request);
            }
            httparse::Status::Partial if buf.len() >= MAX_HEAD => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
            }
            httparse::Status::Partial => {}
        }
    }
}

pub fn write_response(stream: &mut TcpStream, resp: &Response, head_only: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&resp.body)?;
    }
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}
