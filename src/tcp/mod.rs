//! Raw TCP proxying (Gateway servers of protocol TCP, MONGO, REDIS, MYSQL, …): pick the
//! connection's `tcp` route, a weighted destination and an endpoint, connect within the
//! cluster's timeout, then let the kernel move the bytes ([`forward`]).

pub mod forward;

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::net::TcpStream;
use tracing::debug;

use crate::admin::{L4Counters, L4Kind};
use crate::snapshot::{Cluster, HashKey, LoadBalancer, Observation};
use crate::worker::{ConnInfo, WorkerCtx};
use forward::{Outcome, Traffic};

/// Serves one accepted connection on a TCP listener until both sides have closed.
pub async fn serve_connection(client: TcpStream, conn: ConnInfo, ctx: Rc<WorkerCtx>) {
    // Held for the connection's life: a reload mid-stream never changes where it goes.
    let snap = ctx.snapshot();
    let Some(route) = snap.listener(conn.listener_port).and_then(|l| l.tcp_route(conn.local.ip(), conn.peer.ip()))
    else {
        ctx.stats.tcp_no_route.inc();
        debug!(peer = %conn.peer, port = conn.listener_port, "no tcp route: connection closed");
        return;
    };
    let route_stats = ctx.l4_counters(L4Kind::Route, &route.name);
    let _route_open = Open::new(&route_stats);
    let Some(cluster_id) = route.destinations.pick(ctx.random()).and_then(|d| d.cluster) else {
        debug!(route = %route.name, "tcp route to an undeclared destination: connection closed");
        return;
    };
    let cluster = snap.cluster(cluster_id);
    let cluster_stats = ctx.l4_counters(L4Kind::Cluster, &cluster.name);
    let Some(_slot) = cluster.connections.try_acquire(cluster.policy.max_connections) else {
        cluster_stats.overflow.inc();
        debug!(cluster = %cluster.name, "maxConnections reached: connection closed");
        return;
    };
    // The pick stays taken while the connection lives: least-request weighs open streams.
    let Some(mut pick) = ctx.upstream.balancer.pick(&snap, cluster_id, &[], ctx.random(), affinity(cluster, &conn))
    else {
        debug!(cluster = %cluster.name, "no endpoint: connection closed");
        return;
    };
    let addr = cluster.endpoints[pick.endpoint].addr;
    let upstream = connect(addr, cluster, &cluster_stats).await;
    pick.settle(Some(if upstream.is_some() { Observation::Established } else { Observation::ConnectFailed }));
    if let Some(upstream) = upstream {
        let _cluster_open = Open::new(&cluster_stats);
        let traffic = Traffic { downstream: &route_stats, upstream: &cluster_stats };
        if forward::run(client, upstream, cluster.policy.tcp_idle_timeout, traffic).await == Outcome::IdleTimeout {
            route_stats.idle_timeout.inc();
        }
    }
}

/// Connects to `addr`; `None` (the client is then closed at once) when the connect fails or
/// outlasts the cluster's `connectTimeout`.
async fn connect(addr: SocketAddr, cluster: &Cluster, stats: &L4Counters) -> Option<TcpStream> {
    match monoio::time::timeout(cluster.policy.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            // Small writes (a database protocol's requests) must not wait for Nagle.
            let _ = stream.set_nodelay(true);
            crate::upstream::keepalive::configure(&stream, cluster);
            Some(stream)
        }
        Ok(Err(e)) => {
            stats.connect_fail.inc();
            debug!(cluster = %cluster.name, %addr, "tcp upstream connect failed: {e}");
            None
        }
        Err(_) => {
            stats.connect_fail.inc();
            debug!(cluster = %cluster.name, %addr, "tcp upstream connect timed out");
            None
        }
    }
}

/// Counts a connection as open on a route or cluster for as long as it lives.
struct Open<'a>(&'a L4Counters);

impl<'a> Open<'a> {
    fn new(counters: &'a L4Counters) -> Self {
        counters.cx_total.inc();
        counters.cx_active.inc();
        Self(counters)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.cx_active.dec();
    }
}

/// Session affinity on a TCP route: only the client's address is known (`useSourceIp`); the
/// HTTP keys are absent, so such clusters balance as without a hash policy, as Envoy's tcp_proxy.
fn affinity(cluster: &Cluster, conn: &ConnInfo) -> Option<u64> {
    matches!(&cluster.policy.load_balancer, LoadBalancer::ConsistentHash { key: HashKey::SourceIp, .. })
        .then(|| crate::upstream::ip_hash(conn.peer.ip()))
}
