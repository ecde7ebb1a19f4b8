//! Raw TCP proxying (Gateway servers of protocol TCP, MONGO, REDIS, MYSQL, …): pick the
//! connection's `tcp` route, a weighted destination and an endpoint, connect within the
//! cluster's timeout, then let the kernel move the bytes ([`forward`]); with `--access-log`,
//! one line per connection once it ends.

mod copy;
pub mod forward;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use tracing::debug;

use crate::duplex::Duplex;
use crate::percore::{ConnInfo, WorkerCtx};
use crate::snapshot::authz::ext_authz::ExtAuthz;
use crate::snapshot::authz::{remote_ip, Decision, Request};
use crate::snapshot::{Cluster, ClusterId, HashKey, L4Route, LoadBalancer};
use crate::stats::{L4Counters, L4Kind};
use crate::upstream::{connect, Generation, Observation, UpstreamStream};
use forward::{RelayEnd, Traffic, Transferred};

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

/// Envoy's network ext_authz check of a connection (provider, source, destination, the client
/// certificate's URI SAN): whether it may go on. `http/` makes the gRPC call; being its peer,
/// this module is handed it by the layers above.
pub trait ExtAuthzCheck:
    AsyncFn(&WorkerCtx, &Generation, &ExtAuthz, SocketAddr, SocketAddr, Option<&str>) -> bool
{
}

impl<F: AsyncFn(&WorkerCtx, &Generation, &ExtAuthz, SocketAddr, SocketAddr, Option<&str>) -> bool> ExtAuthzCheck for F {}

/// Serves one accepted connection on a TCP listener until both sides have closed.
pub async fn serve_connection(client: TcpStream, conn: ConnInfo, ctx: Rc<WorkerCtx>, ext_authz: impl ExtAuthzCheck) {
    // Held for the connection's life: a reload mid-stream never changes where it goes.
    let snap = ctx.snapshot();
    let Some(route) = snap.listener(conn.listener_port).and_then(|l| l.tcp_route(conn.local.ip(), conn.client.ip()))
    else {
        ctx.stats.tcp_no_route.inc();
        debug!(peer = %conn.peer, port = conn.listener_port, "no tcp route: connection closed");
        return;
    };
    serve_route(Client::spliced(client), Inbound::new(conn), route, &snap, &ctx, ext_authz).await;
}

/// The client's side of a proxied connection: as accepted, what it already sent (a
/// passed-through ClientHello, which goes upstream ahead of the rest) and the SNI it asked for.
#[derive(Clone, Copy)]
pub struct Inbound<'a> {
    pub conn: ConnInfo,
    pub first: &'a [u8],
    pub sni: Option<&'a str>,
    /// A terminated connection's verified client certificate's first URI SAN.
    pub peer_uri: Option<&'a str>,
}

impl Inbound<'_> {
    /// A plain TCP connection: nothing read, no SNI.
    pub fn new(conn: ConnInfo) -> Self {
        Inbound { conn, first: &[], sni: None, peer_uri: None }
    }
}

/// Proxies `client` along `route`.
pub async fn serve_route<T: Duplex>(
    client: Client<T>,
    inbound: Inbound<'_>,
    route: &L4Route,
    snap: &Generation,
    ctx: &WorkerCtx,
    ext_authz: impl ExtAuthzCheck,
) {
    if let Some(authz) = snap.listener(inbound.conn.listener_port).and_then(|l| l.l4_authz.as_deref()) {
        let request = l4_request(&inbound);
        // istiod puts the CUSTOM policies' ext_authz filter ahead of the DENY and ALLOW RBAC
        // filters: a connection its rules match is checked first, and closed on a denial.
        if let Some(provider) = authz.custom(&request).and_then(|c| c.provider.as_deref()) {
            let conn = &inbound.conn;
            if !ext_authz(ctx, snap, provider, conn.peer, conn.local, inbound.peer_uri).await {
                debug!(peer = %conn.peer, port = conn.listener_port, "ext_authz: connection denied");
                return;
            }
        }
        let allowed = authz.decide(&request).decision == Decision::Allow;
        // The CUSTOM policies' RBAC filter has shadow rules only: it counts no `allowed`.
        if authz.deny_applies || authz.allow_applies || authz.audit_applies {
            ctx.stats.record_tcp_rbac(allowed);
        }
        if !allowed {
            // Envoy's network RBAC filter closes the connection before tcp_proxy connects.
            debug!(peer = %inbound.conn.peer, port = inbound.conn.listener_port, "RBAC: connection denied");
            return;
        }
    }
    let route_stats = ctx.l4_counters(L4Kind::Route, &route.name);
    let _route_open = L4CxGuard::new(&route_stats);
    let Some(cluster_id) = route.destinations.pick(ctx.random()).and_then(|d| d.cluster) else {
        debug!(route = %route.name, "tcp route to an undeclared destination: connection closed");
        // Envoy's tcp_proxy finds no such cluster: NR, logged as `log` drops.
        let mut log = ConnLog::new(ctx, &inbound);
        log.flags = "NR";
        return;
    };
    serve_cluster(client, inbound, cluster_id, snap, ctx, &route_stats).await;
}

/// What the port's AuthorizationPolicies judge the connection by at its start: what layer 4
/// sees (addresses, port, SNI, the client certificate).
fn l4_request<'a>(inbound: &Inbound<'a>) -> Request<'a> {
    let conn = &inbound.conn;
    Request {
        http: None,
        port: conn.listener_port,
        local: conn.local.ip(),
        peer: conn.peer.ip(),
        remote: remote_ip(conn.client.ip(), &[], 0),
        sni: inbound.sni,
        peer_uri: inbound.peer_uri,
        jwt: None,
    }
}

/// Proxies `client` to one endpoint of `cluster_id`; `route_stats` count the client's side.
pub async fn serve_cluster<T: Duplex>(
    client: Client<T>,
    inbound: Inbound<'_>,
    cluster_id: ClusterId,
    snap: &Generation,
    ctx: &WorkerCtx,
    route_stats: &L4Counters,
) {
    let (cluster, live) = snap.cluster_live(cluster_id);
    let mut log = ConnLog::new(ctx, &inbound);
    log.cluster = Some(&*cluster.name);
    let cluster_stats = ctx.l4_counters(L4Kind::Cluster, &cluster.name);
    let Some(_slot) = live.connections.try_acquire(cluster.policy.max_connections) else {
        cluster_stats.overflow.inc();
        debug!(cluster = %cluster.name, "maxConnections reached: connection closed");
        log.flags = "UO";
        return;
    };
    // The pick stays taken while the connection lives: least-request weighs open streams.
    let Some(mut pick) =
        ctx.upstream.balancer.pick(snap, cluster_id, &[], ctx.random(), affinity(cluster, &inbound.conn))
    else {
        debug!(cluster = %cluster.name, "no endpoint: connection closed");
        log.flags = "UH";
        return;
    };
    let addr = cluster.endpoints[pick.endpoint].addr;
    log.upstream = Some(addr);
    let upstream = connect(addr, cluster, |c| ctx.tls.client(c)).await.ok();
    pick.settle(Some(if upstream.is_some() { Observation::Established } else { Observation::ConnectFailed }));
    let Some(mut upstream) = upstream else {
        cluster_stats.connect_fail.inc();
        // The connect failed and, with one attempt (Envoy's default), none is left.
        log.flags = "UF,URX";
        return;
    };
    if log.started.is_some() {
        // Asked of the kernel only for the log, once per connection.
        log.upstream_local = upstream.local_addr().ok();
    }
    let _cluster_open = L4CxGuard::new(&cluster_stats);
    let first = inbound.first;
    if !first.is_empty() {
        if let (Err(e), _) = upstream.write_all(first.to_vec()).await {
            debug!(cluster = %cluster.name, "tcp upstream write failed: {e}");
            return;
        }
        route_stats.rx_bytes.add(first.len() as u64);
        cluster_stats.tx_bytes.add(first.len() as u64);
        log.bytes.received.set(first.len() as u64);
    }
    let traffic = Traffic { downstream: route_stats, upstream: &cluster_stats, connection: &log.bytes };
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
    if outcome == RelayEnd::IdleTimeout {
        route_stats.idle_timeout.inc();
    }
}

/// One proxied connection as the access log tells it, its line written when the connection
/// ends however it ends (when this is dropped), as Envoy's tcp_proxy logs a connection as it
/// closes: Istio's format with `-` for every HTTP field and 0 for the response code.
struct ConnLog<'a> {
    ctx: &'a WorkerCtx,
    conn: ConnInfo,
    sni: Option<&'a str>,
    /// When the route took the connection; `None` without `--access-log` (no clock read).
    started: Option<Instant>,
    cluster: Option<&'a str>,
    upstream: Option<SocketAddr>,
    upstream_local: Option<SocketAddr>,
    /// Envoy's response flags: `-`, or why the connection was not proxied.
    flags: &'static str,
    bytes: Transferred,
}

impl<'a> ConnLog<'a> {
    fn new(ctx: &'a WorkerCtx, inbound: &Inbound<'a>) -> Self {
        ConnLog {
            ctx,
            conn: inbound.conn,
            sni: inbound.sni,
            started: ctx.access_log.as_ref().map(|_| Instant::now()),
            cluster: None,
            upstream: None,
            upstream_local: None,
            flags: "-",
            bytes: Transferred::default(),
        }
    }
}

impl Drop for ConnLog<'_> {
    fn drop(&mut self) {
        let (Some(sink), Some(started)) = (&self.ctx.access_log, self.started) else {
            return;
        };
        sink.log_with(self.ctx.draining(), |r| {
            r.start = Some(sink.wall(started));
            r.duration_ms = started.elapsed().as_millis() as u64;
            r.flags = self.flags;
            r.bytes_received = self.bytes.received.get();
            r.bytes_sent = self.bytes.sent.get();
            r.upstream_host = self.upstream;
            r.upstream_cluster.push_str(self.cluster.unwrap_or_default());
            r.upstream_local = self.upstream_local;
            r.downstream_local = Some(self.conn.local);
            r.downstream_remote = Some(self.conn.client);
            r.requested_server_name.push_str(self.sni.unwrap_or_default());
        });
    }
}

/// Counts a connection as open on a route or cluster for as long as it lives.
struct L4CxGuard<'a>(&'a L4Counters);

impl<'a> L4CxGuard<'a> {
    fn new(counters: &'a L4Counters) -> Self {
        counters.cx_total.inc();
        counters.cx_active.inc();
        Self(counters)
    }
}

impl Drop for L4CxGuard<'_> {
    fn drop(&mut self) {
        self.0.cx_active.dec();
    }
}

/// Session affinity on a TCP route: only the client's address is known (`useSourceIp`); the
/// HTTP keys are absent, so such clusters balance as without a hash policy, as Envoy's tcp_proxy.
/// The client is the PROXY header's source where one was read, the remote address Envoy's
/// proxy_protocol listener filter gives the connection.
fn affinity(cluster: &Cluster, conn: &ConnInfo) -> Option<u64> {
    matches!(&cluster.policy.load_balancer, LoadBalancer::ConsistentHash { key: HashKey::SourceIp, .. })
        .then(|| crate::snapshot::ip_hash(conn.client.ip()))
}
