//! A raw HTTP/2 client for hostile-peer tests: frames written by hand (header blocks as HPACK
//! literal fields without indexing, or whatever bytes the test gives) and read back one by one.
//! It misbehaves as told, which a real client (h2's, curl's) refuses to do.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame read back.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or a GOAWAY.
    pub fn code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        Some(u32::from_be_bytes(self.payload.get(at..at + 4)?.try_into().ok()?))
    }
}

/// A frame's bytes: its 9-byte header, then `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix, `high` the bits above it (RFC 7541 §5.1).
pub fn hpack_int(out: &mut Vec<u8>, n: u32, high: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        return out.push(high | value as u8);
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal field without indexing, its name new (RFC 7541 §6.2.2), no Huffman coding: the
/// bytes go as given, CR, LF, NUL and uppercase included.
pub fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    hpack_int(out, 7, 0, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 7, 0, value.len());
    out.extend_from_slice(value);
}

/// A header block of literal fields, in order.
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        literal(&mut out, name.as_bytes(), value.as_bytes());
    }
    out
}

/// The pseudo-header fields of a request for `path` at `authority`.
pub fn request<'a>(method: &'a str, authority: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
}

/// One connection, past the prefaces and the server's SETTINGS (acknowledged).
pub struct H2 {
    pub stream: TcpStream,
}

impl H2 {
    pub fn connect(addr: SocketAddr) -> H2 {
        Self::connect_with(addr, &[])
    }

    /// Connects with `settings` in the client's SETTINGS.
    pub fn connect_with(addr: SocketAddr, settings: &[(u16, u32)]) -> H2 {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut h2 = H2 { stream };
        let payload: Vec<u8> =
            settings.iter().flat_map(|(id, v)| [&id.to_be_bytes()[..], &v.to_be_bytes()].concat()).collect();
        h2.send(&[PREFACE, &frame(SETTINGS, 0, 0, &payload)].concat()).unwrap();
        h2.until(|f| f.kind == SETTINGS && f.flags & ACK == 0).expect("the server's SETTINGS");
        h2.send(&frame(SETTINGS, ACK, 0, &[])).unwrap();
        h2
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// HEADERS on `stream` with `fields`, END_HEADERS set, END_STREAM as `end`.
    pub fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end: bool) -> io::Result<()> {
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        self.send(&frame(HEADERS, flags, stream, &block(fields)))
    }

    /// The next frame; `None` once the connection is closed, fails, or is silent for 10 s.
    pub fn read_frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        self.stream.read_exact(&mut head).ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload).ok()?;
        let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
        Some(Frame { kind: head[3], flags: head[4], stream, payload })
    }

    /// Reads until a frame `f` takes; `None` if the connection ends first.
    pub fn until(&mut self, mut f: impl FnMut(&Frame) -> bool) -> Option<Frame> {
        while let Some(frame) = self.read_frame() {
            if f(&frame) {
                return Some(frame);
            }
        }
        None
    }

    /// Whether the server ends the connection within the read timeout, past any frames it
    /// sends first.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => return !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
            }
        }
    }

    /// The error code of the GOAWAY the server ends the connection with, if it sends one.
    pub fn goaway(&mut self) -> Option<u32> {
        self.until(|f| f.kind == GOAWAY)?.code()
    }

    /// How `stream` ends: `Ok(())` when a response (HEADERS) comes, `Err(code)` when it is reset
    /// or the connection goes away first (the GOAWAY's code; `None` if it just closes).
    pub fn outcome(&mut self, stream: u32) -> Result<(), Option<u32>> {
        match self.until(|f| (f.stream == stream && matches!(f.kind, HEADERS | RST_STREAM)) || f.kind == GOAWAY) {
            Some(f) if f.kind == HEADERS => Ok(()),
            Some(f) => Err(f.code()),
            None => Err(None),
        }
    }
}
