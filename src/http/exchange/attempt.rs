//! One try of an exchange (the endpoint, its limits and counters) and how a try fails.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::http::error::ProxyError;
use crate::http::retry::{self, TryFailure};
use crate::snapshot::{Cluster, RetryPolicy};
use crate::stats::{EndpointCounters, HttpCluster};
use crate::upstream::{LiveCluster, PoolKey};

/// One try of an exchange: where, with which limits, and (when a retry is left and the body
/// is replayable) the policy whose statuses are retried instead of relayed. The gateway's own
/// calls (ext_authz's check) make one too, to reach their cluster through the same pools.
pub(in crate::http) struct Try<'p> {
    /// Its index in the cluster.
    pub(super) endpoint: usize,
    pub(super) retry_statuses: Option<&'p RetryPolicy>,
    /// The streamed body outgrew its replay copy: its statuses are relayed, not retried
    /// (`None` for a call of the gateway's own, which retries no status).
    pub(super) abandoned: Option<&'p Cell<bool>>,
    /// The endpoint's counters on this worker, which a new connection keeps.
    pub(super) counters: &'p Arc<EndpointCounters>,
    /// Its policy (timeouts, keepalive, `maxRequestsPerConnection`) and circuit breakers.
    pub(in crate::http) cluster: &'p Cluster,
    /// The cluster's breaker counts and outlier detection state.
    pub(super) live: &'p LiveCluster,
    /// The cluster's HTTP counters on this worker.
    pub(in crate::http) stats: &'p HttpCluster,
}

impl<'p> Try<'p> {
    /// A try of a call of the gateway's own on `endpoint` of `cluster`: no status is retried.
    pub(in crate::http) fn call(
        endpoint: usize,
        counters: &'p Arc<EndpointCounters>,
        cluster: &'p Cluster,
        live: &'p LiveCluster,
        stats: &'p HttpCluster,
    ) -> Self {
        Try { endpoint, retry_statuses: None, abandoned: None, counters, cluster, live, stats }
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.cluster.endpoints[self.endpoint].addr
    }

    pub(super) fn key(&self) -> PoolKey {
        (self.addr(), self.cluster.policy.tls.as_ref().map_or(0, |t| t.pool_id))
    }
}

/// Whether a try that failed with `err` (before any response byte reached the client) is
/// sent again. What went out on the wire can only be resent when it is still held (`inline`).
pub(super) fn retried(policy: &RetryPolicy, err: &ProxyError, inline: bool) -> bool {
    let outcome = match err {
        ProxyError::ConnectFailed(_) | ProxyError::ConnectTimeout => TryFailure::ConnectFailure,
        ProxyError::ResetBeforeResponse
        | ProxyError::UpstreamIo(_)
        | ProxyError::UpstreamProtocol(_)
        | ProxyError::UnexpectedUpgrade
        | ProxyError::PerTryTimeout
            if inline =>
        {
            TryFailure::Reset
        }
        // Only produced when the policy retries it and a try is left.
        ProxyError::RetriableStatus(_) | ProxyError::RetriableGrpcStatus(_) => return true,
        _ => return false,
    };
    retry::retries(policy, outcome)
}

/// A failed exchange: the error, and whether response bytes already reached the client (then
/// the only honest signal left is closing the connection).
pub(in crate::http) struct Failure {
    pub(super) err: ProxyError,
    pub(super) response_started: bool,
}

impl Failure {
    pub(super) fn before(err: ProxyError) -> Self {
        Self { err, response_started: false }
    }

    pub(super) fn started(err: ProxyError) -> Self {
        Self { err, response_started: true }
    }

    pub(super) fn is_reset_before_response(&self) -> bool {
        !self.response_started && matches!(self.err, ProxyError::ResetBeforeResponse)
    }
}
