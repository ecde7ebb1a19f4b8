//! The client of a connection as routing and header edits see it: its address and, when the
//! gateway terminated TLS, what the handshake told and under which snapshot it was made.

use std::cell::RefCell;
use std::rc::Rc;

use crate::percore::ConnInfo;
use crate::snapshot::TokenBucket;
use crate::upstream::Generation;

/// The client, as routing and header edits see it.
///
/// Every client is external, as Envoy 1.40 judges clients at an Istio gateway: istiod sets
/// `use_remote_address` on gateway connection managers and no `internal_address_config`
/// (unless `ENABLE_HCM_INTERNAL_NETWORKS`), and since Envoy 1.33 (its runtime guard
/// `explicit_internal_address_config`, removed in 1.36) no address is internal without one,
/// private and loopback ones included. So a request always gets `x-envoy-external-address`
/// and a fresh `x-request-id`, never `x-envoy-internal`.
pub(super) struct Peer {
    pub(super) conn: ConnInfo,
    /// Formatted once per connection for `x-forwarded-for`.
    pub(super) ip: String,
    /// `Some` on an HTTPS connection.
    pub(super) tls: Option<TlsSession>,
    /// The connection's own token buckets (`per_downstream_connection` limits).
    pub(super) buckets: ConnBuckets,
}

/// A connection's own buckets, for the limits set `per_downstream_connection` (Envoy keeps them
/// in the connection's filter state): made full on the connection's first request under each
/// limit, found by the limit's live id, so a reload that keeps a limit keeps them too. Kept
/// here, beside the connection, so that the rate limit filters (which ask services through
/// the ext_authz module's gRPC call) and the connection's state do not import each other.
#[derive(Default)]
pub(super) struct ConnBuckets {
    pub(super) buckets: RefCell<Vec<OwnBuckets>>,
}

/// A connection's buckets for one limit: (the limit's live id, its bucket, its descriptors').
pub(super) type OwnBuckets = (u64, TokenBucket, Box<[TokenBucket]>);

impl Peer {
    /// See [`TlsSession::follow`].
    pub(super) fn stale(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.stale)
    }
}

/// A terminated TLS connection, as routing and header edits see it.
pub struct TlsSession {
    /// The ClientHello's SNI: each request finds its Gateway server by it, in the snapshot the
    /// request is served with.
    pub sni: Option<Box<str>>,
    /// `x-forwarded-client-cert` for a verified client certificate.
    pub xfcc: Option<Box<str>>,
    /// The verified client certificate's first URI SAN (a SPIFFE ID in a mesh): what
    /// AuthorizationPolicy's `principals` and `namespaces` match.
    pub peer_uri: Option<Box<str>>,
    /// The latest snapshot in which the connection's server has the TLS rules its handshake was
    /// made under.
    settled: Rc<Generation>,
    /// A reload changed those rules: the connection serves its request under the ones it was
    /// made with, then closes.
    stale: bool,
}

impl TlsSession {
    pub fn new(
        sni: Option<Box<str>>,
        xfcc: Option<Box<str>>,
        peer_uri: Option<Box<str>>,
        handshake: Rc<Generation>,
    ) -> Self {
        Self { sni, xfcc, peer_uri, settled: handshake, stale: false }
    }

    /// The snapshot to serve the next request with. A reload applies to the connection at
    /// once unless it changed its server's TLS rules (another mode, pins, versions or suites;
    /// see `Server::continues`): a client admitted under the old rules must not go on under
    /// the new, so the request is served with the snapshot the connection was made under,
    /// and the connection then ends, as Envoy drains the connections of a changed filter chain.
    pub(super) fn follow(&mut self, current: Rc<Generation>, port: u16) -> Rc<Generation> {
        if self.stale {
            return self.settled.clone();
        }
        if current.generation == self.settled.generation {
            return current;
        }
        let sni = self.sni.as_deref();
        let now = current.listener(port).and_then(|l| l.server_for_sni(sni));
        let then = self.settled.listener(port).and_then(|l| l.server_for_sni(sni));
        match (now, then) {
            (Some(now), Some(then)) if now.continues(then) => {
                self.settled = current.clone();
                current
            }
            _ => {
                self.stale = true;
                self.settled.clone()
            }
        }
    }
}
