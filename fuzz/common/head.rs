//! What both head targets check of a parsed head's bytes.

use strait::http::codec::Limits;

/// A head of `len` bytes with `headers` fields and HTTP/1.`version`: within `input` and the
/// limits, ended by its blank line, and free of what the codec promises to refuse (bare CR,
/// bare LF, NUL and other CTLs). Returns the head's bytes.
pub fn check_bytes<'a>(input: &'a [u8], len: usize, headers: usize, version: u8, limits: &Limits) -> &'a [u8] {
    assert!(len <= input.len() && len <= limits.max_head);
    let bytes = &input[..len];
    assert!(bytes.ends_with(b"\r\n\r\n"));
    assert!(headers <= limits.max_headers);
    assert!(version <= 1);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}"),
            b'\t' => {}
            _ => assert!(b >= 0x20, "CTL {b:#04x} at {i}"),
        }
    }
    bytes
}
