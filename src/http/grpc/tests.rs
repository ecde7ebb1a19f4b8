use super::{from_http, is_grpc, message, status, to_http, value};

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
