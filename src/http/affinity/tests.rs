//! Hash keys read from query strings and cookie lines.

use super::*;

/// The first value of `name` in a query string, as the affinity reads it.
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    let req = RequestInfo { host: "", method: "GET", path: "/", query: Some(query), scheme: "http", headers: &[] };
    req.query_param(name)
}

#[test]
fn query_value_finds_the_first_exact_name() {
    assert_eq!(query_value("a=1&user=bob&user=eve", "user"), Some("bob"));
    assert_eq!(query_value("username=bob", "user"), None);
    assert_eq!(query_value("flag&x=1", "flag"), Some(""));
}

#[test]
fn cookie_value_reads_one_line_of_pairs() {
    assert_eq!(cookie_value(b"a=1; session=xyz ;b=2", "session"), Some(&b"xyz"[..]));
    assert_eq!(cookie_value(b"mysession=1", "session"), None);
    assert_eq!(cookie_value(b"session", "session"), None);
    assert_eq!(cookie_value(b"session=\"abc\"", "session"), Some(&b"abc"[..]), "quotes are not the value");
}

#[test]
fn generated_cookie_has_envoys_attributes() {
    let hour = Duration::from_secs(3600);
    assert_eq!(set_cookie("s", "0a", Some("/app"), hour), "s=\"0a\"; Max-Age=3600; Path=/app; HttpOnly");
    assert_eq!(set_cookie("s", "0a", None, Duration::ZERO), "s=\"0a\"; HttpOnly", "zero ttl: a session cookie");
}
