//! Heads the codec wrote, read back for the HTTP/2 edges: the first line and the field lines,
//! split at their line ends and first colon without judging them again. Every byte of such a
//! head was checked on its way in (the client's or upstream's head by the parser, the gateway's
//! own lines as written), so a second full parse (`httparse`, the slots, the classification)
//! would only repeat the work: an HTTP/2 request to an upstream and every response to an HTTP/2
//! client are read this way.

use memchr::memmem;

/// A head at the start of a buffer the codec wrote.
#[derive(Debug, Clone, Copy)]
pub struct Written<'a> {
    /// The request or status line, without its line end.
    pub first: &'a [u8],
    /// The field lines, each with its line end.
    fields: &'a [u8],
    /// The whole head's length, its blank line included.
    pub len: usize,
}

impl<'a> Written<'a> {
    /// The head at the start of `buf`; `None` when `buf` holds no whole head.
    pub fn of(buf: &'a [u8]) -> Option<Self> {
        let end = memmem::find(buf, b"\r\n\r\n")?;
        let first_end = memchr::memchr(b'\r', &buf[..end + 2])?;
        Some(Self { first: &buf[..first_end], fields: &buf[first_end + 2..end + 2], len: end + 4 })
    }

    /// Each field line's name and value, the value without the whitespace around it.
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut rest = self.fields;
        std::iter::from_fn(move || loop {
            let end = memchr::memchr(b'\n', rest)?;
            let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
            rest = &rest[end + 1..];
            // Never for a written head: every line the codec writes or keeps has its colon.
            let Some(colon) = memchr::memchr(b':', line) else { continue };
            return Some((&line[..colon], line[colon + 1..].trim_ascii()));
        })
    }

    /// A request line's method and target.
    pub fn request_line(&self) -> Option<(&'a [u8], &'a [u8])> {
        let mut parts = self.first.splitn(3, |&b| b == b' ');
        Some((parts.next()?, parts.next()?))
    }

    /// A status line's code.
    pub fn status(&self) -> Option<u16> {
        let code = self.first.split(|&b| b == b' ').nth(1)?;
        std::str::from_utf8(code).ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_splits_into_its_line_and_fields() {
        let buf = b"POST /a?b=1 HTTP/1.1\r\nhost: h\r\nX-A:b\r\nx-b:  c d \t\r\n\r\nbody";
        let head = Written::of(buf).unwrap();
        assert_eq!(head.len, buf.len() - 4);
        assert_eq!(head.request_line(), Some((&b"POST"[..], &b"/a?b=1"[..])));
        let fields: Vec<_> = head.fields().collect();
        assert_eq!(fields, [(&b"host"[..], &b"h"[..]), (b"X-A", b"b"), (b"x-b", b"c d")]);
    }

    #[test]
    fn a_status_line_gives_its_code_and_a_head_without_fields_has_none() {
        let head = Written::of(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((head.status(), head.fields().count(), head.len), (Some(204), 0, 27));
        assert!(Written::of(b"HTTP/1.1 200 OK\r\nx: y\r\n").is_none(), "no blank line yet");
    }
}
