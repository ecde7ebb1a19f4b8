//! Envoy's `ratelimit` filter on one request: the descriptors the route's `rate_limits` wrote
//! go to the rate limit service (envoy.service.ratelimit.v3 `ShouldRateLimit`, one unary call
//! over the HTTP/2 upstream ext_authz's gRPC check uses); OVER_LIMIT answers 429 with
//! `x-envoy-ratelimited` and the service's lines, OK lets the request through with the lines
//! the service asks for upstream, and a failed or late call lets it through
//! (`failure_mode_allowed`) unless `failure_mode_deny`, which answers 500.

mod proto;

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prost::Message;

use super::super::ext_authz::{self, Verdict};
use super::{ERROR, RATE_LIMITED};
use crate::percore::WorkerCtx;
use crate::snapshot::{RateLimitDescriptor, RateLimitService};
use crate::upstream::Generation;
use proto::{Entry, RateLimitRequest, RateLimitResponse, OK, OVER_LIMIT, SHOULD_RATE_LIMIT_PATH};

/// One call to make: the filter and the request's descriptors.
pub(in crate::http) struct Call {
    service: Arc<RateLimitService>,
    request: Vec<u8>,
}

impl Call {
    /// The call for `descriptors`, or `None` when there are none: Envoy's filter asks only
    /// about a request its route's actions wrote descriptors for.
    pub(in crate::http) fn new(service: &Arc<RateLimitService>, descriptors: Vec<RateLimitDescriptor>) -> Option<Call> {
        if descriptors.is_empty() {
            return None;
        }
        let request = RateLimitRequest {
            domain: service.domain.to_string(),
            descriptors: descriptors
                .into_iter()
                .map(|d| proto::RateLimitDescriptor {
                    entries: d.entries.into_iter().map(|(key, value)| Entry { key, value }).collect(),
                })
                .collect(),
            // Envoy's default when no filter state sets another.
            hits_addend: 1,
        };
        Some(Call { service: service.clone(), request: ext_authz::grpc_frame(&request.encode_to_vec()) })
    }

    /// Asks the service within its timeout and reads the answer as Envoy's filter does.
    pub(in crate::http) async fn run(self, ctx: &Rc<WorkerCtx>, snap: &Rc<Generation>) -> Verdict {
        let Call { service, request } = self;
        let s = &*service;
        let answer = match snap.cluster_by_name(&s.cluster_name) {
            Some(id) => {
                let call = ext_authz::unary(ctx, snap, id, &s.authority, SHOULD_RATE_LIMIT_PATH, s.timeout, request);
                call.await.and_then(|a| RateLimitResponse::decode(&a[..]).ok())
            }
            None => None,
        };
        verdict(s, answer)
    }
}

/// Envoy's reading of the answer: OVER_LIMIT limits, anything else that came back allows, and
/// no answer fails open or (`failure_mode_deny`) closed.
fn verdict(s: &RateLimitService, answer: Option<RateLimitResponse>) -> Verdict {
    let c = &s.counters;
    let lines = |h: Vec<proto::HeaderValue>| -> Vec<(String, String)> {
        h.into_iter().map(|h| (h.key.to_ascii_lowercase(), h.value)).collect()
    };
    match answer {
        Some(r) if r.overall_code == OVER_LIMIT => {
            count(&c.over_limit);
            let mut headers = lines(r.response_headers_to_add);
            headers.extend(s.response_headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
            if s.x_envoy_ratelimited {
                headers.push(("x-envoy-ratelimited".into(), "true".into()));
            }
            Verdict::Deny { status: s.status, headers, body: r.raw_body, details: RATE_LIMITED }
        }
        Some(r) => {
            // UNKNOWN is neither: Envoy counts only OK, and lets both through.
            if r.overall_code == OK {
                count(&c.ok);
            }
            // The service's lines go upstream, and its response lines to the client (Envoy's
            // `response_headers_to_add` on an OK answer).
            Verdict::Allow { upstream: lines(r.request_headers_to_add), downstream: lines(r.response_headers_to_add) }
        }
        None => {
            count(&c.error);
            if s.failure_mode_deny {
                tracing::debug!(service = &*s.cluster_name, "rate limit service failed; failure_mode_deny");
                return Verdict::Deny {
                    status: s.status_on_error,
                    headers: Vec::new(),
                    body: Vec::new(),
                    details: ERROR,
                };
            }
            count(&c.failure_mode_allowed);
            Verdict::Allow { upstream: Vec::new(), downstream: Vec::new() }
        }
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::RlsCounters;

    fn service(deny: bool) -> RateLimitService {
        RateLimitService {
            origin: "t".into(),
            domain: "ratelimit".into(),
            cluster_name: "outbound|8081||ratelimit.default.svc.cluster.local".into(),
            authority: "ratelimit".into(),
            timeout: std::time::Duration::from_secs(1),
            failure_mode_deny: deny,
            status: 429,
            status_on_error: 500,
            x_envoy_ratelimited: true,
            response_headers: [("x-limited".into(), "1".into())].into(),
            stat_prefix: "".into(),
            counters: RlsCounters::default(),
        }
    }

    #[test]
    fn over_limit_is_429_with_envoys_line_the_services_and_the_filters() {
        let s = service(false);
        let r = RateLimitResponse {
            overall_code: OVER_LIMIT,
            response_headers_to_add: vec![proto::HeaderValue { key: "X-RateLimit-Limit".into(), value: "2".into() }],
            raw_body: b"slow down".to_vec(),
            ..RateLimitResponse::default()
        };
        let Verdict::Deny { status, headers, body, details } = verdict(&s, Some(r)) else { panic!("limited") };
        assert_eq!((status, body.as_slice(), details), (429, &b"slow down"[..], RATE_LIMITED));
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-ratelimit-limit", "x-limited", "x-envoy-ratelimited"]);
        assert_eq!(s.counters.over_limit.load(Relaxed), 1);
    }

    #[test]
    fn ok_allows_with_the_upstream_lines_and_a_failure_fails_open_unless_denied() {
        let s = service(false);
        let r = RateLimitResponse {
            overall_code: OK,
            request_headers_to_add: vec![proto::HeaderValue { key: "x-rl".into(), value: "ok".into() }],
            ..RateLimitResponse::default()
        };
        assert!(
            matches!(verdict(&s, Some(r)), Verdict::Allow { upstream, .. } if upstream == [("x-rl".to_owned(), "ok".to_owned())])
        );
        assert!(
            matches!(verdict(&s, None), Verdict::Allow { upstream, downstream } if upstream.is_empty() && downstream.is_empty())
        );
        let c = &s.counters;
        let counts = [&c.ok, &c.over_limit, &c.error, &c.failure_mode_allowed].map(|c| c.load(Relaxed));
        assert_eq!(counts, [1, 0, 1, 1]);
        let closed = service(true);
        assert!(matches!(verdict(&closed, None), Verdict::Deny { status: 500, details: ERROR, .. }));
        assert_eq!(closed.counters.failure_mode_allowed.load(Relaxed), 0);
    }
}
