//! Envoy's CORS filter as istiod configures it from a VirtualService `corsPolicy`: which
//! preflights the gateway answers itself, and the CORS headers of forwarded responses.
//!
//! Sources: envoyproxy/envoy `source/extensions/filters/http/cors/cors_filter.cc`
//! (`decodeHeaders`, `encodeHeaders`, `isOriginAllowed`) and istio/istio
//! `pilot/pkg/networking/core/route/route.go` (`TranslateCORSPolicy`). Envoy writes no `vary`.

use std::borrow::Cow;

use crate::snapshot::{Cors, RequestInfo};

/// A response header line: the name as Envoy's HTTP/1 codec writes it (lower case), the value.
pub type HeaderLine<'r> = (&'static str, Cow<'r, str>);

const ALLOW_ORIGIN: &str = "access-control-allow-origin";
const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
const ALLOW_METHODS: &str = "access-control-allow-methods";
const ALLOW_HEADERS: &str = "access-control-allow-headers";
const MAX_AGE: &str = "access-control-max-age";
const EXPOSE_HEADERS: &str = "access-control-expose-headers";

/// What the gateway does with a request under a route's CORS policy.
#[derive(Debug, PartialEq)]
pub enum Preflight<'r> {
    /// Not a CORS preflight: forward it (CORS headers may still go on the response).
    NotPreflight,
    /// Answer locally, 200 with an empty body, with these header lines first, in Envoy's
    /// order (its `server`, `date` and `content-length: 0` follow them).
    Answer(Vec<HeaderLine<'r>>),
    /// A preflight whose origin is not allowed, with `unmatchedPreflights: FORWARD`: forward
    /// it untouched, and add nothing to its response.
    Forward,
}

/// Decides whether `req` is a preflight the gateway answers.
pub fn preflight<'r>(cors: &'r Cors, req: &RequestInfo<'r>) -> Preflight<'r> {
    let Some(origin) = origin(req) else { return Preflight::NotPreflight };
    // Envoy compares `:method` with "OPTIONS" byte for byte, and needs a non-empty
    // access-control-request-method (cors_filter.cc decodeHeaders).
    if req.method != "OPTIONS" {
        return Preflight::NotPreflight;
    }
    let Some(method) = non_empty(req, "access-control-request-method") else { return Preflight::NotPreflight };
    let allowed = allowed(cors, origin);
    // forward_not_matching_preflights: istiod sets false only for IGNORE; Envoy then answers
    // the preflight itself, only without allow-origin.
    if allowed.is_none() && cors.forward_unmatched_preflights {
        return Preflight::Forward;
    }
    let mut lines = preflight_lines(cors, req, allowed, method);
    if allowed.is_some() {
        // Envoy's own encodeHeaders runs on its local answer too: it sets allow-origin and
        // allow-credentials again (same values, same place) and appends expose-headers.
        lines.extend(expose_line(cors));
    }
    Preflight::Answer(lines)
}

/// Header lines to set on an actual (forwarded) response, replacing any of the same name the
/// backend sent (Envoy's `setInline`); empty when the request is not CORS or its origin is
/// not allowed (cors_filter.cc encodeHeaders: nothing without a latched origin).
pub fn response_headers<'r>(cors: &'r Cors, req: &RequestInfo<'r>) -> Vec<HeaderLine<'r>> {
    match origin(req).and_then(|o| allowed(cors, o)) {
        Some(origin) => actual_lines(cors, origin),
        None => Vec::new(),
    }
}

/// The preflight answer as decodeHeaders builds it: allow-origin (only when allowed),
/// allow-credentials, allow-methods, allow-headers, max-age.
fn preflight_lines<'r>(
    cors: &'r Cors,
    req: &RequestInfo<'r>,
    origin: Option<&'r str>,
    method: &'r [u8],
) -> Vec<HeaderLine<'r>> {
    let mut lines = Vec::with_capacity(6);
    if let Some(origin) = origin {
        // The request's Origin echoed, never `*`.
        lines.push((ALLOW_ORIGIN, Cow::Borrowed(origin)));
    }
    if cors.allow_credentials == Some(true) {
        lines.push((ALLOW_CREDENTIALS, Cow::Borrowed("true")));
    }
    if let Some(methods) = configured(&cors.allow_methods) {
        // A policy of exactly `*` echoes what the browser asked for.
        let value = if methods == "*" { String::from_utf8_lossy(method) } else { Cow::Borrowed(methods) };
        lines.push((ALLOW_METHODS, value));
    }
    if let Some(headers) = configured(&cors.allow_headers) {
        // Envoy echoes an absent access-control-request-headers as an empty value.
        let asked = req.header("access-control-request-headers").unwrap_or_default();
        let value = if headers == "*" { String::from_utf8_lossy(asked) } else { Cow::Borrowed(headers) };
        lines.push((ALLOW_HEADERS, value));
    }
    if let Some(age) = cors.max_age {
        // istiod writes whole seconds: strconv.FormatInt(maxAge.GetSeconds(), 10).
        lines.push((MAX_AGE, Cow::Owned(age.as_secs().to_string())));
    }
    lines
}

/// What encodeHeaders sets on a response to an allowed CORS request: allow-origin,
/// allow-credentials, expose-headers.
fn actual_lines<'r>(cors: &'r Cors, origin: &'r str) -> Vec<HeaderLine<'r>> {
    let mut lines = vec![(ALLOW_ORIGIN, Cow::Borrowed(origin))];
    if cors.allow_credentials == Some(true) {
        lines.push((ALLOW_CREDENTIALS, Cow::Borrowed("true")));
    }
    lines.extend(expose_line(cors));
    lines
}

fn expose_line(cors: &Cors) -> Option<HeaderLine<'_>> {
    configured(&cors.expose_headers).map(|expose| (EXPOSE_HEADERS, Cow::Borrowed(expose)))
}

/// The Origin of a CORS request: present and non-empty, else the filter does nothing.
fn origin<'r>(req: &RequestInfo<'r>) -> Option<&'r [u8]> {
    non_empty(req, "origin")
}

fn non_empty<'r>(req: &RequestInfo<'r>, name: &str) -> Option<&'r [u8]> {
    req.header(name).filter(|v| !v.is_empty())
}

/// The origin, when a matcher allows it. Envoy also asks each matcher about the literal `*`,
/// so `exact: "*"` or `regex: ".*"` allows every origin; no matchers allow none. istiod sets
/// no ignore_case. A non-UTF-8 origin (no browser sends one) matches nothing here, where
/// Envoy would echo its raw bytes past a `*` matcher; it still makes the request CORS.
fn allowed<'r>(cors: &Cors, origin: &'r [u8]) -> Option<&'r str> {
    let origin = std::str::from_utf8(origin).ok()?;
    cors.allow_origins.iter().any(|m| m.matches("*", false) || m.matches(origin, false)).then_some(origin)
}

/// Envoy skips a header whose configured value is empty.
fn configured(value: &Option<Box<str>>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests;
