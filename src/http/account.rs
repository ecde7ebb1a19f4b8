//! One request's accounting, whatever codec carries it: Istio's metrics, the access-log line,
//! and whether the response began (after which a failure can only cut the stream).

use std::time::Instant;

use super::codec::{self, HeaderSlots, Limits};
use super::grpc;
use crate::percore::access_log::Record;
use crate::percore::WorkerCtx;
use crate::snapshot::ClusterId;
use crate::stats::{Protocol, WorkerStats};
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
    /// A gRPC request: Istio's `request_protocol="grpc"`, and the status and messages below.
    pub(super) grpc: bool,
    /// The `grpc-status` of the response to a gRPC request: in its head (a trailers-only
    /// answer, as the retry policy judged it, or the gateway's own answer), then in its
    /// trailers, which win.
    pub(super) grpc_status: Option<u8>,
    /// The gRPC messages from the client and to it.
    pub(super) messages: [u64; 2],
}

impl Tally {
    /// What the bodies of a gRPC exchange showed.
    pub(super) fn saw(&mut self, seen: grpc::Seen) {
        self.messages = seen.messages;
        if seen.trailer_status.is_some() {
            self.grpc_status = seen.trailer_status;
        }
    }

    /// The request's protocol and gRPC status as Istio's labels tell them: a gRPC response
    /// without `grpc-status` gets the one its HTTP status maps to, as Envoy's
    /// `Grpc::Common::getGrpcStatus` gives it (none without a response).
    fn protocol(&self) -> Protocol {
        match self.grpc {
            false => Protocol::Http,
            true => Protocol::Grpc(self.grpc_status.or((self.status != 0).then(|| grpc::from_http(self.status)))),
        }
    }

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

    /// Notes one of the gateway's own answers, as [`Self::note_status`] does; `encoded`: the
    /// answer as HTTP/1.1 (each codec encodes it so), whose `grpc-status` a gRPC request's
    /// answer carries in its head.
    pub(super) fn note_local(
        &mut self,
        stats: &WorkerStats,
        status: u16,
        encoded: &[u8],
        flag: &'static str,
        details: &'static str,
    ) {
        self.note_status(stats, status, flag, details);
        if self.tally.grpc {
            let mut slots = HeaderSlots::new();
            let head = codec::parse_response(encoded, &mut slots, false, &Limits::default());
            self.tally.grpc_status = head.ok().flatten().and_then(|h| h.header("grpc-status").and_then(grpc::status));
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
            let outcome =
                crate::stats::Outcome { response_code: t.status, response_flags: t.flags(), protocol: t.protocol() };
            ctx.with_istio_series(cluster, outcome, |s, messages| {
                s.requests.inc();
                s.duration.record(elapsed.as_micros() as u64);
                s.request_bytes.record(t.received * 1000);
                s.response_bytes.record(t.sent * 1000);
                if let Some(m) = messages {
                    m.requests.add(t.messages[0]);
                    m.responses.add(t.messages[1]);
                }
            });
        }
        #[cfg(not(feature = "istio-metrics"))]
        let _ = snap;
        if let (Some(sink), Some(r)) = (&ctx.access_log, &mut self.log) {
            if r.start.is_some() {
                r.bytes_received += streamed;
                r.flags = self.tally.flags();
                r.grpc_status = match self.tally.protocol() {
                    Protocol::Grpc(status) => status.map(grpc::name),
                    Protocol::Http => None,
                };
                r.duration_ms = elapsed.map_or(0, |d| d.as_millis() as u64);
                sink.log(r, ctx.draining());
            }
            r.reset();
        }
    }
}
