//! The chunked scanner (split input gives the same answer as whole input) and the API as the proxy path uses it.

use super::*;

// ---------------------------------------------------------------- chunked bodies

/// Feeds `body` whole and byte by byte in decode mode; both must agree on the bytes
/// consumed and the data, and on errors.
fn decode(body: &[u8]) -> Result<(usize, Vec<u8>), ParseError> {
    let whole = {
        let mut d = ChunkedDecoder::decoding();
        let mut pos = 0;
        let mut data = Vec::new();
        loop {
            let p = d.feed(&body[pos..])?;
            if let Some(r) = p.data {
                data.extend_from_slice(&body[pos + r.start..pos + r.end]);
            }
            pos += p.consumed;
            if p.done || pos == body.len() {
                break;
            }
        }
        (pos, data, d.is_done())
    };
    let bytewise = {
        let mut d = ChunkedDecoder::decoding();
        let mut pos = 0;
        let mut data = Vec::new();
        let mut res = Ok(());
        while pos < body.len() && !d.is_done() {
            match d.feed(&body[pos..pos + 1]) {
                Ok(p) => {
                    if let Some(r) = p.data {
                        data.extend_from_slice(&body[pos + r.start..pos + r.end]);
                    }
                    assert!(p.consumed <= 1);
                    pos += p.consumed;
                }
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        res.map(|()| (pos, data, d.is_done()))
    };
    let (pos, data, done) = whole;
    assert_eq!(bytewise, Ok((pos, data.clone(), done)));
    // The pass-through scanner agrees on where the message ends.
    let p = ChunkedDecoder::new().feed(body)?;
    assert_eq!((p.consumed, p.done), (pos, done));
    assert!(done, "incomplete body");
    Ok((pos, data))
}

fn decode_err(body: &[u8]) -> ParseError {
    let whole = ChunkedDecoder::new().feed(body).unwrap_err();
    let mut d = ChunkedDecoder::new();
    let split = body.iter().map(|b| d.feed(std::slice::from_ref(b))).find_map(Result::err);
    assert_eq!(split, Some(whole), "byte-by-byte disagrees for {:?}", String::from_utf8_lossy(body));
    whole
}

#[test]
fn chunked_body_ends_exactly_and_leaves_pipelined_bytes() {
    let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let (consumed, data) = decode(body).unwrap();
    assert_eq!(&body[consumed..], b"GET / HTTP/1.1\r\n");
    assert_eq!(data, b"hello world");
}

#[test]
fn chunked_split_feeding_matches_whole() {
    for body in [
        &b"0\r\n\r\n"[..],
        b"1\r\na\r\n0\r\n\r\n",
        b"A\r\n0123456789\r\n0\r\n\r\n",
        b"00005\r\nhello\r\n000\r\n\r\n",
        b"5;ext=1;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n",
        b"5 ;ext\r\nhello\r\n0\r\n\r\n",
        b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
        b"10\r\n0123456789abcdef\r\n0\r\n\r\nextra",
    ] {
        decode(body).unwrap();
    }
}

#[test]
fn chunked_pass_through_has_no_data_spans() {
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    let p = ChunkedDecoder::new().feed(body).unwrap();
    assert_eq!(p, Progress { consumed: body.len(), data: None, done: true });
    // Split mid-data: consumes everything, not done.
    let mut d = ChunkedDecoder::new();
    assert_eq!(d.feed(&body[..6]).unwrap(), Progress { consumed: 6, data: None, done: false });
    assert_eq!(d.feed(&body[6..]).unwrap(), Progress { consumed: body.len() - 6, data: None, done: true });
    // After done, nothing more is consumed.
    assert_eq!(d.feed(b"xyz").unwrap(), Progress { consumed: 0, data: None, done: true });
}

#[test]
fn chunk_size_overflow_is_refused() {
    assert_eq!(decode_err(b"8000000000000000\r\n"), ParseError::ChunkSizeOverflow);
    assert_eq!(decode_err(b"ffffffffffffffffff\r\n"), ParseError::ChunkSizeOverflow);
    // 2^63 - 1 is the largest size accepted (the data then simply streams).
    let mut d = ChunkedDecoder::new();
    assert!(d.feed(b"7fffffffffffffff\r\nabc").is_ok());
    // Leading zeros do not count towards overflow.
    decode(b"0000000000000000000000005\r\nhello\r\n0\r\n\r\n").unwrap();
}

#[test]
fn chunk_size_junk_is_refused() {
    for body in [&b"5x\r\n"[..], b"5 \r\n", b"\r\n", b"-5\r\n", b"0x5\r\n", b"+5\r\n", b" 5\r\n", b"5\t\r\n", b"g\r\n"]
    {
        assert_eq!(decode_err(body), ParseError::InvalidChunkSize, "{:?}", String::from_utf8_lossy(body));
    }
}

#[test]
fn chunk_data_must_end_with_crlf() {
    assert_eq!(decode_err(b"5\r\nhelloX\r\n0\r\n\r\n"), ParseError::MissingChunkCrlf);
    assert_eq!(decode_err(b"5\r\nhello\rX0\r\n\r\n"), ParseError::MissingChunkCrlf);
    assert_eq!(decode_err(b"3\r\nhello\r\n"), ParseError::MissingChunkCrlf);
}

#[test]
fn chunked_bare_lf_is_refused() {
    assert_eq!(decode_err(b"5\nhello\r\n0\r\n\r\n"), ParseError::InvalidChunkSize);
    assert_eq!(decode_err(b"5\r\nhello\n0\r\n\r\n"), ParseError::MissingChunkCrlf);
    assert_eq!(decode_err(b"5;a\nb\r\nhello\r\n"), ParseError::InvalidChunkExtension);
    assert_eq!(decode_err(b"0\r\n\n"), ParseError::InvalidTrailer);
    assert_eq!(decode_err(b"0\r\nA: b\n\r\n"), ParseError::InvalidTrailer);
    assert_eq!(decode_err(b"0\r\n\rX"), ParseError::InvalidTrailer);
}

#[test]
fn chunk_extension_bytes_are_checked() {
    assert_eq!(decode_err(b"5;a\0\r\nhello\r\n"), ParseError::InvalidChunkExtension);
    let mut long = b"5;".to_vec();
    long.resize(5000, b'a');
    assert_eq!(decode_err(&long), ParseError::InvalidChunkExtension);
}

#[test]
fn chunked_trailers_are_checked() {
    for body in [
        &b"0\r\nA: 1\r\n folded\r\n\r\n"[..],
        b"0\r\nA : 1\r\n\r\n",
        b"0\r\nA: \x001\r\n\r\n",
        b"0\r\nno-colon\r\n\r\n",
        b"0\r\n:x\r\n\r\n",
    ] {
        assert_eq!(decode_err(body), ParseError::InvalidTrailer, "{:?}", String::from_utf8_lossy(body));
    }
    let mut big = b"0\r\nX: ".to_vec();
    big.resize(20_000, b'a');
    assert_eq!(decode_err(&big), ParseError::TrailersTooLarge);
}

#[test]
fn content_length_body_counts() {
    let mut b = ContentLengthBody::new(10);
    assert_eq!(b.feed(4), 4);
    assert!(!b.is_done());
    assert_eq!(b.feed(100), 6);
    assert!(b.is_done());
    assert_eq!(b.feed(5), 0);
}

// ---------------------------------------------------------------- API usage

#[test]
fn incremental_reading_with_fresh_slots_per_attempt() {
    // The pattern the proxy path uses: append to the read buffer, re-parse with a fresh
    // (free) HeaderSlots, stop at the first complete head.
    let mut buf = Vec::new();
    let mut arrivals = [&b"GET /x HT"[..], b"TP/1.1\r\nHost: h\r\n", b"\r\nbody"].into_iter();
    let head_len = loop {
        buf.extend_from_slice(arrivals.next().unwrap());
        let mut slots = HeaderSlots::new();
        match parse_request(&buf, &mut slots, &Limits::default()) {
            Ok(Some(h)) => break h.head_len,
            Ok(None) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&buf[head_len..], b"body");
}

#[test]
fn writers_accept_bytes_mut() {
    let mut slots = HeaderSlots::new();
    let h = parse_request(BROWSER, &mut slots, &Limits::default()).unwrap().unwrap();
    let mut a = Vec::new();
    let mut b = bytes::BytesMut::new();
    write_request_head(&mut a, &h, &RequestEdits::default());
    write_request_head(&mut b, &h, &RequestEdits::default());
    assert_eq!(&a[..], &b[..]);
}

#[test]
fn exactly_max_headers_fit() {
    let limits = Limits { max_headers: 3, ..Limits::default() };
    let s = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    assert!(parse_request(s, slots(), &limits).unwrap().is_some());
}
