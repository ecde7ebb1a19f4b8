//! gRPC as the gateway reads and writes it whatever codec carries it: which requests are gRPC,
//! the status its own answers carry, `grpc-status` read, `grpc-timeout` read and written and
//! the request timeout it sets, as Envoy's `Grpc::Common`, `Grpc::Utility` and router do.

use std::borrow::Cow;
use std::fmt::Write;
use std::time::Duration;

mod messages;
#[cfg(test)]
mod tests;

pub use messages::{MessageCounter, Seen, TrailerStatus};

/// The content type of a gRPC request and of the gateway's gRPC answers.
pub const CONTENT_TYPE: &str = "application/grpc";

/// gRPC status codes the gateway gives or reads itself.
pub const CANCELLED: u8 = 1;
pub const UNKNOWN: u8 = 2;
pub const DEADLINE_EXCEEDED: u8 = 4;
pub const PERMISSION_DENIED: u8 = 7;
pub const RESOURCE_EXHAUSTED: u8 = 8;
pub const UNIMPLEMENTED: u8 = 12;
pub const INTERNAL: u8 = 13;
pub const UNAVAILABLE: u8 = 14;
pub const UNAUTHENTICATED: u8 = 16;

/// `grpc-status` values, so that an answer borrows its line.
const VALUES: [&str; 17] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"];

/// The codes' names as Envoy's `%GRPC_STATUS%` writes them (`Grpc::Utility::grpcStatusToString`).
const NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The largest `grpc-timeout` value: at most 8 digits (gRPC's HTTP/2 protocol).
const MAX_TIMEOUT_VALUE: u64 = 99_999_999;

/// Whether a request (or response) with this `content-type` is gRPC: exactly
/// `application/grpc` or `application/grpc+…` (`application/grpc-web` is not), as Envoy's
/// `hasGrpcContentType`.
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type
        .and_then(|ct| ct.strip_prefix(CONTENT_TYPE.as_bytes()))
        .is_some_and(|rest| rest.first().is_none_or(|&b| b == b'+'))
}

/// The `grpc-status` value of a known code.
pub fn value(code: u8) -> &'static str {
    VALUES.get(usize::from(code)).copied().unwrap_or(VALUES[usize::from(UNKNOWN)])
}

/// A code's name, as the access log's `%GRPC_STATUS%` gives it.
pub fn name(code: u8) -> &'static str {
    NAMES.get(usize::from(code)).copied().unwrap_or(NAMES[usize::from(UNKNOWN)])
}

/// The gRPC status of an answer given with HTTP `status`, as Envoy's `httpToGrpcStatus`
/// (gRPC's http-grpc-status-mapping): 404 is UNIMPLEMENTED, 429 and 502-504 UNAVAILABLE…
pub fn from_http(status: u16) -> u8 {
    match status {
        400 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// The HTTP status a gRPC status stands for, as Envoy's `grpcToHttpStatus` (Google's API
/// error model): what outlier detection is told of a gRPC answer.
pub fn to_http(code: u8) -> u16 {
    match code {
        0 => 200,
        CANCELLED => 499,
        3 | 9 | 11 => 400,
        DEADLINE_EXCEEDED => 504,
        5 => 404,
        6 | 10 => 409,
        PERMISSION_DENIED => 403,
        RESOURCE_EXHAUSTED => 429,
        UNIMPLEMENTED => 501,
        UNAVAILABLE => 503,
        UNAUTHENTICATED => 401,
        _ => 500,
    }
}

/// A `grpc-status` value; `None` when it is not a code (Envoy's `InvalidCode`, which no retry
/// condition matches).
pub fn status(value: &[u8]) -> Option<u8> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u8::try_from(n).ok().filter(|&code| code <= UNAUTHENTICATED)
}

/// A `grpc-timeout` value (`1S`, `100m`, `5u`…: at most 8 digits, then H, M, S, m, u or n),
/// as Envoy's `getGrpcTimeout`: micro- and nanoseconds round up to the millisecond, as Envoy
/// keeps timeouts in milliseconds. `None` when malformed.
pub fn timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let ms = match unit {
        b'H' => n * 3_600_000,
        b'M' => n * 60_000,
        b'S' => n * 1000,
        b'm' => n,
        b'u' => n.div_ceil(1000),
        b'n' => n.div_ceil(1_000_000),
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// The `grpc-timeout` Envoy writes for `ms` (its `toGrpcTimeout`): milliseconds while they fit
/// 8 digits, else seconds, minutes, hours, clipped at the largest count of hours.
pub fn timeout_value(ms: u64) -> (u64, u8) {
    let mut time = ms;
    let units = b"mSMH";
    let mut unit = 0;
    if time > MAX_TIMEOUT_VALUE {
        time /= 1000;
        unit = 1;
    }
    while time > MAX_TIMEOUT_VALUE {
        if unit == 3 {
            time = MAX_TIMEOUT_VALUE;
        } else {
            time /= 60;
            unit += 1;
        }
    }
    (time, units[unit])
}

/// A request's timeout (Envoy's global timeout) under istiod's gateway routes: the route's
/// `timeout`; for a gRPC request its `grpc-timeout` instead, capped by the route's. istiod
/// sets `max_grpc_timeout` to the route's timeout, or to 0 (no cap) without one, so a gRPC
/// request without a valid `grpc-timeout` (or with 0) gets the route's, and none without it.
pub fn request_timeout(route: Option<Duration>, grpc_timeout: Option<&[u8]>) -> Option<Duration> {
    let asked = grpc_timeout.and_then(timeout).filter(|t| !t.is_zero());
    match (asked, route) {
        (Some(asked), Some(max)) => Some(asked.min(max)),
        (asked, route) => asked.or(route),
    }
}

/// `grpc-message` for an answer's text: percent-encoded outside printable ASCII, `%` and `~`
/// too, as Envoy's `PercentEncoding::encode`. Borrowed when nothing needs encoding (every
/// answer the gateway words itself).
pub fn message(text: &[u8]) -> Cow<'_, str> {
    let plain = |b: &u8| (b' '..b'~').contains(b) && *b != b'%';
    if text.iter().all(plain) {
        // Printable ASCII is UTF-8.
        return Cow::Borrowed(std::str::from_utf8(text).unwrap_or_default());
    }
    let mut out = String::with_capacity(text.len() + 8);
    for b in text {
        if plain(b) {
            out.push(char::from(*b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}
