//! Raw TCP proxying (Gateway servers of protocol TCP, MONGO, REDIS, MYSQL, …): pick the
//! connection's `tcp` route, a weighted destination and an endpoint, connect within the
//! cluster's timeout, then let the kernel move the bytes ([`forward`]).

mod copy;
pub mod forward;

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::net::TcpStream;
use tracing::debug;

use crate::admin::{L4Counters, L4Kind};
use crate::snapshot::{Cluster, ClusterId, HashKey, L4Route, LoadBalancer, Observation, Snapshot};
use crate::upstream::UpstreamStream;
use crate::worker::{ConnInfo, WorkerCtx};
use forward::{Outcome, Traffic};

/// The client side of a proxied stream. `T` is the stream a terminating protocol hands over
/// (TLS's), so that this module need not know it.
pub enum Client<T> {
    /// Raw TCP (and TLS passed through): the kernel moves the bytes.
    Spliced(TcpStream),
    /// A stream the gateway terminated: the plaintext is copied through bounded buffers (as it
    /// is toward an upstream the cluster's DestinationRule has TLS originated to).
    Terminated(T),
}

impl Client<TcpStream> {
    /// A plain socket, with no terminated stream type to name.
    pub fn spliced(stream: TcpStream) -> Self {
        Client::Spliced(stream)
    }
}

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
    serve_route(Client::spliced(client), &[], route, &snap, conn, &ctx).await;
}

/// Proxies `client` along `route`, sending `first` (bytes already read from the client, such
/// as a passed-through ClientHello) ahead of the rest.
pub async fn serve_route<T: AsyncReadRent + AsyncWriteRent + Split>(
    client: Client<T>,
    first: &[u8],
    route: &L4Route,
    snap: &Snapshot,
    conn: ConnInfo,
    ctx: &Rc<WorkerCtx>,
) {
    let route_stats = ctx.l4_counters(L4Kind::Route, &route.name);
    let _route_open = Open::new(&route_stats);
    let Some(cluster_id) = route.destinations.pick(ctx.random()).and_then(|d| d.cluster) else {
        debug!(route = %route.name, "tcp route to an undeclared destination: connection closed");
        return;
    };
    serve_cluster(client, first, cluster_id, snap, conn, ctx, &route_stats).await;
}

/// Proxies `client` to one endpoint of `cluster_id`; `route_stats` count the client's side.
pub async fn serve_cluster<T: AsyncReadRent + AsyncWriteRent + Split>(
    client: Client<T>,
    first: &[u8],
    cluster_id: ClusterId,
    snap: &Snapshot,
    conn: ConnInfo,
    ctx: &Rc<WorkerCtx>,
    route_stats: &L4Counters,
) {
    let cluster = snap.cluster(cluster_id);
    let cluster_stats = ctx.l4_counters(L4Kind::Cluster, &cluster.name);
    let Some(_slot) = cluster.connections.try_acquire(cluster.policy.max_connections) else {
        cluster_stats.overflow.inc();
        debug!(cluster = %cluster.name, "maxConnections reached: connection closed");
        return;
    };
    // The pick stays taken while the connection lives: least-request weighs open streams.
    let Some(mut pick) = ctx.upstream.balancer.pick(snap, cluster_id, &[], ctx.random(), affinity(cluster, &conn))
    else {
        debug!(cluster = %cluster.name, "no endpoint: connection closed");
        return;
    };
    let addr = cluster.endpoints[pick.endpoint].addr;
    let upstream = connect(addr, cluster, ctx, &cluster_stats).await;
    pick.settle(Some(if upstream.is_some() { Observation::Established } else { Observation::ConnectFailed }));
    let Some(mut upstream) = upstream else {
        return;
    };
    let _cluster_open = Open::new(&cluster_stats);
    if !first.is_empty() {
        if let (Err(e), _) = upstream.write_all(first.to_vec()).await {
            debug!(cluster = %cluster.name, "tcp upstream write failed: {e}");
            return;
        }
        route_stats.rx_bytes.add(first.len() as u64);
        cluster_stats.tx_bytes.add(first.len() as u64);
    }
    let traffic = Traffic { downstream: route_stats, upstream: &cluster_stats };
    let idle = cluster.policy.tcp_idle_timeout;
    // The kernel moves the bytes when both sides are plain sockets; TLS on either side is
    // copied through user space.
    let outcome = match (client, upstream) {
        (Client::Spliced(client), UpstreamStream::Plain(upstream)) => {
            forward::run(client, upstream, idle, traffic).await
        }
        (Client::Spliced(client), upstream) => copy::run(client, upstream, idle, traffic).await,
        (Client::Terminated(client), upstream) => copy::run(client, upstream, idle, traffic).await,
    };
    if outcome == Outcome::IdleTimeout {
        route_stats.idle_timeout.inc();
    }
}

/// Connects to `addr` (and runs the TLS handshake when the cluster originates TLS); `None`
/// (the client is then closed at once) when that fails or outlasts the cluster's
/// `connectTimeout`.
async fn connect(addr: SocketAddr, cluster: &Cluster, ctx: &WorkerCtx, stats: &L4Counters) -> Option<UpstreamStream> {
    let tls = cluster.policy.tls.as_ref().map(|t| ctx.tls.client(&t.config));
    match monoio::time::timeout(cluster.policy.connect_timeout, UpstreamStream::open(addr, cluster, tls)).await {
        Ok(Ok(stream)) => Some(stream),
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
