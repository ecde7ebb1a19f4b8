//! One request's accounting, whatever codec carries it: Istio's metrics, the access-log line,
//! and whether the response began (after which a failure can only cut the stream).

use std::time::Instant;

use crate::percore::access_log::Record;
use crate::percore::WorkerCtx;
use crate::snapshot::ClusterId;
use crate::stats::WorkerStats;
use crate::upstream::Generation;

/// What the session and the exchange note of the request under way; reset for each one.
pub(super) struct Account {
    /// The request being served, as the access log tells it; `None` without `--access-log`.
    /// Boxed: a connection without the log should not carry its room.
    pub(super) log: Option<Box<Record>>,
    /// A response head (final or interim) of the current request reached the client: a
    /// failure can then only close the connection, and nothing is retried.
    pub(super) response_started: bool,
    /// The current request as Istio's metrics count it.
    pub(super) tally: Tally,
}

/// What Istio's standard metrics need of one request, gathered whether or not the access log
/// is on: plain numbers, no strings.
#[derive(Default)]
pub(super) struct Tally {
    /// When the head was parsed; `None` until then (nothing to count).
    pub(super) began: Option<Instant>,
    pub(super) status: u16,
    pub(super) flags: &'static str,
    /// The cluster the request went to (in the snapshot it was served with).
    pub(super) cluster: Option<ClusterId>,
    /// Bytes on the wire, heads included, as Istio's request and response sizes count them.
    pub(super) received: u64,
    pub(super) sent: u64,
    /// The last try failed in a way the retry policy retries, with no retry left.
    pub(super) retries_exhausted: bool,
    /// The `grpc-status` in the head of the upstream's response to a gRPC request (a
    /// trailers-only answer), as the retry policy judged it.
    pub(super) grpc_status: Option<u8>,
}

impl Tally {
    /// The response flags, with Envoy's URX where retries ran out (in Envoy's flag order).
    fn flags(&self) -> &'static str {
        match (self.retries_exhausted, self.flags) {
            (false, flags) => flags,
            (true, "UF") => "UF,URX",
            (true, "UC") => "UC,URX",
            (true, "UT") => "UT,URX",
            (true, "UPE") => "URX,UPE",
            (true, "-") => "URX",
            (true, other) => other,
        }
    }
}

impl Account {
    /// Room for the access-log line when `logging`.
    pub(super) fn new(logging: bool) -> Self {
        Account { log: logging.then(Box::default), response_started: false, tally: Tally::default() }
    }

    /// Forgets the last request.
    pub(super) fn begin(&mut self) {
        self.response_started = false;
        self.tally = Tally::default();
    }

    /// Counts the status, and notes it with Envoy's response flag and details for the log.
    pub(super) fn note_status(&mut self, stats: &WorkerStats, status: u16, flag: &'static str, details: &'static str) {
        stats.record_status(status);
        // A request refused before its head parsed is counted too.
        self.tally.began.get_or_insert_with(Instant::now);
        self.tally.status = status;
        self.tally.flags = flag;
        if let Some(r) = &mut self.log {
            r.answered(status, details);
        }
    }

    /// The request is over: counts it in Istio's series for `snap`'s cluster, and logs it when
    /// `--access-log` is on. `streamed`: the request body bytes read besides those already
    /// counted.
    pub(super) fn finish(&mut self, ctx: &WorkerCtx, snap: &Generation, streamed: u64) {
        self.tally.received += streamed;
        // One clock reading serves the metrics and the log, and none is taken for neither.
        let counted = cfg!(feature = "istio-metrics") || self.log.is_some();
        let elapsed = self.tally.began.filter(|_| counted).map(|began| began.elapsed());
        #[cfg(feature = "istio-metrics")]
        if let Some(elapsed) = elapsed {
            let t = &self.tally;
            let cluster = t.cluster.map(|id| snap.cluster(id));
            ctx.with_istio_series(cluster, t.status, t.flags(), |s| {
                s.requests.inc();
                s.duration.record(elapsed.as_micros() as u64);
                s.request_bytes.record(t.received * 1000);
                s.response_bytes.record(t.sent * 1000);
            });
        }
        #[cfg(not(feature = "istio-metrics"))]
        let _ = snap;
        if let (Some(sink), Some(r)) = (&ctx.access_log, &mut self.log) {
            if r.start.is_some() {
                r.bytes_received += streamed;
                r.flags = self.tally.flags();
                r.duration_ms = elapsed.map_or(0, |d| d.as_millis() as u64);
                sink.log(r, ctx.draining());
            }
            r.reset();
        }
    }
}
