//! What one load thread measured: latencies in an hdrhistogram, operations, bytes, answers by
//! status class and failures by kind. Threads record alone and are merged once at the end.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Why an operation failed, as the report counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection (or TLS handshake's TCP part) could not be opened.
    Connect,
    /// An operation or connect took longer than `--timeout`.
    Timeout,
    /// A read or write failed (reset, broken pipe).
    Io,
    /// The peer closed before the answer was whole.
    Closed,
    /// An answer that is not HTTP as we read it (for HTTP/2, a protocol error).
    Parse,
    /// An HTTP answer outside 2xx and 3xx (as wrk counts them).
    Status,
    /// The TLS handshake failed (or did not agree on HTTP/2 when the load speaks it).
    Tls,
    /// The server reset the stream (HTTP/2 RST_STREAM) instead of answering.
    Reset,
    /// A gRPC answer whose `grpc-status` is not 0 (OK), or that has none.
    Grpc,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Io,
        ErrorKind::Closed,
        ErrorKind::Parse,
        ErrorKind::Status,
        ErrorKind::Tls,
        ErrorKind::Reset,
        ErrorKind::Grpc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Closed => "closed",
            ErrorKind::Parse => "parse",
            ErrorKind::Status => "status",
            ErrorKind::Tls => "tls",
            ErrorKind::Reset => "reset",
            ErrorKind::Grpc => "grpc",
        }
    }
}

/// Latencies are kept in nanoseconds up to an hour at 3 significant figures: loopback answers
/// take tens of microseconds, a stalled backend seconds.
const HIGHEST_NS: u64 = 3_600_000_000_000;

/// The counters the progress line reads while a thread runs; one per thread, on its own cache
/// line, written only by that thread.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Live {
    pub operations: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// One thread's measurements. Nothing before `measure_from` (the warm-up) is kept.
#[derive(Debug)]
pub struct Recorder {
    pub latency: Histogram<u64>,
    pub operations: u64,
    pub bytes: u64,
    pub errors: [u64; ErrorKind::ALL.len()],
    /// Answers by status class: index 1 is 1xx … 5 is 5xx; 0 counts anything else.
    pub statuses: [u64; 6],
    measure_from: Instant,
    live: Arc<Live>,
}

impl Recorder {
    pub fn new(measure_from: Instant, live: Arc<Live>) -> Self {
        Recorder {
            latency: Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds"),
            operations: 0,
            bytes: 0,
            errors: [0; ErrorKind::ALL.len()],
            statuses: [0; 6],
            measure_from,
            live,
        }
    }

    /// A recorder for merging into: nothing feeds its progress counters.
    pub fn empty() -> Self {
        Recorder::new(Instant::now(), Arc::default())
    }

    fn measuring(&self, now: Instant) -> bool {
        now >= self.measure_from
    }

    /// An operation that finished at `now` after `latency`.
    pub fn record(&mut self, now: Instant, latency: Duration) {
        if self.measuring(now) {
            self.operations += 1;
            self.live.operations.fetch_add(1, Relaxed);
            self.latency.saturating_record((latency.as_nanos() as u64).max(1));
        }
    }

    /// A whole HTTP answer: its latency, its status class, and a `Status` error outside 2xx and
    /// 3xx (as wrk counts them).
    pub fn answer(&mut self, now: Instant, latency: Duration, status: u16) {
        self.record(now, latency);
        self.status(now, status);
        if !(200..400).contains(&status) {
            self.error(now, ErrorKind::Status);
        }
    }

    /// An HTTP answer's status, counted by class.
    pub fn status(&mut self, now: Instant, status: u16) {
        if self.measuring(now) {
            let class = usize::from(status / 100);
            self.statuses[if (1..=5).contains(&class) { class } else { 0 }] += 1;
        }
    }

    /// Payload bytes moved (read for HTTP, written for TCP throughput).
    pub fn bytes(&mut self, now: Instant, n: u64) {
        if self.measuring(now) {
            self.bytes += n;
            self.live.bytes.fetch_add(n, Relaxed);
        }
    }

    pub fn error(&mut self, now: Instant, kind: ErrorKind) {
        if self.measuring(now) {
            self.errors[kind as usize] += 1;
            self.live.errors.fetch_add(1, Relaxed);
        }
    }

    /// Adds another thread's measurements (histograms merge exactly: same bounds).
    pub fn merge(&mut self, other: &Recorder) {
        self.latency.add(&other.latency).expect("histograms share their bounds");
        self.operations += other.operations;
        self.bytes += other.bytes;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for (a, b) in self.statuses.iter_mut().zip(other.statuses) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests;
