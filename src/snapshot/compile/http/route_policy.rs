//! A route's policies as the data plane applies them: header edits, the retry policy and CORS,
//! each converted as istiod converts it.

use crate::config::virtual_service::{CorsPolicy, HeaderOperations, Headers, HttpRetry, UnmatchedPreflights};
use crate::snapshot::{Cors, HeaderEdits, HeaderOps, RetryOn, RetryPolicy, StringMatcher};

use super::{string_matcher, Regexes, RouteError};

/// Header edits with lower-case names. Pseudo-headers cannot be edited and are dropped;
/// `:authority`/`host` in `set` or `add` is the authority (kept as `host` in `set`, where the
/// data plane reads it), as istiod turns it into a host rewrite.
pub(super) fn header_ops(h: &Headers) -> HeaderOps {
    let edits = |ops: &Option<HeaderOperations>, request: bool| -> HeaderEdits {
        let Some(ops) = ops else {
            return HeaderEdits::default();
        };
        let mut out = HeaderEdits::default();
        let mut authority = None;
        for (list, map, is_set) in [(&mut out.set, &ops.set, true), (&mut out.add, &ops.add, false)] {
            for (name, value) in map {
                let name = name.to_ascii_lowercase();
                if name == ":authority" || name == "host" {
                    if request && (is_set || authority.is_none()) {
                        authority = Some(value.as_str());
                    }
                } else if !name.starts_with(':') {
                    list.push((name.into(), value.as_str().into()));
                }
            }
        }
        if let Some(a) = authority {
            out.set.push(("host".into(), a.into()));
        }
        out.remove = ops
            .remove
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .filter(|n| !n.starts_with(':') && n != "host")
            .map(Into::into)
            .collect();
        out
    };
    HeaderOps { request: edits(&h.request, true), response: edits(&h.response, false) }
}

/// istiod's `retry.ConvertPolicy`: none → the default policy; `attempts` ≤ 0 (or unset in a
/// `retries` block) disables; `retryOn` replaces the conditions, numbers becoming retriable
/// status codes.
pub(super) fn retry_policy(r: Option<&HttpRetry>) -> RetryPolicy {
    let Some(r) = r else {
        return RetryPolicy::default();
    };
    let attempts = r.attempts.unwrap_or(0);
    if attempts <= 0 {
        return RetryPolicy { attempts: 0, ..RetryPolicy::default() };
    }
    let mut policy = RetryPolicy { attempts: attempts as u32, ..RetryPolicy::default() };
    if let Some(on) = r.retry_on.as_deref().filter(|s| !s.trim().is_empty()) {
        let mut retry_on = RetryOn::default();
        let mut codes = Vec::new();
        for part in on.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(code) = part.parse::<u16>().ok().filter(|&c| is_known_status(c)) {
                codes.push(code);
                continue;
            }
            match part {
                "5xx" => retry_on.server_error_5xx = true,
                "gateway-error" => retry_on.gateway_error = true,
                "reset" => retry_on.reset = true,
                "connect-failure" => retry_on.connect_failure = true,
                "retriable-4xx" => retry_on.retriable_4xx = true,
                "refused-stream" => retry_on.refused_stream = true,
                "retriable-status-codes" => retry_on.retriable_status_codes = true,
                "unavailable" => retry_on.unavailable = true,
                "cancelled" => retry_on.cancelled = true,
                "deadline-exceeded" => retry_on.deadline_exceeded = true,
                "resource-exhausted" => retry_on.resource_exhausted = true,
                "internal" => retry_on.internal = true,
                other => tracing::warn!(condition = other, "retryOn condition not supported; ignored"),
            }
        }
        retry_on.retriable_status_codes |= !codes.is_empty();
        policy.retry_on = retry_on;
        policy.retriable_status_codes = codes;
    }
    policy.per_try_timeout = r.per_try_timeout.map(|d| d.get()).filter(|d| !d.is_zero());
    policy.retry_remote_localities = r.retry_remote_localities.unwrap_or(false);
    policy
}

/// The codes Go's `http.StatusText` knows: istiod treats only those numbers as status codes.
fn is_known_status(code: u16) -> bool {
    matches!(code, 100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

pub(super) fn cors(c: &CorsPolicy, regexes: &mut Regexes) -> Result<Cors, RouteError> {
    let allow_origins = if c.allow_origins.is_empty() {
        c.allow_origin.iter().map(|o| StringMatcher::Exact(o.as_str().into())).collect()
    } else {
        let mut out = Vec::new();
        for (i, o) in c.allow_origins.iter().enumerate() {
            out.extend(string_matcher(o, regexes).map_err(|e| (format!("corsPolicy.allowOrigins[{i}]"), e))?);
        }
        out
    };
    let joined = |v: &[String]| (!v.is_empty()).then(|| v.join(",").into_boxed_str());
    Ok(Cors {
        allow_origins,
        allow_methods: joined(&c.allow_methods),
        allow_headers: joined(&c.allow_headers),
        expose_headers: joined(&c.expose_headers),
        max_age: c.max_age.map(|d| d.get()),
        allow_credentials: c.allow_credentials,
        forward_unmatched_preflights: c.unmatched_preflights != Some(UnmatchedPreflights::Ignore),
    })
}
