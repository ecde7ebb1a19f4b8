//! The filters that ask another service before the router, in Envoy's chain order: the
//! ext_authz check of a CUSTOM policy, then, unless a fault abort answers first, the rate limit
//! services (an EnvoyFilter `ratelimit` filter's envoy.service.ratelimit.v3 call, ASM's
//! counts in Redis). The first denial is the answer; the lines the checks allow with go
//! upstream together.

use std::rc::Rc;

use super::ext_authz::{self, BodyRead, Check, Verdict};
use super::plan::Disposition;
use super::ratelimit::{global, rls::Call};
use crate::percore::WorkerCtx;
use crate::snapshot::{GlobalLimitId, WindowIndex};
use crate::upstream::Generation;

/// The request's callouts as the plan decided them (`body`: what the check carries of the
/// request body). `None`: none was asked.
pub(super) async fn run(
    check: Option<Check>,
    body: Option<BodyRead>,
    call: Option<Call>,
    global: Option<(GlobalLimitId, WindowIndex)>,
    aborted: bool,
    ctx: &Rc<WorkerCtx>,
    snap: &Rc<Generation>,
) -> Option<Verdict> {
    let mut allowed = match check {
        // Each service's call boxed: their futures are kilobytes, and unboxed they would sit in
        // the state of every request's future (copied whole as an HTTP/2 stream's task is
        // spawned), asked or not.
        Some(check) => match Box::pin(check.run(ctx, snap, body)).await {
            deny @ Verdict::Deny { .. } => return Some(deny),
            allow => Some(allow),
        },
        None => None,
    };
    if aborted {
        return allowed;
    }
    if let Some(call) = call {
        match Box::pin(call.run(ctx, snap)).await {
            Verdict::Allow { upstream: up, downstream: down } => match &mut allowed {
                Some(Verdict::Allow { upstream, downstream }) => {
                    upstream.extend(up);
                    downstream.extend(down);
                }
                _ => allowed = Some(Verdict::Allow { upstream: up, downstream: down }),
            },
            deny => return Some(deny),
        }
    }
    if let Some(ask) = global {
        if let Some(deny) = Box::pin(global::check(ctx, snap, ask)).await {
            return Some(deny);
        }
    }
    allowed
}

/// An allowed request's lines from the checks: `upstream` set on its head in `out` (a request
/// going upstream only), `downstream` added to its response.
pub(super) fn allow<A>(
    out: &mut Vec<u8>,
    disposition: &mut Disposition<'_, A>,
    upstream: &[(String, String)],
    downstream: Vec<(String, String)>,
) {
    if let Disposition::Forward { extras, .. } = disposition {
        ext_authz::set_upstream(out, upstream);
        // The text changed: an HTTP/2 upstream reads it back.
        if !upstream.is_empty() {
            extras.h2 = None;
        }
        extras.on_allow = downstream;
    }
}
