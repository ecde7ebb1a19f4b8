//! Reads HTTP/1.1 answers in place, from whatever part of the stream the read buffer holds.
//! Bodies are skipped, never copied: the load generator only needs to know where each answer
//! ends, its status and whether the server will close the connection after it.

use std::cmp::min;

use strait::kit::ChunkedDecoder;

use crate::stats::ErrorKind;

/// Response heads with more header lines than this are refused as unparseable.
const MAX_HEADERS: usize = 64;

/// What one whole answer told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The server closes the connection after this answer.
    pub close: bool,
}

#[derive(Debug, Clone)]
enum State {
    Head,
    Length(u64),
    /// Strait's own scanner, in pass-through mode: it walks a whole read at once.
    Chunked(ChunkedDecoder),
    /// No length given: the body runs until the server closes.
    UntilClose,
}

/// One connection's answer reader: the state carries over between reads.
#[derive(Debug)]
pub struct Decoder {
    /// The requests are HEAD: answers have no body whatever their headers say.
    for_head: bool,
    state: State,
    answer: Answer,
}

impl Decoder {
    pub fn new(for_head: bool) -> Self {
        Decoder { for_head, state: State::Head, answer: Answer { status: 0, close: false } }
    }

    /// Consumes bytes from the front of `buf` (what was read and not yet consumed) up to the end
    /// of the next whole answer. Returns how many bytes were used and, when an answer ended, the
    /// answer; with no answer, every byte that could be used was, and the rest (part of a head
    /// or chunk-size line) must be offered again with more bytes behind it.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, Option<Answer>), ErrorKind> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self.state {
                State::Head => match self.head(rest)? {
                    Head::Partial => return Ok((used, None)),
                    Head::Interim(n) => used += n,
                    Head::Final(n) => {
                        used += n;
                        if matches!(self.state, State::Head) {
                            return Ok((used, Some(self.finish())));
                        }
                    }
                },
                State::Length(left) => {
                    let n = min(left, rest.len() as u64);
                    used += n as usize;
                    if n < left {
                        self.state = State::Length(left - n);
                        return Ok((used, None));
                    }
                    return Ok((used, Some(self.finish())));
                }
                State::Chunked(ref mut dec) => {
                    let progress = dec.feed(rest).map_err(|_| ErrorKind::Parse)?;
                    used += progress.consumed;
                    return Ok((used, progress.done.then(|| self.finish())));
                }
                State::UntilClose => return Ok((buf.len(), None)),
            }
        }
    }

    /// The server closed: the answer whose body ran until the close is whole; any other
    /// answer in progress is not.
    pub fn eof(&mut self) -> Option<Answer> {
        matches!(self.state, State::UntilClose).then(|| self.finish())
    }

    fn finish(&mut self) -> Answer {
        self.state = State::Head;
        self.answer
    }

    /// Parses a head at the front of `buf`. A final head's answer is kept and the state set to
    /// its body, or left at `Head` when it has none.
    fn head(&mut self, buf: &[u8]) -> Result<Head, ErrorKind> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut headers);
        let n = match res.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(Head::Partial),
            Err(_) => return Err(ErrorKind::Parse),
        };
        let status = res.code.ok_or(ErrorKind::Parse)?;
        if (100..200).contains(&status) && status != 101 {
            return Ok(Head::Interim(n));
        }
        // HTTP/1.0 closes unless told otherwise; 1.1 keeps alive unless told otherwise.
        let mut close = res.version == Some(0);
        let mut length = None;
        let mut chunked = None;
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && res.version == Some(0) {
                        close = false;
                    }
                }
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(h.value).ok_or(ErrorKind::Parse)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ErrorKind::Parse);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked only counts as the last coding; anything else ends at the close.
                let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default().trim_ascii();
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        }
        self.state = if self.for_head || status == 101 || status == 204 || status == 304 {
            State::Head
        } else {
            match (chunked, length) {
                (Some(true), _) => State::Chunked(ChunkedDecoder::new()),
                (Some(false), _) | (None, None) => State::UntilClose,
                (None, Some(0)) => State::Head,
                (None, Some(n)) => State::Length(n),
            }
        };
        // After 101 the connection speaks something else, and an until-close body ends it.
        close |= status == 101 || matches!(self.state, State::UntilClose);
        self.answer = Answer { status, close };
        Ok(Head::Final(n))
    }
}

/// How much of a response head the buffer held.
enum Head {
    /// Not all of it yet.
    Partial,
    /// An informational (1xx) head of this many bytes: the final one is still to come.
    Interim(usize),
    Final(usize),
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}
