//! The filters that ask another service before the router, in Envoy's chain order: the
//! ext_authz check of a CUSTOM policy, then, unless a fault abort answers first, the rate limit
//! services (an EnvoyFilter `ratelimit` filter's envoy.service.ratelimit.v3 call, ASM's
//! counts in Redis). The first denial is the answer; the lines the checks allow with go
//! upstream together.

use std::rc::Rc;

use super::ext_authz::{Check, Verdict};
use super::ratelimit::{global, rls::Call};
use crate::percore::WorkerCtx;
use crate::snapshot::{GlobalLimitId, WindowIndex};
use crate::upstream::Generation;

/// The request's callouts as the plan decided them. `None`: none was asked, or all allowed
/// with no line to add.
pub(super) async fn run(
    check: Option<Check>,
    call: Option<Call>,
    global: Option<(GlobalLimitId, WindowIndex)>,
    aborted: bool,
    ctx: &Rc<WorkerCtx>,
    snap: &Rc<Generation>,
) -> Option<Verdict> {
    let mut lines = match check {
        Some(check) => match check.run(ctx, snap).await {
            Verdict::Allow(lines) => Some(lines),
            deny => return Some(deny),
        },
        None => None,
    };
    if aborted {
        return lines.map(Verdict::Allow);
    }
    if let Some(call) = call {
        match call.run(ctx, snap).await {
            Verdict::Allow(more) => lines.get_or_insert_with(Vec::new).extend(more),
            deny => return Some(deny),
        }
    }
    if let Some(ask) = global {
        if let Some(deny) = global::check(ctx, snap, ask).await {
            return Some(deny);
        }
    }
    lines.map(Verdict::Allow)
}
