use std::time::Duration;

use super::{
    from_http, is_grpc, message, name, request_timeout, status, timeout, timeout_value, to_http, value, MessageCounter,
    TrailerStatus,
};

#[test]
fn grpc_content_types_as_envoy_tells_them() {
    assert!(is_grpc(Some(b"application/grpc")));
    assert!(is_grpc(Some(b"application/grpc+proto")));
    assert!(is_grpc(Some(b"application/grpc+json")));
    assert!(!is_grpc(Some(b"application/grpc-web")));
    assert!(!is_grpc(Some(b"application/grpc-web-text")));
    assert!(!is_grpc(Some(b"application/grpcx")));
    assert!(!is_grpc(Some(b"application/json")));
    assert!(!is_grpc(Some(b"")));
    assert!(!is_grpc(None));
}

#[test]
fn http_statuses_map_as_envoy_maps_its_local_replies() {
    assert_eq!(from_http(400), 13);
    assert_eq!(from_http(401), 16);
    assert_eq!(from_http(403), 7);
    assert_eq!(from_http(404), 12);
    for s in [429, 502, 503, 504] {
        assert_eq!(from_http(s), 14, "{s}");
    }
    for s in [200, 301, 408, 418, 500] {
        assert_eq!(from_http(s), 2, "{s}");
    }
}

#[test]
fn status_values_are_the_codes() {
    assert_eq!(value(14), "14");
    assert_eq!(value(16), "16");
    assert_eq!(value(0), "0");
}

#[test]
fn grpc_messages_are_percent_encoded() {
    assert_eq!(message(b"no healthy upstream"), "no healthy upstream");
    assert_eq!(message(b"50% off\n"), "50%25 off%0A");
    assert_eq!(message("é".as_bytes()), "%C3%A9");
    assert_eq!(message(b"a~b"), "a%7Eb", "Envoy encodes from ~ up");
}

#[test]
fn grpc_status_values_are_read_as_codes() {
    assert_eq!(status(b"14"), Some(14));
    assert_eq!(status(b"0"), Some(0));
    assert_eq!(status(b"16"), Some(16));
    assert_eq!(status(b"17"), None, "past the last code: Envoy's InvalidCode");
    assert_eq!(status(b"014"), Some(14));
    assert_eq!(status(b"99999999999"), None);
    assert_eq!(status(b""), None);
    assert_eq!(status(b"-1"), None);
    assert_eq!(status(b" 4"), None);
}

#[test]
fn grpc_statuses_stand_for_http_ones_as_envoy_tells_outlier_detection() {
    assert_eq!(to_http(0), 200);
    assert_eq!(to_http(1), 499);
    assert_eq!(to_http(4), 504);
    assert_eq!(to_http(8), 429);
    assert_eq!(to_http(12), 501);
    assert_eq!(to_http(13), 500);
    assert_eq!(to_http(14), 503);
    assert_eq!(to_http(16), 401);
    assert_eq!(to_http(2), 500);
}

#[test]
fn grpc_timeouts_as_envoy_reads_them() {
    let ms = Duration::from_millis;
    assert_eq!(timeout(b"1S"), Some(ms(1000)));
    assert_eq!(timeout(b"100m"), Some(ms(100)));
    assert_eq!(timeout(b"2M"), Some(ms(120_000)));
    assert_eq!(timeout(b"1H"), Some(ms(3_600_000)));
    assert_eq!(timeout(b"1500u"), Some(ms(2)), "microseconds round up");
    assert_eq!(timeout(b"1000u"), Some(ms(1)));
    assert_eq!(timeout(b"1n"), Some(ms(1)));
    assert_eq!(timeout(b"0S"), Some(ms(0)));
    assert_eq!(timeout(b"99999999m"), Some(ms(99_999_999)));
    assert_eq!(timeout(b"100000000m"), None, "at most 8 digits");
    assert_eq!(timeout(b"S"), None);
    assert_eq!(timeout(b"10"), None);
    assert_eq!(timeout(b"10s"), None);
    assert_eq!(timeout(b"-1S"), None);
    assert_eq!(timeout(b""), None);
}

#[test]
fn grpc_timeouts_as_envoy_writes_them() {
    assert_eq!(timeout_value(250), (250, b'm'));
    assert_eq!(timeout_value(99_999_999), (99_999_999, b'm'));
    assert_eq!(timeout_value(100_000_000), (100_000, b'S'));
    assert_eq!(timeout_value(100_000_000_000), (1_666_666, b'M'));
    assert_eq!(timeout_value(u64::MAX), (99_999_999, b'H'));
}

#[test]
fn a_grpc_request_times_out_on_its_grpc_timeout_capped_by_the_route() {
    let ms = Duration::from_millis;
    assert_eq!(request_timeout(None, None), None, "istiod's default: no timeout");
    assert_eq!(request_timeout(Some(ms(500)), None), Some(ms(500)));
    assert_eq!(request_timeout(None, Some(b"200m")), Some(ms(200)), "no cap without a route timeout");
    assert_eq!(request_timeout(None, Some(b"1H")), Some(ms(3_600_000)));
    assert_eq!(request_timeout(Some(ms(500)), Some(b"200m")), Some(ms(200)));
    assert_eq!(request_timeout(Some(ms(500)), Some(b"2S")), Some(ms(500)), "capped by the route's");
    assert_eq!(request_timeout(Some(ms(500)), Some(b"0S")), Some(ms(500)), "0 is no timeout, capped");
    assert_eq!(request_timeout(None, Some(b"0S")), None);
    assert_eq!(request_timeout(Some(ms(500)), Some(b"soon")), Some(ms(500)), "malformed: ignored");
}

/// `n` gRPC messages of `len` payload bytes each, back to back.
fn messages(n: usize, len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        body.push(0);
        body.extend_from_slice(&(len as u32).to_be_bytes());
        body.extend(std::iter::repeat_n(i as u8, len));
    }
    body
}

#[test]
fn messages_count_however_the_body_is_split() {
    let mut body = messages(3, 300);
    body.extend_from_slice(&[1, 0, 0, 0, 0]); // an empty (compressed) message
    body.extend(messages(1, 70_000));
    for piece in [1, 2, 4, 5, 6, 7, 299, 1000, usize::MAX] {
        let mut c = MessageCounter::default();
        for chunk in body.chunks(piece.min(body.len())) {
            c.feed(chunk);
        }
        assert_eq!(c.count(), 5, "pieces of {piece}");
    }
}

#[test]
fn a_message_counts_from_its_first_byte() {
    let mut c = MessageCounter::default();
    c.feed(&[0, 0, 0]);
    assert_eq!(c.count(), 1, "as Envoy's frame inspector counts it");
    c.feed(&[0, 2, 7, 7, 0]);
    assert_eq!(c.count(), 2);
}

#[test]
fn the_grpc_status_line_is_found_among_framing_lines() {
    let mut t = TrailerStatus::default();
    for piece in [&b"\r\n1a;ext\r\n"[..], b"\r\n0\r\ngrpc-message: grpc-status: 3\r\nGRPC-Sta", b"tus:  14 \r\n\r\n"] {
        t.feed(piece);
    }
    assert_eq!(t.status(), Some(14));
    let mut t = TrailerStatus::default();
    t.feed(b"0\r\ngrpc-status: 99\r\n\r\n");
    assert_eq!(t.status(), None, "not a code");
    let mut t = TrailerStatus::default();
    t.feed(b"0\r\nx-grpc-status: 1\r\n\r\n");
    assert_eq!(t.status(), None, "another field");
}

#[test]
fn status_names_as_envoys_grpc_status() {
    assert_eq!(
        (name(0), name(1), name(4), name(14), name(16)),
        ("OK", "Canceled", "DeadlineExceeded", "Unavailable", "Unauthenticated")
    );
}
