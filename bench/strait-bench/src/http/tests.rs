use std::time::{Duration, Instant};

use clap::Parser;

use super::decode::{Answer, Decoder};
use super::pacer::Pacer;
use super::*;
use crate::cli::{Cli, Command};

/// Feeds `input` to a decoder `step` bytes at a time, the way the connection's read buffer
/// does (decoded bytes dropped, the rest kept in front of the next read), and returns every
/// answer with how many bytes had been fed when it ended.
fn decode_in_steps(head: bool, input: &[u8], step: usize) -> Result<Vec<(Answer, usize)>, ErrorKind> {
    let mut decoder = Decoder::new(head);
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    for (i, piece) in input.chunks(step).enumerate() {
        buf.extend_from_slice(piece);
        loop {
            let (used, answer) = decoder.decode(&buf)?;
            buf.drain(..used);
            match answer {
                Some(a) => answers.push((a, i * step + piece.len())),
                None => break,
            }
        }
    }
    assert!(buf.is_empty(), "left over: {:?}", String::from_utf8_lossy(&buf));
    Ok(answers)
}

/// The statuses of the answers in `input`, checking that every way of splitting it into reads
/// gives the same answers.
fn statuses(head: bool, input: &[u8]) -> Vec<u16> {
    let answers = |step| decode_in_steps(head, input, step).unwrap().into_iter().map(|(a, _)| a).collect::<Vec<_>>();
    let whole = answers(input.len());
    for step in [1, 2, 3, 7, 64] {
        assert_eq!(answers(step), whole, "read {step} bytes at a time");
    }
    whole.iter().map(|a| a.status).collect()
}

const OK5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn content_length_answers_back_to_back() {
    let mut input = OK5.repeat(3);
    input.extend_from_slice(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(statuses(false, &input), [200, 200, 200, 404]);
    let ends: Vec<usize> = decode_in_steps(false, &input, 1).unwrap().iter().map(|(_, at)| *at).collect();
    assert_eq!(ends[..3], [OK5.len(), 2 * OK5.len(), 3 * OK5.len()]);
}

#[test]
fn an_answer_is_whole_only_with_its_last_byte() {
    let answers = decode_in_steps(false, OK5, 1).unwrap();
    assert_eq!(answers, [(Answer { status: 200, close: false }, OK5.len())]);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
        5;name=value;x=\"q\"\r\nhello\r\n\
        1a\r\nabcdefghijklmnopqrstuvwxyz\r\n\
        000;last\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n\
        HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(statuses(false, input), [200, 201]);
}

#[test]
fn chunked_garbage_is_a_parse_error() {
    let bad_size = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_eq!(decode_in_steps(false, bad_size, 100), Err(ErrorKind::Parse));
    let no_crlf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY";
    assert_eq!(decode_in_steps(false, no_crlf, 100), Err(ErrorKind::Parse));
}

#[test]
fn answers_without_a_body() {
    // 204 and 304 have none whatever they say; a HEAD answer's Content-Length is the GET's.
    let input = b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(statuses(false, input), [204, 304]);
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(statuses(true, head), [200, 200]);
}

#[test]
fn interim_answers_are_skipped() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(statuses(false, input), [200]);
}

#[test]
fn connection_close_and_http_1_0() {
    let close = |input: &[u8]| decode_in_steps(false, input, input.len()).unwrap()[0].0.close;
    assert!(close(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"));
    assert!(!close(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"));
    assert!(close(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(!close(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"));
    assert!(close(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"));
}

#[test]
fn a_body_without_a_length_runs_until_the_close() {
    let mut decoder = Decoder::new(false);
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body";
    assert_eq!(decoder.decode(head), Ok((head.len(), None)));
    assert_eq!(decoder.decode(b"more of it"), Ok((10, None)));
    assert_eq!(decoder.eof(), Some(Answer { status: 200, close: true }));
    // A close in the middle of a sized answer is no answer.
    let mut decoder = Decoder::new(false);
    assert_eq!(decoder.decode(&OK5[..OK5.len() - 1]), Ok((OK5.len() - 1, None)));
    assert_eq!(decoder.eof(), None);
}

#[test]
fn garbage_and_bad_lengths_are_parse_errors() {
    assert_eq!(Decoder::new(false).decode(b"SSH-2.0-OpenSSH\r\n\r\n"), Err(ErrorKind::Parse));
    let two = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert_eq!(Decoder::new(false).decode(two), Err(ErrorKind::Parse));
    let signed = b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n";
    assert_eq!(Decoder::new(false).decode(signed), Err(ErrorKind::Parse));
    // A partial head is not an error, just not an answer yet.
    assert_eq!(Decoder::new(false).decode(b"HTTP/1.1 200 O"), Ok((0, None)));
}

#[test]
fn due_times_do_not_drift() {
    let start = Instant::now();
    // 3 per second does not divide a second into whole nanoseconds: adding up a rounded period
    // would drift, computing each due time from its number does not.
    let mut pacer = Pacer::new(start, 3.0, 1, 0);
    let mut last = start;
    for i in 0..3_000_001u64 {
        last = pacer.next_due();
        if i == 3 {
            assert_eq!(last - start, Duration::from_secs(1));
        }
    }
    assert_eq!(last - start, Duration::from_secs(1_000_000));
}

#[test]
fn a_late_connection_catches_up_without_skipping() {
    let start = Instant::now();
    let mut pacer = Pacer::new(start, 1000.0, 1, 0);
    // A connection stalled for 1 s: every request due in that second is still handed out, in
    // order, 1 ms apart, each already due when the stall ends.
    let stall_end = start + Duration::from_secs(1);
    let due: Vec<Instant> = (0..1000).map(|_| pacer.next_due()).collect();
    assert!(due.iter().all(|d| *d < stall_end));
    assert!(due.windows(2).all(|w| w[1] - w[0] == Duration::from_millis(1)));
    assert_eq!(pacer.next_due(), stall_end);
}

#[test]
fn connections_share_the_rate_evenly() {
    let start = Instant::now();
    let (rate, connections) = (1000.0, 7);
    let mut due: Vec<Instant> = (0..connections)
        .flat_map(|i| {
            let mut pacer = Pacer::new(start, rate, connections, i);
            (0..1000).map(move |_| pacer.next_due())
        })
        .filter(|d| *d < start + Duration::from_secs(1))
        .collect();
    // Together they send `rate` a second, evenly spaced: request k is due at k / rate.
    assert_eq!(due.len(), 1000);
    due.sort();
    for (k, d) in due.iter().enumerate() {
        let expected = Duration::from_micros(k as u64 * 1000);
        assert!((*d - start).abs_diff(expected) < Duration::from_micros(1), "request {k}: {:?}", *d - start);
    }
}

fn http_args(args: &[&str]) -> HttpArgs {
    match Cli::try_parse_from(["strait-bench", "http"].iter().chain(args)).unwrap().command {
        Command::Http(args) => args,
        _ => unreachable!(),
    }
}

#[test]
fn targets_from_urls() {
    let t = Target::parse("http://127.0.0.1:8080/a/b?x=1&y").unwrap();
    assert_eq!((t.tls, t.addr, t.path.as_str()), (false, "127.0.0.1:8080".parse().unwrap(), "/a/b?x=1&y"));
    assert_eq!(t.authority(), "127.0.0.1:8080");
    let t = Target::parse("https://[::1]").unwrap();
    assert_eq!((t.tls, t.host.as_str(), t.port, t.path.as_str()), (true, "::1", 443, "/"));
    assert_eq!(t.authority(), "[::1]");
    assert_eq!(Target::parse("http://localhost/").unwrap().authority(), "localhost");
    assert!(Target::parse("ftp://127.0.0.1/").is_err());
    assert!(Target::parse("127.0.0.1:80").is_err());
}

#[test]
fn the_request_is_serialized_once_as_given() {
    let args = http_args(&["http://127.0.0.1:9/up?q=1", "-m", "POST", "-H", "X-A: 1", "--body", "hello"]);
    let req = request(&args.request, &Target::parse(&args.url).unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(req).unwrap(),
        "POST /up?q=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"
    );
    let args = http_args(&["http://127.0.0.1:80/", "-H", "host: example.com"]);
    let req = request(&args.request, &Target::parse(&args.url).unwrap()).unwrap();
    assert_eq!(String::from_utf8(req).unwrap(), "GET / HTTP/1.1\r\nhost: example.com\r\n\r\n");
    let bad = http_args(&["http://127.0.0.1/", "-H", "no colon"]);
    assert!(request(&bad.request, &Target::parse(&bad.url).unwrap()).is_err());
}

#[test]
fn refused_flag_combinations() {
    let usage = |args: &[&str]| matches!(run(&http_args(args)), Err(BenchError::Usage(_)));
    assert!(usage(&["http://127.0.0.1:9/", "--rate", "100", "--pipeline", "2"]));
    assert!(usage(&["http://127.0.0.1:9/", "--rate", "0"]));
    assert!(usage(&["http://127.0.0.1:9/", "--pipeline", "0"]));
    assert!(usage(&["https://127.0.0.1:9/"]));
}
