use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn h2_args(args: &[&str]) -> H2Args {
    match Cli::try_parse_from(["strait-bench", "h2"].iter().chain(args)).unwrap().command {
        Command::H2(args) => args,
        _ => unreachable!(),
    }
}

fn grpc_args(args: &[&str]) -> GrpcArgs {
    match Cli::try_parse_from(["strait-bench", "grpc"].iter().chain(args)).unwrap().command {
        Command::Grpc(args) => args,
        _ => unreachable!(),
    }
}

fn h2_call(args: &[&str]) -> Result<Call, BenchError> {
    let args = h2_args(args);
    let target = Target::parse(&args.url)?;
    Call::http(&RequestParts::new(&args.request)?, &target)
}

#[test]
fn the_request_carries_the_url_headers_and_body() {
    let call = h2_call(&["http://127.0.0.1:9/up?q=1", "-m", "PUT", "-H", "X-A: 1", "-H", "x-a: 2", "--body", "hello"])
        .unwrap();
    let req = call.request();
    assert_eq!(req.method(), "PUT");
    assert_eq!(req.uri(), "http://127.0.0.1:9/up?q=1");
    let a: Vec<_> = req.headers().get_all("x-a").iter().collect();
    assert_eq!(a, ["1", "2"]);
    assert_eq!(req.headers()["content-length"], "5");
    assert_eq!(call.body.as_deref(), Some(&b"hello"[..]));
    assert!(!call.grpc);
    // A Host header names the :authority; none is sent as a header.
    let req = h2_call(&["https://127.0.0.1/", "-H", "Host: example.com"]).unwrap().request();
    assert_eq!(req.uri(), "https://example.com/");
    assert!(req.headers().get("host").is_none());
}

#[test]
fn connection_specific_headers_are_refused() {
    for h in ["Connection: close", "Keep-Alive: 5", "Transfer-Encoding: chunked", "Upgrade: h2c", "TE: gzip"] {
        let err = h2_call(&["http://127.0.0.1:9/", "-H", h]).unwrap_err().to_string();
        assert!(err.contains("RFC 9113"), "{h}: {err}");
    }
    assert!(h2_call(&["http://127.0.0.1:9/", "-H", "te: trailers"]).is_ok());
}

#[test]
fn a_grpc_call_is_a_framed_protobuf_message() {
    // Uncompressed, 7 bytes: field 1 (tag 0x0a), length 5, "hello".
    assert_eq!(&call::grpc_message(5)[..], b"\x00\x00\x00\x00\x07\x0a\x05hello");
    // A length past 127 takes two varint bytes.
    let big = call::grpc_message(300);
    assert_eq!(&big[..8], b"\x00\x00\x00\x01\x2f\x0a\xac\x02");
    assert_eq!(big.len(), 5 + 3 + 300);
    let args = grpc_args(&["http://127.0.0.1:9/", "-H", "content-type: application/grpc+proto", "-H", "x-md: 1"]);
    let target = Target::parse(&args.url).unwrap();
    let call = Call::grpc(&target, None, &args.headers, args.size).unwrap();
    let req = call.request();
    assert_eq!((req.method().as_str(), req.uri().path()), ("POST", "/strait.bench.Bench/Unary"));
    assert_eq!(req.headers()["content-type"], "application/grpc+proto");
    assert_eq!(req.headers().get_all("content-type").iter().count(), 1);
    assert_eq!(req.headers()["te"], "trailers");
    assert_eq!(req.headers()["x-md"], "1");
    assert!(call.grpc);
}

#[test]
fn refused_flags() {
    let usage = |args: &[&str]| matches!(run(&h2_args(args)), Err(BenchError::Usage(_)));
    assert!(usage(&["http://127.0.0.1:9/", "--streams", "0"]));
    assert!(usage(&["http://127.0.0.1:9/", "--rate", "0"]));
    assert!(usage(&["http://127.0.0.1:9/", "-k"]));
    assert!(usage(&["https://127.0.0.1:9/"]), "TLS needs --ca or -k");
}
