//! MeshConfig `pathNormalization`: the request path as Envoy normalizes it under istiod's
//! settings, before routing and policy, and as the upstream receives it. istiod maps
//! `NONE` to nothing, `BASE` (the default) to `normalize_path` (RFC 3986 §6: dot segments
//! removed, escaped unreserved characters decoded, `\` read as `/`), `MERGE_SLASHES` adds
//! `merge_slashes`, and `DECODE_AND_MERGE_SLASHES` adds `path_with_escaped_slashes_action:
//! UNESCAPE_AND_FORWARD` (`%2F` and `%5C` decoded first). So no spelling of a path a policy
//! denies (`/./admin`, `/a/../admin`, `/%61dmin`…) reaches routing or the backend other than
//! as the policy sees it (CVE-2021-31920).

use crate::snapshot::PathNormalization;

/// A path no normalization can read: a `%` without two hex digits, or `%00`. Envoy answers
/// it 400 (`path_normalization_failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// The normalized form of `path` (without its query), or `None` when it is already normal:
/// the common path allocates nothing.
pub fn path(path: &str, mode: PathNormalization) -> Result<Option<String>, Invalid> {
    if mode == PathNormalization::None || !path.starts_with('/') {
        return Ok(None);
    }
    let merge = mode != PathNormalization::Base;
    let bytes = path.as_bytes();
    let dotted = bytes.windows(2).any(|w| w == b"/.");
    let doubled = merge && bytes.windows(2).any(|w| w == b"//");
    if !dotted && !doubled && !bytes.iter().any(|b| matches!(b, b'%' | b'\\')) {
        return Ok(None);
    }
    let decoded = decode(bytes, mode == PathNormalization::DecodeAndMergeSlashes)?;
    let mut out = remove_dot_segments(&decoded);
    if merge {
        out.dedup_by(|b, a| *a == b'/' && *b == b'/');
    }
    // Only ASCII was decoded and every other byte copied: still UTF-8.
    let out = String::from_utf8(out).map_err(|_| Invalid)?;
    Ok((out != path).then_some(out))
}

/// Escapes of unreserved characters decoded (and of `/` and `\` when `slashes`), other escapes
/// kept with upper-case hex, as Envoy's canonicalizer writes them; `\` read as `/`.
fn decode(bytes: &[u8], slashes: bool) -> Result<Vec<u8>, Invalid> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                    return Err(Invalid);
                };
                let v = (hi * 16 + lo) as u8;
                match v {
                    0 => return Err(Invalid),
                    b'/' | b'\\' if slashes => out.push(b'/'),
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(v),
                    _ => out.extend_from_slice(format!("%{v:02X}").as_bytes()),
                }
                i += 3;
            }
            b'\\' => {
                out.push(b'/');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = path[1..].split(|b| *b == b'/').collect();
    let last = parts.len() - 1;
    // A trailing `.` or `..` leaves the path ending in `/`.
    let mut trailing_slash = false;
    for (i, part) in parts.iter().enumerate() {
        match *part {
            b"." => trailing_slash = i == last,
            b".." => {
                segments.pop();
                trailing_slash = i == last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing_slash || out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathNormalization::*;

    fn n(p: &str, mode: PathNormalization) -> Result<String, Invalid> {
        path(p, mode).map(|o| o.unwrap_or_else(|| p.to_owned()))
    }

    #[test]
    fn base_removes_dot_segments_decodes_unreserved_and_reads_backslashes() {
        for spelling in
            ["/admin", "/./admin", "/a/../admin", "/%61dmin", "/%2e%2e/admin", "/a/%2E%2E/admin", "/x/..\\admin"]
        {
            assert_eq!(n(spelling, Base).unwrap(), "/admin", "{spelling}");
        }
        assert_eq!(n("/a/b/", Base).unwrap(), "/a/b/");
        assert_eq!(n("/a/.", Base).unwrap(), "/a/");
        assert_eq!(n("/..", Base).unwrap(), "/");
        assert_eq!(n("//admin", Base).unwrap(), "//admin", "BASE keeps double slashes");
        assert_eq!(n("/admin%2F", Base).unwrap(), "/admin%2F", "BASE keeps escaped slashes");
        assert_eq!(n("/a%2fb", Base).unwrap(), "/a%2Fb");
        assert_eq!(path("/plain/path", Base), Ok(Option::None));
    }

    #[test]
    fn merge_and_decode_modes_and_none() {
        assert_eq!(n("//admin", MergeSlashes).unwrap(), "/admin");
        assert_eq!(n("/a//./b///c", MergeSlashes).unwrap(), "/a/b/c");
        assert_eq!(n("/admin%2F", MergeSlashes).unwrap(), "/admin%2F");
        assert_eq!(n("/admin%2F", DecodeAndMergeSlashes).unwrap(), "/admin/");
        assert_eq!(n("/x%2F..%2Fadmin", DecodeAndMergeSlashes).unwrap(), "/admin");
        assert_eq!(n("/x%5C..%5cadmin", DecodeAndMergeSlashes).unwrap(), "/admin");
        assert_eq!(path("/./admin", None), Ok(Option::None));
        assert_eq!(path("*", Base), Ok(Option::None));
    }

    #[test]
    fn nul_and_malformed_escapes_are_invalid() {
        for bad in ["/a%00b", "/a%zz", "/a%4", "/a%"] {
            assert_eq!(path(bad, Base), Err(Invalid), "{bad}");
        }
        assert_eq!(path("/a%00", None), Ok(Option::None), "NONE looks at nothing");
    }
}
