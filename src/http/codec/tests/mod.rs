//! Unit tests of the codec: every strictness rule with a valid and an invalid case, the
//! response framing matrix, head rewriting, and the chunked scanner (split input must give
//! the same answer as whole input).

use super::*;

fn lim() -> Limits {
    Limits::default()
}

/// Header storage for one parse. Leaked: tests parse a few hundred small heads, and this
/// keeps every helper a one-liner.
fn slots<'b>() -> &'b mut HeaderSlots<'b> {
    Box::leak(Box::new(HeaderSlots::new()))
}

fn parse(s: &[u8]) -> Result<Option<RequestHead<'_>>, ParseError> {
    parse_request(s, slots(), &lim())
}

fn ok(s: &[u8]) -> RequestHead<'_> {
    match parse(s) {
        Ok(Some(h)) => h,
        other => panic!("expected a complete head for {:?}, got {other:?}", String::from_utf8_lossy(s)),
    }
}

fn err(s: &[u8]) -> ParseError {
    match parse(s) {
        Err(e) => e,
        other => panic!("expected an error for {:?}, got {other:?}", String::from_utf8_lossy(s)),
    }
}

fn resp(s: &[u8], head: bool) -> Result<Option<ResponseHead<'_>>, ParseError> {
    parse_response(s, slots(), head, &lim())
}

fn resp_ok(s: &[u8], head: bool) -> ResponseHead<'_> {
    resp(s, head).unwrap().unwrap()
}

fn rewrite(s: &[u8], edits: &RequestEdits<'_>) -> String {
    let h = ok(s);
    let mut out = Vec::new();
    write_request_head(&mut out, &h, edits);
    String::from_utf8(out).unwrap()
}

fn rewrite_resp(s: &[u8], head_req: bool, edits: &ResponseEdits<'_>) -> (String, ResponseWritten) {
    let h = resp_ok(s, head_req);
    let mut out = Vec::new();
    let w = write_response_head(&mut out, &h, edits);
    (String::from_utf8(out).unwrap(), w)
}

/// Header lines of a written head, lowercased names, for order-insensitive checks.
fn lines(head: &str) -> Vec<String> {
    head.split("\r\n").skip(1).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

fn count_name(head: &str, name: &str) -> usize {
    lines(head).iter().filter(|l| l.split(':').next().unwrap().eq_ignore_ascii_case(name)).count()
}

const BROWSER: &[u8] = b"GET /static/app.js?v=3 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=abc123\r\n\
\r\n";

mod chunked;
mod request;
mod response;
mod rewrite;
