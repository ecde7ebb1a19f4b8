//! `/server_info`: the fields of Envoy's `admin.v3.ServerInfo` that mean something here, plus
//! Strait's own (`workers`, `driver`, `reloads`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::publish::{Driver, Shared};

pub fn render(shared: &Shared, command_line: &Value) -> Value {
    // Whole seconds, as Envoy reports them. No hot restart: the current epoch is the only one.
    let uptime = duration(Duration::from_secs(shared.uptime().as_secs()));
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "state": shared.readiness().name(),
        "uptime_current_epoch": uptime,
        "uptime_all_epochs": uptime,
        "command_line_options": command_line,
        "workers": shared.workers.len(),
        "driver": driver(shared.drivers()),
        "reloads": reloads(shared),
    })
}

/// Reloads so far and why the last one failed (null once a later one succeeded): a refused
/// config leaves the old one serving and `/ready` at 200, as Envoy stays ready when it rejects
/// an update, so this is where the refusal shows besides the log and
/// `strait_reloads_total{result="failed"}`.
pub fn reloads(shared: &Shared) -> Value {
    json!({
        "ok": shared.control.reload_ok.get(),
        "failed": shared.control.reload_failed.get(),
        "last_error": shared.last_reload_error(),
    })
}

/// What the workers run on: one name when they agree, `mixed` when `auto` fell back on some
/// (the start log counts them), null before they run.
fn driver(used: &[Driver]) -> Option<&'static str> {
    let first = *used.first()?;
    Some(if used.iter().all(|&d| d == first) { first.name() } else { "mixed" })
}

/// A protobuf `Duration` in its JSON form: seconds with 0, 3, 6 or 9 fractional digits, as
/// many as the value needs, then `s`.
pub fn duration(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        format!("{secs}s")
    } else if nanos % 1_000_000 == 0 {
        format!("{secs}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{secs}.{:06}s", nanos / 1_000)
    } else {
        format!("{secs}.{nanos:09}s")
    }
}

#[cfg(test)]
mod tests;
