use super::*;

fn head(raw: &str) -> Head {
    parse_head(raw.as_bytes()).expect("a good head").expect("a whole head")
}

#[test]
fn heads_frame_bodies_and_persistence() {
    let h = head("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next");
    assert_eq!((h.len, h.persist, h.body, h.no_body), (27, Persist::KeepAlive, Framing::Length(0), false));
    let h = head("POST / HTTP/1.1\r\nContent-Length: 12\r\nConnection: Keep-Alive, Close\r\n\r\n");
    assert_eq!((h.persist, h.body), (Persist::Close, Framing::Length(12)));
    let h = head("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(h.body, Framing::Chunked);
    assert_eq!(head("GET / HTTP/1.0\r\n\r\n").persist, Persist::Close);
    assert_eq!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").persist, Persist::KeepAlive10);
    assert!(head("HEAD / HTTP/1.1\r\n\r\n").no_body);
    assert!(head("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue);
    // Nothing to wait for: no 100 Continue.
    assert!(!head("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").expect_continue);
}

#[test]
fn partial_and_bad_heads() {
    assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    for bad in [
        "GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "GET / HTTP/1.1 junk\r\n\r\n",
    ] {
        assert_eq!(parse_head(bad.as_bytes()), Err(BadRequest), "{bad:?}");
    }
    // Repeated equal lengths are one length.
    assert_eq!(head("GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").body, Framing::Length(5));
    let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_LINE));
    assert_eq!(parse_head(endless.as_bytes()), Err(BadRequest));
}

/// Decodes `wire` fed `piece` bytes at a time, as reads may split it: the data, and the bytes
/// left after the body.
fn decode(wire: &[u8], piece: usize) -> Result<(Vec<u8>, usize), BadRequest> {
    let mut dec = ChunkedDecoder::decoding();
    let (mut buffered, mut fed, mut data) = (Vec::new(), 0, Vec::new());
    loop {
        let progress = dec.feed(&buffered).map_err(|_| BadRequest)?;
        if let Some(span) = progress.data.clone() {
            data.extend_from_slice(&buffered[span]);
        }
        buffered.drain(..progress.consumed);
        if progress.done {
            return Ok((data, buffered.len() + wire.len() - fed));
        }
        if progress.data.is_none() {
            assert!(fed < wire.len(), "the body never ended");
            let n = piece.min(wire.len() - fed);
            buffered.extend_from_slice(&wire[fed..fed + n]);
            fed += n;
        }
    }
}

#[test]
fn chunked_bodies_decode_however_reads_split_them() {
    let wire = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\nGET";
    for piece in [1, 2, 3, 7, wire.len()] {
        let (data, left) = decode(wire, piece).unwrap();
        assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz", "pieces of {piece}");
        assert_eq!(left, 3, "pieces of {piece}");
    }
}

#[test]
fn bad_chunked_framing() {
    for bad in [&b"\r\n"[..], b"x\r\n", b"3\r\nabcX\r\n", b"3\r\nabc\r\n0\r\n"] {
        let mut wire = bad.to_vec();
        if bad.ends_with(b"0\r\n") {
            // A trailer line that never ends.
            wire.extend(std::iter::repeat_n(b'a', MAX_LINE + 1));
        }
        let got = decode(&wire, wire.len());
        assert_eq!(got, Err(BadRequest), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn the_stall_falls_on_exactly_one_request() {
    let stall = Stall::new(3, Duration::ZERO);
    let due: Vec<bool> = (0..6).map(|_| stall.is_due()).collect();
    assert_eq!(due, [false, false, true, false, false, false]);
}

#[test]
fn the_fixed_body_is_hello_cut_to_size() {
    let server = |size| Server::new(&Config { size, echo: false, stall: None, relay: None });
    assert_eq!(&server(12).body[..], b"hellohellohe");
    assert_eq!(&server(0).body[..], b"");
    let head = String::from_utf8(server(3).heads[Persist::Close as usize].to_vec()).unwrap();
    assert!(head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"), "{head}");
}
