//! What a request gives its access-log line: the record is the per-core sink's
//! (`percore::access_log`), the request as the plan reads it, whatever codec parsed it.

use std::net::{IpAddr, SocketAddr};

use super::peer::Peer;
use crate::percore::access_log::{set, Record};
use crate::snapshot::RequestInfo;

impl Record {
    /// The request as the client sent it (`target`, `protocol`: see
    /// [`super::head::RequestView`]), from `peer`, whose client Envoy's derivation found at
    /// `remote`, with the id the gateway gave it.
    pub(super) fn begin(
        &mut self,
        req: &RequestInfo<'_>,
        target: &str,
        protocol: &'static str,
        peer: &Peer,
        remote: IpAddr,
        request_id: &str,
    ) {
        let header = |name: &str| String::from_utf8_lossy(req.header(name).unwrap_or_default());
        set(&mut self.method, req.method);
        set(&mut self.path, target);
        self.protocol = protocol;
        // As forwarded: the client's address appended, as Envoy logs it.
        set(&mut self.x_forwarded_for, &header("x-forwarded-for"));
        if !self.x_forwarded_for.is_empty() {
            self.x_forwarded_for.push_str(", ");
        }
        self.x_forwarded_for.push_str(&peer.ip);
        set(&mut self.user_agent, &header("user-agent"));
        set(&mut self.request_id, request_id);
        set(&mut self.authority, req.host);
        self.downstream_local = Some(peer.conn.local);
        // Envoy's `%DOWNSTREAM_REMOTE_ADDRESS%` is the derived client; one taken from
        // `x-forwarded-for` has no port (Envoy shows `:0`).
        self.downstream_remote =
            Some(if remote == peer.conn.client.ip() { peer.conn.client } else { SocketAddr::new(remote, 0) });
        let sni = peer.tls.as_ref().and_then(|t| t.sni.as_deref());
        set(&mut self.requested_server_name, sni.unwrap_or_default());
    }
}
