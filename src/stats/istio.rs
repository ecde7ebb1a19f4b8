//! Istio's standard request metrics: the series of `istio_requests_total` and the request
//! duration and size histograms per destination service, response code, flags, protocol and
//! gRPC status, and gRPC's message counters per destination service, kept per worker (`admin`
//! renders them, and derives the `istio_tcp_*` counters from the TCP ones).
//!
//! As with every worker counter, a worker is the only writer of its series (single-writer
//! stores, no lock); it takes its registry's lock only the first time it sees a series, and a
//! scrape takes it to read. Histograms have fixed buckets, Envoy's defaults (which Istio uses
//! for all three): a bucket is a counter, so a scrape merges workers by adding, never by
//! locking a worker's histogram.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::Counter;
use crate::snapshot::Cluster;

#[cfg(test)]
pub(crate) mod tests;

/// Envoy's default histogram bucket bounds (0.5, 1, 5, … 3,600,000), which Istio keeps for
/// durations (ms) and sizes, in thousandths of the unit: recording compares integers.
pub const BUCKETS: [u64; 19] = [
    500,
    1_000,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
    3_600_000_000,
];

/// A histogram with [`BUCKETS`] (plus +Inf); single writer.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; BUCKETS.len() + 1],
    /// In thousandths of the unit, so that sub-millisecond durations add up.
    sum_milli: Counter,
}

impl Histogram {
    /// Records `value_milli` thousandths of the unit (µs for a duration in ms).
    #[inline]
    pub fn record(&self, value_milli: u64) {
        let i = BUCKETS.iter().position(|&b| value_milli <= b).unwrap_or(BUCKETS.len());
        self.buckets[i].inc();
        self.sum_milli.add(value_milli);
    }
}

/// One series of `istio_requests_total` and its three histograms, on one worker.
#[derive(Debug, Default)]
pub struct RequestSeries {
    pub requests: Counter,
    pub duration: Histogram,
    pub request_bytes: Histogram,
    pub response_bytes: Histogram,
}

/// One destination's gRPC message counters on one worker: `istio_request_messages_total` and
/// `istio_response_messages_total`.
#[derive(Debug, Default)]
pub struct MessageSeries {
    pub requests: Counter,
    pub responses: Counter,
}

/// What tells series apart: the destination (its cluster name; empty when the gateway
/// answered itself) and the request's [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub cluster: Arc<str>,
    pub outcome: Outcome,
}

/// How a request ended, as Istio's labels tell it: the response code, Envoy's response flags,
/// and the protocol with its gRPC status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Outcome {
    pub response_code: u16,
    pub response_flags: &'static str,
    pub protocol: Protocol,
}

/// `request_protocol` and `grpc_response_status`: Istio's stats filter says `grpc` for a gRPC
/// request (its `content-type`), `http` for any other, HTTP/2 included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// `grpc_response_status` empty.
    Http,
    /// The response's gRPC status (trailers, else head, else mapped from the HTTP status, as
    /// Envoy's `Grpc::Common::getGrpcStatus`); `None` without a response.
    Grpc(Option<u8>),
}

/// The destination labels of a cluster, settled when a worker first registers it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Destination {
    /// The service's host (`reviews.default.svc.cluster.local`, or a ServiceEntry host).
    pub service: Arc<str>,
    /// The resource's namespace.
    pub namespace: Arc<str>,
    /// The subset, Istio's nearest thing to a workload version.
    pub version: Option<Arc<str>>,
}

impl Destination {
    /// The labels of requests that went to `cluster`; `None`: the gateway answered itself.
    pub fn of(cluster: Option<&Cluster>) -> Self {
        cluster.map_or_else(Self::default, |c| Self {
            service: c.host.clone(),
            namespace: c.namespace.clone(),
            version: c.subset.clone(),
        })
    }
}

/// One worker's request series, and its message series by cluster name.
#[derive(Debug, Default)]
pub struct IstioRegistry {
    series: Mutex<BTreeMap<SeriesKey, (Destination, Arc<RequestSeries>)>>,
    messages: Mutex<BTreeMap<Arc<str>, Messages>>,
}

/// A cluster's message series and its labels.
type Messages = (Destination, Arc<MessageSeries>);

impl IstioRegistry {
    /// The series for `key`, created on first use; workers cache what this returns.
    pub fn register(&self, key: SeriesKey, destination: Destination) -> Arc<RequestSeries> {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.entry(key).or_insert_with(|| (destination, Arc::default())).1.clone()
    }

    /// The message series of `cluster`, created on first use; workers cache what this returns.
    pub fn register_messages(&self, cluster: Arc<str>, destination: Destination) -> Arc<MessageSeries> {
        let mut series = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        series.entry(cluster).or_insert_with(|| (destination, Arc::default())).1.clone()
    }
}

/// A series summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesTotals {
    pub requests: u64,
    pub duration: HistogramTotals,
    pub request_bytes: HistogramTotals,
    pub response_bytes: HistogramTotals,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramTotals {
    /// Per bucket, not cumulative; the last is +Inf.
    pub buckets: [u64; BUCKETS.len() + 1],
    pub sum_milli: u64,
}

impl HistogramTotals {
    fn add(&mut self, h: &Histogram) {
        for (sum, c) in self.buckets.iter_mut().zip(&h.buckets) {
            *sum += c.get();
        }
        self.sum_milli += h.sum_milli.get();
    }
}

/// Every worker's series, summed by key.
#[derive(Debug, Default)]
pub struct IstioTotals {
    pub requests: BTreeMap<SeriesKey, (Destination, SeriesTotals)>,
    /// By cluster name: the gRPC messages requests and responses carried.
    pub messages: BTreeMap<Arc<str>, (Destination, [u64; 2])>,
}

pub fn sum<'a>(registries: impl Iterator<Item = &'a IstioRegistry>) -> IstioTotals {
    let mut out = IstioTotals::default();
    for registry in registries {
        let series = registry.series.lock().unwrap_or_else(|e| e.into_inner());
        for (key, (dest, s)) in series.iter() {
            let (_, t) = out.requests.entry(key.clone()).or_insert_with(|| (dest.clone(), SeriesTotals::default()));
            t.requests += s.requests.get();
            t.duration.add(&s.duration);
            t.request_bytes.add(&s.request_bytes);
            t.response_bytes.add(&s.response_bytes);
        }
        drop(series);
        let messages = registry.messages.lock().unwrap_or_else(|e| e.into_inner());
        for (cluster, (dest, s)) in messages.iter() {
            let (_, t) = out.messages.entry(cluster.clone()).or_insert_with(|| (dest.clone(), [0; 2]));
            t[0] += s.requests.get();
            t[1] += s.responses.get();
        }
    }
    out
}
