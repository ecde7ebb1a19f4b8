//! Which listening ports to open, keep and close when a snapshot replaces another: a pure
//! function, so the rule that an unchanged port keeps its socket is tested without sockets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::snapshot::Snapshot;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ports to bind, at this address.
    pub open: Vec<(u16, IpAddr)>,
    /// Ports whose socket stays as it is: closing a SO_REUSEPORT socket would drop the
    /// connections queued on it.
    pub keep: Vec<u16>,
    /// Ports no longer served, or served at another address (those are also in `open`).
    pub close: Vec<u16>,
}

/// The ports a snapshot asks the workers to accept on: every listener's.
pub fn served(snapshot: &Snapshot) -> BTreeMap<u16, IpAddr> {
    snapshot.listeners.iter().map(|l| (l.port, l.bind)).collect()
}

/// The plan from the ports bound now (`current`: port → bind address) to `next`.
pub fn plan(current: &BTreeMap<u16, IpAddr>, next: &BTreeMap<u16, IpAddr>) -> Plan {
    let mut plan = Plan::default();
    for (&port, &bind) in next {
        match current.get(&port) {
            Some(&old) if old == bind => plan.keep.push(port),
            Some(_) => {
                plan.close.push(port);
                plan.open.push((port, bind));
            }
            None => plan.open.push((port, bind)),
        }
    }
    plan.close.extend(current.keys().filter(|p| !next.contains_key(p)));
    plan.close.sort_unstable();
    plan
}

#[cfg(test)]
mod tests;
