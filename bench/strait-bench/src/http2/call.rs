//! The one request an HTTP/2 load sends, checked and built once: a plain request from `-m`, `-H`
//! and `--body`, or a gRPC unary call.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, TE};
use http::{HeaderMap, Method, Request, Uri};

use crate::error::BenchError;
use crate::http::{header, RequestParts, Target};

pub const GRPC_STATUS: &str = "grpc-status";

/// The method a gRPC load calls when its URL names none.
const GRPC_DEFAULT_PATH: &str = "/strait.bench.Bench/Unary";

/// The request message's field 1, protobuf's `bytes`, repeats this.
const PAYLOAD_PATTERN: &[u8] = b"hello";

/// Headers that HTTP/2 forbids (RFC 9113 §8.2.2): they name HTTP/1.1's connection.
const CONNECTION_SPECIFIC: [&str; 5] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

#[derive(Debug)]
pub struct Call {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    pub body: Option<Bytes>,
    /// The answer's `grpc-status` decides its success.
    pub grpc: bool,
}

impl Call {
    /// The request `-m`, `-H` and `--body` describe. A `Host` header becomes the `:authority`.
    pub fn http(parts: &RequestParts, target: &Target) -> Result<Call, BenchError> {
        let method = Method::from_bytes(parts.method.as_bytes())
            .map_err(|_| BenchError::Usage(format!("-m `{}`: not an HTTP method", parts.method)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in parts.headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("host")) {
            add(&mut headers, name, value)?;
        }
        if let Some(body) = &parts.body {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        Ok(Call {
            method,
            uri: uri(target, parts.host.as_deref(), &target.path)?,
            headers,
            body: parts.body.clone().map(Bytes::from),
            grpc: false,
        })
    }

    /// A unary call to the URL's path with a message of one `bytes` field of `size` bytes.
    pub fn grpc(target: &Target, host: Option<String>, extra: &[String], size: usize) -> Result<Call, BenchError> {
        let path = if target.path == "/" { GRPC_DEFAULT_PATH } else { &target.path };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        // gRPC requires it: it says that the client reads trailers, where the status comes.
        headers.insert(TE, HeaderValue::from_static("trailers"));
        let mut host = host;
        let mut given = HeaderMap::new();
        for h in extra {
            let (name, value) = header(h)?;
            if name.eq_ignore_ascii_case("host") {
                host = Some(value.to_string());
            } else {
                add(&mut given, name, value)?;
            }
        }
        // What -H gives replaces what the call sets (a content-type such as
        // application/grpc+proto).
        for name in given.keys() {
            headers.remove(name);
        }
        headers.extend(given);
        Ok(Call {
            method: Method::POST,
            uri: uri(target, host.as_deref(), path)?,
            headers,
            body: Some(grpc_message(size)),
            grpc: true,
        })
    }

    /// This call's request, for one stream.
    pub fn request(&self) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// The URI h2 takes `:scheme`, `:authority` and `:path` from.
fn uri(target: &Target, host: Option<&str>, path: &str) -> Result<Uri, BenchError> {
    let authority = host.map_or_else(|| target.authority(), str::to_string);
    Uri::builder()
        .scheme(if target.tls { "https" } else { "http" })
        .authority(authority.as_str())
        .path_and_query(path)
        .build()
        .map_err(|e| BenchError::Usage(format!("{authority}{path}: {e}")))
}

fn add(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), BenchError> {
    let bad = |why: &str| BenchError::Usage(format!("-H `{name}: {value}`: {why}"));
    let lower = name.to_ascii_lowercase();
    if CONNECTION_SPECIFIC.contains(&lower.as_str()) || (lower == "te" && !value.eq_ignore_ascii_case("trailers")) {
        return Err(bad("HTTP/2 has no connection-specific headers (RFC 9113 §8.2.2)"));
    }
    let name = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| bad("not a header name"))?;
    let value = HeaderValue::from_str(value).map_err(|_| bad("not a header value"))?;
    headers.append(name, value);
    Ok(())
}

/// A gRPC message (uncompressed flag, 4-byte big-endian length) holding one protobuf field:
/// field 1, length-delimited, `size` bytes of "hello" repeated.
pub fn grpc_message(size: usize) -> Bytes {
    let mut field = BytesMut::with_capacity(size + 11);
    field.put_u8(0x0a);
    let mut len = size as u64;
    while len >= 0x80 {
        field.put_u8((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    field.put_u8(len as u8);
    field.extend(PAYLOAD_PATTERN.iter().copied().cycle().take(size));
    let mut message = BytesMut::with_capacity(5 + field.len());
    message.put_u8(0);
    message.put_u32(field.len() as u32);
    message.extend_from_slice(&field);
    message.freeze()
}
