//! A DNS server for the tests (and `strait-bench serve dns`), on 127.0.0.1 (UDP): A records,
//! 1 s TTL unless told otherwise, for the names it is told; a name told to fail gets SERVFAIL,
//! an unknown one NXDOMAIN. The gateway asks it with `--dns-server`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata, RData, Record, RecordType};

/// Name (lower case, no final dot) → its addresses, or `None` to fail.
type Zone = Arc<Mutex<HashMap<String, Option<Vec<Ipv4Addr>>>>>;

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Zone,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    pub fn start() -> DnsServer {
        Self::bind("127.0.0.1:0".parse().unwrap(), 1)
    }

    /// A server on `addr` whose answers carry `ttl` seconds.
    pub fn bind(addr: SocketAddr, ttl: u32) -> DnsServer {
        let socket = UdpSocket::bind(addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let server = DnsServer {
            addr: socket.local_addr().unwrap(),
            zone: Zone::default(),
            queries: Arc::default(),
            stop: Arc::default(),
        };
        let (zone, queries, stop) = (server.zone.clone(), server.queries.clone(), server.stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                queries.fetch_add(1, Ordering::Relaxed);
                let reply = answer(&query, &zone.lock().unwrap(), ttl);
                let _ = socket.send_to(&reply.to_vec().unwrap(), from);
            }
        });
        server
    }

    /// `name` answers `ips` from now on.
    pub fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        self.zone.lock().unwrap().insert(name.to_string(), Some(ips.to_vec()));
    }

    /// `name` fails (SERVFAIL) from now on.
    pub fn fail(&self, name: &str) {
        self.zone.lock().unwrap().insert(name.to_string(), None);
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(query: &Message, zone: &HashMap<String, Option<Vec<Ipv4Addr>>>, ttl: u32) -> Message {
    let mut reply = Message::new();
    reply.set_id(query.id());
    reply.set_message_type(MessageType::Response);
    reply.set_op_code(query.op_code());
    reply.set_recursion_desired(query.recursion_desired());
    reply.set_recursion_available(true);
    reply.add_queries(query.queries().to_vec());
    for q in query.queries() {
        let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
        match zone.get(&name) {
            Some(Some(ips)) => {
                // An AAAA question gets an empty answer: the name has IPv4 addresses only.
                if q.query_type() == RecordType::A {
                    for ip in ips {
                        reply.add_answer(Record::from_rdata(q.name().clone(), ttl, RData::A(rdata::A(*ip))));
                    }
                }
            }
            Some(None) => {
                reply.set_response_code(ResponseCode::ServFail);
            }
            None => {
                reply.set_response_code(ResponseCode::NXDomain);
            }
        }
    }
    reply
}
