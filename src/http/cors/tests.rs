//! The CORS decisions on requests built as the codec hands them over.

use std::time::Duration;

use super::*;
use crate::snapshot::StringMatcher;

/// Allows `https://app.test` only; every other field empty, unmatched preflights forwarded.
fn policy() -> Cors {
    Cors {
        allow_origins: vec![StringMatcher::Exact("https://app.test".into())],
        allow_methods: None,
        allow_headers: None,
        expose_headers: None,
        max_age: None,
        allow_credentials: None,
        forward_unmatched_preflights: true,
    }
}

/// Every field set, as a full corsPolicy compiles.
fn full_policy() -> Cors {
    Cors {
        allow_methods: Some("GET,POST".into()),
        allow_headers: Some("content-type,x-token".into()),
        expose_headers: Some("x-trace,x-count".into()),
        max_age: Some(Duration::from_secs(86400)),
        allow_credentials: Some(true),
        ..policy()
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    NotPreflight,
    Forward,
    Answer(Vec<(String, String)>),
}

fn owned(lines: Vec<HeaderLine<'_>>) -> Vec<(String, String)> {
    lines.into_iter().map(|(n, v)| (n.to_string(), v.into_owned())).collect()
}

fn lines(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// Runs `f` on a request with `method`, a Host header and `headers`.
fn with_request<T>(method: &str, headers: &[(&str, &[u8])], f: impl FnOnce(&RequestInfo<'_>) -> T) -> T {
    let mut all = vec![httparse::Header { name: "Host", value: b"app.test" }];
    all.extend(headers.iter().map(|(name, value)| httparse::Header { name, value }));
    let req = RequestInfo { host: "app.test", method, path: "/api", query: None, scheme: "http", headers: &all };
    f(&req)
}

fn bytes<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
    headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
}

fn decide(cors: &Cors, method: &str, headers: &[(&str, &str)]) -> Outcome {
    with_request(method, &bytes(headers), |req| match preflight(cors, req) {
        Preflight::NotPreflight => Outcome::NotPreflight,
        Preflight::Forward => Outcome::Forward,
        Preflight::Answer(l) => Outcome::Answer(owned(l)),
    })
}

fn response(cors: &Cors, method: &str, headers: &[(&str, &str)]) -> Vec<(String, String)> {
    with_request(method, &bytes(headers), |req| owned(response_headers(cors, req)))
}

/// A browser's preflight from `origin`.
fn preflight_from(origin: &str) -> [(&str, &str); 2] {
    [("Origin", origin), ("Access-Control-Request-Method", "PUT")]
}

#[test]
fn allowed_preflight_is_answered_in_envoys_order() {
    let got = decide(&full_policy(), "OPTIONS", &preflight_from("https://app.test"));
    let want = lines(&[
        ("access-control-allow-origin", "https://app.test"),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "GET,POST"),
        ("access-control-allow-headers", "content-type,x-token"),
        ("access-control-max-age", "86400"),
        ("access-control-expose-headers", "x-trace,x-count"),
    ]);
    assert_eq!(got, Outcome::Answer(want));
}

#[test]
fn minimal_preflight_answer_echoes_the_origin_only() {
    let got = decide(&policy(), "OPTIONS", &preflight_from("https://app.test"));
    assert_eq!(got, Outcome::Answer(lines(&[("access-control-allow-origin", "https://app.test")])));
}

#[test]
fn header_names_are_case_insensitive() {
    let headers = [("ORIGIN", "https://app.test"), ("access-control-REQUEST-method", "PUT")];
    assert!(matches!(decide(&policy(), "OPTIONS", &headers), Outcome::Answer(_)));
}

#[test]
fn max_age_is_whole_seconds() {
    let answer = |age| {
        let cors = Cors { max_age: Some(age), ..policy() };
        match decide(&cors, "OPTIONS", &preflight_from("https://app.test")) {
            Outcome::Answer(l) => l.into_iter().find(|(n, _)| n == "access-control-max-age").map(|(_, v)| v),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(answer(Duration::from_millis(1500)).as_deref(), Some("1"));
    assert_eq!(answer(Duration::from_millis(500)).as_deref(), Some("0"));
    assert_eq!(answer(Duration::from_secs(600)).as_deref(), Some("600"));
}

#[test]
fn credentials_only_when_true() {
    for (credentials, want) in [(Some(true), true), (Some(false), false), (None, false)] {
        let cors = Cors { allow_credentials: credentials, ..policy() };
        let has =
            |l: &[(String, String)]| l.iter().any(|(n, v)| n == "access-control-allow-credentials" && v == "true");
        let Outcome::Answer(l) = decide(&cors, "OPTIONS", &preflight_from("https://app.test")) else { panic!() };
        assert_eq!(has(&l), want, "preflight, {credentials:?}");
        assert_eq!(has(&response(&cors, "GET", &[("Origin", "https://app.test")])), want, "actual, {credentials:?}");
    }
}

#[test]
fn wildcard_methods_and_headers_echo_the_request() {
    let cors = Cors { allow_methods: Some("*".into()), allow_headers: Some("*".into()), ..policy() };
    let headers = [
        ("Origin", "https://app.test"),
        ("Access-Control-Request-Method", "DELETE"),
        ("Access-Control-Request-Headers", "x-a,x-b"),
    ];
    let want = lines(&[
        ("access-control-allow-origin", "https://app.test"),
        ("access-control-allow-methods", "DELETE"),
        ("access-control-allow-headers", "x-a,x-b"),
    ]);
    assert_eq!(decide(&cors, "OPTIONS", &headers), Outcome::Answer(want));

    let want = lines(&[
        ("access-control-allow-origin", "https://app.test"),
        ("access-control-allow-methods", "PUT"),
        ("access-control-allow-headers", ""),
    ]);
    assert_eq!(decide(&cors, "OPTIONS", &preflight_from("https://app.test")), Outcome::Answer(want));
}

#[test]
fn empty_configured_values_are_left_out() {
    let cors = Cors {
        allow_methods: Some("".into()),
        allow_headers: Some("".into()),
        expose_headers: Some("".into()),
        ..policy()
    };
    let want = lines(&[("access-control-allow-origin", "https://app.test")]);
    assert_eq!(decide(&cors, "OPTIONS", &preflight_from("https://app.test")), Outcome::Answer(want.clone()));
    assert_eq!(response(&cors, "GET", &[("Origin", "https://app.test")]), want);
}

#[test]
fn unmatched_preflight_forward_passes_it_on_untouched() {
    let cors = full_policy();
    assert_eq!(decide(&cors, "OPTIONS", &preflight_from("https://evil.test")), Outcome::Forward);
    assert!(response(&cors, "OPTIONS", &preflight_from("https://evil.test")).is_empty());
}

#[test]
fn unmatched_preflight_ignore_is_answered_without_origin() {
    let cors = Cors { forward_unmatched_preflights: false, ..full_policy() };
    let want = lines(&[
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "GET,POST"),
        ("access-control-allow-headers", "content-type,x-token"),
        ("access-control-max-age", "86400"),
    ]);
    assert_eq!(decide(&cors, "OPTIONS", &preflight_from("https://evil.test")), Outcome::Answer(want));
}

#[test]
fn no_allowed_origins_allow_nothing() {
    let forward = Cors { allow_origins: Vec::new(), ..full_policy() };
    assert_eq!(decide(&forward, "OPTIONS", &preflight_from("https://app.test")), Outcome::Forward);
    assert!(response(&forward, "GET", &[("Origin", "https://app.test")]).is_empty());

    let ignore = Cors { forward_unmatched_preflights: false, ..forward };
    let Outcome::Answer(l) = decide(&ignore, "OPTIONS", &preflight_from("https://app.test")) else { panic!() };
    assert!(l.iter().all(|(n, _)| n != "access-control-allow-origin"), "{l:?}");
}

#[test]
fn without_origin_nothing_is_cors() {
    let cors = Cors { forward_unmatched_preflights: false, ..full_policy() };
    let acrm = [("Access-Control-Request-Method", "PUT")];
    assert_eq!(decide(&cors, "OPTIONS", &acrm), Outcome::NotPreflight);
    assert!(response(&cors, "OPTIONS", &acrm).is_empty());
    let empty = [("Origin", ""), ("Access-Control-Request-Method", "PUT")];
    assert_eq!(decide(&cors, "OPTIONS", &empty), Outcome::NotPreflight);
    assert!(response(&cors, "GET", &empty).is_empty());
}

#[test]
fn options_without_request_method_is_an_actual_request() {
    let cors = full_policy();
    for headers in [
        &[("Origin", "https://app.test")][..],
        &[("Origin", "https://app.test"), ("Access-Control-Request-Method", "")],
    ] {
        assert_eq!(decide(&cors, "OPTIONS", headers), Outcome::NotPreflight);
        assert_eq!(response(&cors, "OPTIONS", headers).len(), 3, "forwarded, then CORS headers on the response");
    }
}

#[test]
fn only_uppercase_options_is_a_preflight() {
    let cors = full_policy();
    assert_eq!(decide(&cors, "options", &preflight_from("https://app.test")), Outcome::NotPreflight);
    assert_eq!(decide(&cors, "GET", &preflight_from("https://app.test")), Outcome::NotPreflight);
}

#[test]
fn actual_request_gets_origin_credentials_and_expose_headers() {
    let want = lines(&[
        ("access-control-allow-origin", "https://app.test"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "x-trace,x-count"),
    ]);
    assert_eq!(response(&full_policy(), "POST", &[("Origin", "https://app.test")]), want);
    assert_eq!(response(&policy(), "GET", &[("Origin", "https://app.test")]), want[..1].to_vec());
    assert!(response(&full_policy(), "POST", &[("Origin", "https://evil.test")]).is_empty());
    assert!(response(&full_policy(), "POST", &[]).is_empty());
}

#[test]
fn origin_matchers() {
    let allows = |m: StringMatcher, origin: &str| {
        let cors = Cors { allow_origins: vec![m], ..policy() };
        !response(&cors, "GET", &[("Origin", origin)]).is_empty()
    };
    let exact = || StringMatcher::Exact("https://app.test".into());
    assert!(allows(exact(), "https://app.test"));
    assert!(!allows(exact(), "https://APP.test"), "case-sensitive: istiod sets no ignore_case");
    assert!(!allows(exact(), "https://app.test.evil"));

    let prefix = || StringMatcher::Prefix("https://".into());
    assert!(allows(prefix(), "https://any.test"));
    assert!(!allows(prefix(), "http://any.test"));

    let regex = || StringMatcher::regex(r"https://[a-z]+\.example\.com").unwrap();
    assert!(allows(regex(), "https://shop.example.com"));
    assert!(!allows(regex(), "https://shop.example.com.evil"), "a full match");
    assert!(!allows(regex(), "https://a.b.example.com"));
}

#[test]
fn a_matcher_that_accepts_star_allows_every_origin() {
    for m in [StringMatcher::Exact("*".into()), StringMatcher::regex(".*").unwrap(), StringMatcher::Prefix("".into())] {
        let cors = Cors { allow_origins: vec![m], ..policy() };
        let got = response(&cors, "GET", &[("Origin", "https://anyone.test")]);
        assert_eq!(got, lines(&[("access-control-allow-origin", "https://anyone.test")]), "echoed, never `*`");
    }
}

#[test]
fn any_of_several_matchers_allows() {
    let cors = Cors {
        allow_origins: vec![StringMatcher::Exact("https://a.test".into()), StringMatcher::Prefix("https://b.".into())],
        ..policy()
    };
    assert!(matches!(decide(&cors, "OPTIONS", &preflight_from("https://b.test")), Outcome::Answer(_)));
    assert_eq!(decide(&cors, "OPTIONS", &preflight_from("https://c.test")), Outcome::Forward);
}

/// Our one departure from Envoy, which would echo the raw bytes past a `*` matcher.
#[test]
fn non_utf8_origin_matches_nothing_but_is_cors() {
    let cors = Cors { allow_origins: vec![StringMatcher::regex(".*").unwrap()], ..full_policy() };
    let headers: [(&str, &[u8]); 2] = [("Origin", b"https://\xff.test"), ("Access-Control-Request-Method", b"PUT")];
    with_request("OPTIONS", &headers, |req| {
        assert!(response_headers(&cors, req).is_empty());
        assert_eq!(preflight(&cors, req), Preflight::Forward);
    });
    let ignore = Cors { forward_unmatched_preflights: false, ..cors };
    with_request("OPTIONS", &headers, |req| {
        let Preflight::Answer(l) = preflight(&ignore, req) else { panic!() };
        assert!(l.iter().all(|(n, _)| *n != "access-control-allow-origin"));
    });
}
