//! The open loop's schedule: when each request of one connection is due.

use std::time::{Duration, Instant};

/// One connection's share of the rate. Due times are computed from the request's number, not
/// added up from the previous one, so they never drift; a connection that falls behind gets
/// due times in the past and sends them at once until it has caught up, skipping none.
#[derive(Debug, Clone)]
pub struct Pacer {
    first: Instant,
    period_ns: f64,
    sent: u64,
}

impl Pacer {
    /// Connection `index` of `connections` that share `rate` requests/s between them, from
    /// `start`. Each sends `rate / connections` a second, and connection `index` starts
    /// `index / rate` seconds in, so that together their requests are evenly spaced rather
    /// than sent in bursts of one per connection.
    pub fn new(start: Instant, rate: f64, connections: usize, index: usize) -> Self {
        let gap_ns = 1e9 / rate;
        Pacer {
            first: start + Duration::from_nanos((index as f64 * gap_ns) as u64),
            period_ns: gap_ns * connections as f64,
            sent: 0,
        }
    }

    /// When the next request is due; each call moves on by one request.
    pub fn next_due(&mut self) -> Instant {
        let due = self.due();
        self.sent += 1;
        due
    }

    /// When the next request is due, without moving on: a sender that may give up waiting for
    /// it (its connection lost) leaves it due for the next.
    pub fn due(&self) -> Instant {
        self.first + Duration::from_nanos((self.sent as f64 * self.period_ns).round() as u64)
    }
}
