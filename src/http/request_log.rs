//! What a request head gives its access-log line: the record is the per-core sink's
//! (`percore::access_log`), the head the HTTP codec's.

use std::net::SocketAddr;

use super::codec::RequestHead;
use crate::percore::access_log::{set, Record};

impl Record {
    /// The request as the client sent it, with the id the gateway gave it; `remote_ip` is
    /// `remote`'s address, formatted once per connection.
    pub fn begin(
        &mut self,
        head: &RequestHead<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        remote_ip: &str,
        sni: Option<&str>,
        request_id: &str,
    ) {
        let header = |name: &str| String::from_utf8_lossy(head.header(name).unwrap_or_default());
        set(&mut self.method, head.method);
        set(&mut self.path, head.target);
        self.protocol = if head.version == 0 { "HTTP/1.0" } else { "HTTP/1.1" };
        // As forwarded: the client's address appended, as Envoy logs it.
        set(&mut self.x_forwarded_for, &header("x-forwarded-for"));
        if !self.x_forwarded_for.is_empty() {
            self.x_forwarded_for.push_str(", ");
        }
        self.x_forwarded_for.push_str(remote_ip);
        set(&mut self.user_agent, &header("user-agent"));
        set(&mut self.request_id, request_id);
        set(&mut self.authority, head.host().unwrap_or_default());
        self.downstream_local = Some(local);
        self.downstream_remote = Some(remote);
        set(&mut self.requested_server_name, sni.unwrap_or_default());
    }
}
