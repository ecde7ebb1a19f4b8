//! The request head as the plan reads it, whatever codec parsed it (the HTTP/1.1 codec's head
//! is the one that implements it today), and what the session keeps of it once parsed: the
//! plan, the session and the exchange all import it, it imports none of them.

use super::codec::{self, BodyFraming, RequestEdits};
use crate::snapshot::RequestInfo;

/// What the head told us that the exchange needs, kept once the head's borrow ends; how the
/// request sits on its connection is the codec's ([`Http1Request`] for HTTP/1.1).
#[derive(Clone, Copy)]
pub(super) struct ReqMeta {
    pub(super) is_head: bool,
    /// The session-affinity hash, when the chosen cluster hashes and the request has the key.
    pub(super) affinity: Option<u64>,
    /// The request asks to switch protocols (WebSocket): only then may the upstream answer 101.
    pub(super) upgrade: bool,
    /// A gRPC request (its `content-type`, which the plan reads): the gateway's own answers to
    /// it are gRPC answers, and its `grpc-timeout` and response `grpc-status` count.
    pub(super) grpc: bool,
    /// What the AuthorizationPolicy stage's filters counted (Envoy's RBAC `allowed` /
    /// `denied` counters).
    pub(super) rbac: crate::stats::RbacCount,
    /// The global rate limit the request is counted under and its window, asked of Redis
    /// once the plan is made (the stage that set it ran; no earlier stage answered).
    pub(super) global_limit: Option<(crate::snapshot::GlobalLimitId, crate::snapshot::WindowIndex)>,
}

/// How a request sits on its HTTP/1.1 connection, kept once the head's borrow ends.
#[derive(Clone, Copy)]
pub(super) struct Http1Request {
    pub(super) head_len: usize,
    pub(super) framing: BodyFraming,
    /// The client asked to keep the connection (HTTP/1.1 by default, HTTP/1.0 by saying so).
    pub(super) keep_alive: bool,
    pub(super) http10: bool,
    pub(super) expect_continue: bool,
}

impl Http1Request {
    #[inline]
    pub(super) fn of(head: &codec::RequestHead<'_>) -> Self {
        Http1Request {
            head_len: head.head_len,
            framing: head.framing,
            keep_alive: head.keep_alive,
            http10: head.version == 0,
            expect_continue: head.expect_continue,
        }
    }
}

/// What the plan reads from a parsed request head, borrowed, and what it has the codec write
/// from it. The plan is generic over it (monomorphised, never `dyn`), so routing, stages and
/// upstream selection do not name a codec; an HTTP/2 codec implements it for its own head.
pub(super) trait RequestView {
    /// The request as routing sees it; `scheme` is the connection's.
    fn info<'h>(&'h self, scheme: &'h str) -> RequestInfo<'h>;
    /// What the session keeps of the head once its borrow ends.
    fn meta(&self) -> ReqMeta;
    /// The request asks to switch protocols (WebSocket): the upstream head keeps the ask, and
    /// no mirror gets a copy.
    fn upgrade(&self) -> bool;
    /// The client waits for `100 Continue` before its body: the gateway gives it, so the
    /// upstream head drops `expect`.
    fn expects_continue(&self) -> bool;
    /// Writes the upstream request head (HTTP/1.1, as the exchange speaks it): this head with
    /// `edits` applied.
    fn write_upstream(&self, out: &mut Vec<u8>, edits: &RequestEdits<'_>);
    /// The same head as an HTTP/2 upstream gets it (`tls`: over TLS), and its body's framing
    /// in the exchange, made from the client's own HTTP/2 fields rather than read back from
    /// the text; asked once. `None` where only the text carries it (an HTTP/1.1 client).
    fn upstream_h2(&self, _edits: &RequestEdits<'_>, _tls: bool) -> Option<(http::Request<()>, BodyFraming)> {
        None
    }
    /// The request target as the client sent it (the access log's path).
    fn target(&self) -> &str;
    /// The protocol as the access log names it.
    fn protocol(&self) -> &'static str;
    /// The connection may carry requests for other hosts than the one its TLS server was chosen
    /// for: an HTTP/2 client reuses a connection for any host its certificate covers (RFC 9113
    /// §9.1.1). An HTTP/1.1 client does not, so a host of another server there is the client's
    /// own choice and gets Envoy's 404, as a new connection would get it again.
    fn coalesces(&self) -> bool;
}

impl RequestView for codec::RequestHead<'_> {
    #[inline]
    fn info<'h>(&'h self, scheme: &'h str) -> RequestInfo<'h> {
        RequestInfo {
            host: self.host().unwrap_or(""),
            method: self.method,
            path: self.path(),
            query: self.query(),
            scheme,
            headers: self.headers(),
        }
    }

    #[inline]
    fn meta(&self) -> ReqMeta {
        ReqMeta {
            is_head: self.method == "HEAD",
            affinity: None,
            upgrade: self.upgrade.is_some(),
            grpc: false,
            rbac: crate::stats::RbacCount::default(),
            global_limit: None,
        }
    }

    #[inline]
    fn upgrade(&self) -> bool {
        self.upgrade.is_some()
    }

    #[inline]
    fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    #[inline]
    fn write_upstream(&self, out: &mut Vec<u8>, edits: &RequestEdits<'_>) {
        codec::write_request_head(out, self, edits);
    }

    #[inline]
    fn target(&self) -> &str {
        self.target
    }

    #[inline]
    fn protocol(&self) -> &'static str {
        if self.version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }

    #[inline]
    fn coalesces(&self) -> bool {
        false
    }
}
