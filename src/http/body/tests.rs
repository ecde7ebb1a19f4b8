use super::Watch;
use crate::http::codec::BodyFraming;

/// Three gRPC messages (2, 0 and 3 bytes) in chunks that cut them and their prefixes, then
/// trailers, one of which only looks like `grpc-status`.
const CHUNKED: &[u8] = b"3;ext=1\r\n\0\0\0\r\n9\r\n\0\x02ab\0\0\0\0\0\r\n8\r\n\0\0\0\0\x03xyz\r\n\
    0\r\ngrpc-message: grpc-status: 3\r\ngrpc-status: 14\r\n\r\n";

#[test]
fn a_chunked_grpc_body_counts_its_data_and_reads_its_trailers() {
    for piece in [1, 2, 3, 16, CHUNKED.len()] {
        let mut w = Watch::new(BodyFraming::Chunked);
        for chunk in CHUNKED.chunks(piece) {
            w.feed(chunk);
        }
        assert_eq!((w.messages(), w.trailer_status()), (3, Some(14)), "pieces of {piece}");
    }
    let mut w = Watch::new(BodyFraming::Chunked);
    w.feed(b"a\r\n\0\0\0\0\x05hello\r\n0\r\n\r\n");
    assert_eq!((w.messages(), w.trailer_status()), (1, None), "no trailers");
}

#[test]
fn a_body_that_is_its_payload_is_counted_as_it_is() {
    let mut w = Watch::new(BodyFraming::ContentLength(13));
    w.feed(b"\0\0\0\0\x03abc\0\0\0\0\0");
    assert_eq!((w.messages(), w.trailer_status()), (2, None));
}
