//! `fault`: which requests are delayed or aborted, drawn per request as Envoy's fault filter
//! draws them (a percentage in millionths).

use std::time::Duration;

use crate::snapshot::{AbortStatus, Fault};

#[cfg(test)]
mod tests;

/// The body Envoy's fault filter answers an aborted request with.
pub const ABORT_BODY: &[u8] = b"fault filter abort";

/// What the fault filter does to one request: wait first, then answer locally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    pub delay: Option<Duration>,
    pub abort: Option<AbortStatus>,
}

/// Decides both faults, each on its own draw: a request may be delayed and then aborted.
pub fn inject(fault: &Fault, delay_draw: u32, abort_draw: u32) -> Injected {
    Injected {
        delay: fault.delay.filter(|(_, pct)| drawn(*pct, delay_draw)).map(|(d, _)| d),
        abort: fault.abort.filter(|(_, pct)| drawn(*pct, abort_draw)).map(|(s, _)| s),
    }
}

/// True for `percent` of draws: Envoy turns Istio's percentages into millionths.
pub fn drawn(percent: f64, draw: u32) -> bool {
    let millionths = (percent * 10_000.0).round() as u32;
    draw % 1_000_000 < millionths
}
