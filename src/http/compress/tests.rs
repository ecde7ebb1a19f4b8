use super::*;
use crate::http::codec::{parse_response, HeaderSlots, Limits};

fn gzip() -> Compressor {
    Compressor {
        library: Library::Gzip { level: 6, window_bits: 12 },
        enabled: true,
        min_content_length: 30,
        content_types: vec![Box::from("application/json"), Box::from("text/html")].into(),
        disable_on_etag_header: false,
        remove_accept_encoding_header: false,
    }
}

fn chain() -> Vec<Compressor> {
    let br = Compressor { library: Library::Brotli { quality: 3, window_bits: 18 }, ..gzip() };
    let zstd = Compressor {
        library: Library::Zstd { level: 3, checksum: false },
        content_types: vec![Box::from("text/html")].into(),
        ..gzip()
    };
    vec![gzip(), br, zstd]
}

fn choose(accept: &str, content_type: &str) -> Option<&'static str> {
    let names = |c: Coding| match c {
        Coding::Gzip => "gzip",
        Coding::Br => "br",
        Coding::Zstd => "zstd",
        _ => "?",
    };
    let ct = (!content_type.is_empty()).then_some(content_type.as_bytes());
    Accept::parse(Some(accept.as_bytes())).choose(&chain(), ct).map(names)
}

#[test]
fn the_highest_q_value_of_an_allowed_coding_wins_the_first_on_a_tie() {
    assert_eq!(choose("gzip;q=0.5, br;q=0.9", "application/json"), Some("br"));
    assert_eq!(choose("br, gzip", "application/json"), Some("br"));
    assert_eq!(choose("gzip , br", "application/json"), Some("gzip"));
    assert_eq!(choose("gzip; q=0.2, zstd; q=1", "text/html"), Some("zstd"));
    // zstd does not take JSON here: it is out of the race, not a winner that then declines.
    assert_eq!(choose("zstd, gzip;q=0.1", "application/json"), Some("gzip"));
}

#[test]
fn wildcard_identity_and_refusals() {
    assert_eq!(choose("*", "application/json"), Some("gzip"));
    assert_eq!(choose("gzip;q=0, *", "application/json"), Some("br"));
    assert_eq!(choose("*;q=0.5, identity", "application/json"), None);
    assert_eq!(choose("gzip;q=0, br;q=0", "application/json"), None);
    assert_eq!(choose("deflate", "application/json"), None);
    assert_eq!(choose("", "application/json"), None);
    // Envoy compares codings case-sensitively and skips an unparsable q-value.
    assert_eq!(choose("GZIP", "application/json"), None);
    assert_eq!(choose("br;q=x, gzip;q=0.3", "application/json"), Some("gzip"));
    // A type no compressor lists allows none.
    assert_eq!(choose("gzip", "image/png"), None);
}

fn decide_on(raw: &str, accept: Option<&str>, compressors: Vec<Compressor>, is_head: bool) -> Decision {
    let mut slots = HeaderSlots::new();
    let head = parse_response(raw.as_bytes(), &mut slots, is_head, &Limits::default()).unwrap().unwrap();
    let compression = Compression { compressors: compressors.into(), remove_accept_encoding: false };
    decide(&compression, &Accept::parse(accept.map(str::as_bytes)), &head)
}

#[test]
fn what_a_response_gets() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    assert_eq!(decide_on(ok, Some("br"), chain(), false), Decision { vary: true, compressor: Some(1) });
    assert_eq!(decide_on(ok, None, chain(), false), Decision { vary: true, compressor: None });
    assert_eq!(decide_on(ok, Some("gzip"), chain(), true), Decision { vary: true, compressor: None });
    let short = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 29\r\n\r\n";
    assert_eq!(decide_on(short, Some("gzip"), chain(), false), Decision::default());
    let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    assert_eq!(decide_on(chunked, Some("gzip"), chain(), false), Decision { vary: true, compressor: Some(0) });
    let until_close = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n\r\n";
    assert_eq!(decide_on(until_close, Some("gzip"), chain(), false), Decision::default());
    for extra in ["cache-control: no-cache, No-Transform", "content-encoding: br"] {
        let raw = format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n{extra}\r\ncontent-length: 100\r\n\r\n");
        assert_eq!(decide_on(&raw, Some("gzip"), chain(), false), Decision::default(), "{extra}");
    }
    let etag = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\netag: W/\"1\"\r\ncontent-length: 100\r\n\r\n";
    assert_eq!(decide_on(etag, Some("gzip"), chain(), false).compressor, Some(0));
    let refusing = vec![Compressor { disable_on_etag_header: true, ..gzip() }];
    assert_eq!(decide_on(etag, Some("gzip"), refusing, false), Decision::default());
    let off = vec![Compressor { enabled: false, ..gzip() }];
    assert_eq!(decide_on(ok, Some("gzip"), off, false), Decision::default());
}

#[test]
fn vary_and_etags() {
    assert_eq!(vary(None).as_deref(), Some("Accept-Encoding"));
    assert_eq!(vary(Some(b"Origin")).as_deref(), Some("Origin, Accept-Encoding"));
    assert_eq!(vary(Some(b"Origin, Accept-Encoding")), None);
    assert!(strong_etag(b"\"abc\""));
    assert!(!strong_etag(b"W/\"abc\""));
    assert!(!strong_etag(b"w/\"abc\""));
}

#[test]
fn engines_round_trip_and_are_reused() {
    use std::io::Read;
    let input: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{{\"n\":{}}},", i % 977).into_bytes()).collect();
    for library in [
        Library::Gzip { level: 6, window_bits: 12 },
        Library::Brotli { quality: 3, window_bits: 18 },
        Library::Zstd { level: 3, checksum: true },
    ] {
        for _ in 0..2 {
            let mut e = Engine::take(library).unwrap();
            let mut out = Vec::new();
            for piece in input.chunks(65536) {
                e.compress(piece, &mut out, false).unwrap();
            }
            e.compress(&[], &mut out, true).unwrap();
            e.put_back(library);
            let mut plain = Vec::new();
            match library {
                Library::Gzip { .. } => flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut plain).unwrap(),
                Library::Brotli { .. } => brotli::Decompressor::new(&out[..], 4096).read_to_end(&mut plain).unwrap(),
                Library::Zstd { .. } => {
                    zstd::stream::read::Decoder::new(&out[..]).unwrap().read_to_end(&mut plain).unwrap()
                }
            };
            assert!(plain == input, "{library:?}");
        }
    }
    let idle = IDLE.with(|i| i.borrow().iter().map(|(l, _)| *l).collect::<Vec<_>>());
    assert_eq!(idle.len(), 2, "one gzip and one zstd state kept, reused: {idle:?}");
}
