//! Pre-compiled request matchers: the `match` blocks of an HTTPRoute, ready for the hot path.

use regex::Regex;

/// What a route lookup needs to know about a request; borrowed from the parsed head.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// Host header or authority, as sent (port and case are handled by the lookup).
    pub host: &'a str,
    pub method: &'a str,
    /// Path without the query string: `/`-rooted, except `*` for `OPTIONS *` and empty for
    /// CONNECT, which match no route.
    pub path: &'a str,
    /// Query string without the `?`.
    pub query: Option<&'a str>,
    /// The connection's scheme, `http` or `https`: never a client's x-forwarded-proto.
    pub scheme: &'a str,
    pub headers: &'a [httparse::Header<'a>],
}

impl<'a> RequestInfo<'a> {
    /// First value of a header, names compared case-insensitively in place.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// First value of a query parameter (raw, not percent-decoded, as Envoy compares).
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

/// Istio's StringMatch, compiled. Regexes are RE2 full matches, anchored once at compile time.
#[derive(Debug, Clone)]
pub enum StringMatcher {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Regex),
}

impl StringMatcher {
    /// Compiles `pattern` as a full-match regex (`^(?:pattern)$`).
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        Ok(Self::Regex(Regex::new(&format!("^(?:{pattern})$"))?))
    }

    pub fn matches(&self, value: &str, ignore_case: bool) -> bool {
        match self {
            Self::Exact(s) if ignore_case => s.eq_ignore_ascii_case(value),
            Self::Exact(s) => **s == *value,
            Self::Prefix(p) if ignore_case => {
                value.len() >= p.len() && value.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            Self::Prefix(p) => value.starts_with(&**p),
            Self::Regex(re) => re.is_match(value),
        }
    }

    /// Source text, for /config_dump and diagnostics.
    pub fn describe(&self) -> String {
        match self {
            Self::Exact(s) => format!("exact:{s}"),
            Self::Prefix(s) => format!("prefix:{s}"),
            Self::Regex(re) => format!("regex:{}", re.as_str()),
        }
    }

    /// A prefix `/` (or empty) matches every path: such a block is a catch-all.
    pub fn is_match_all_prefix(&self) -> bool {
        matches!(self, Self::Prefix(p) if p.is_empty() || &**p == "/")
    }
}

/// How a header (or query parameter) value must look.
#[derive(Debug, Clone)]
pub enum ValueMatcher {
    /// `{}` or regex `*`: the header must be present, any value.
    Present,
    Value(StringMatcher),
}

#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Lower-case header name; `:authority`-style pseudo names are mapped at compile time.
    pub name: Box<str>,
    pub value: ValueMatcher,
    /// From `withoutHeaders`: the block matches when this matcher does not; a missing header is
    /// treated as the empty string, as Envoy does.
    pub invert: bool,
}

impl HeaderMatcher {
    fn matches(&self, req: &RequestInfo<'_>) -> bool {
        let value = req.header(&self.name);
        let hit = match (&self.value, value) {
            (ValueMatcher::Present, v) => v.is_some(),
            (ValueMatcher::Value(m), Some(v)) => std::str::from_utf8(v).is_ok_and(|v| m.matches(v, false)),
            (ValueMatcher::Value(m), None) => self.invert && m.matches("", false),
        };
        hit != self.invert
    }
}

#[derive(Debug, Clone)]
pub struct QueryMatcher {
    pub name: Box<str>,
    pub value: ValueMatcher,
}

/// One `match` entry of an HTTPRoute: every field present must hold (AND). `gateways`, `port`
/// and `sourceLabels` are resolved when the snapshot is compiled for a listener, so they never
/// cost anything per request.
#[derive(Debug, Clone, Default)]
pub struct MatchBlock {
    pub name: Option<Box<str>>,
    pub uri: Option<StringMatcher>,
    pub ignore_uri_case: bool,
    pub scheme: Option<StringMatcher>,
    pub method: Option<StringMatcher>,
    pub authority: Option<StringMatcher>,
    pub headers: Vec<HeaderMatcher>,
    pub query_params: Vec<QueryMatcher>,
}

impl MatchBlock {
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        self.uri.as_ref().is_none_or(|m| m.matches(req.path, self.ignore_uri_case))
            && self.scheme.as_ref().is_none_or(|m| m.matches(req.scheme, false))
            && self.method.as_ref().is_none_or(|m| m.matches(req.method, false))
            && self.authority.as_ref().is_none_or(|m| m.matches(req.host, false))
            && self.headers.iter().all(|h| h.matches(req))
            && self.query_params.iter().all(|q| match (&q.value, req.query_param(&q.name)) {
                (_, None) => false,
                (ValueMatcher::Present, Some(_)) => true,
                (ValueMatcher::Value(m), Some(v)) => m.matches(v, false),
            })
    }

    /// Matches every request (no condition, or only a `/` prefix): Istio moves such routes last
    /// when it concatenates several VirtualServices for one host.
    pub fn is_catch_all(&self) -> bool {
        self.uri.as_ref().is_none_or(StringMatcher::is_match_all_prefix)
            && self.scheme.is_none()
            && self.method.is_none()
            && self.authority.is_none()
            && self.headers.is_empty()
            && self.query_params.is_empty()
    }
}
