//! The listener plan between two snapshots.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::*;
use crate::snapshot::{HostTable, Listener, ListenerProtocol};

const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn snapshot(listeners: &[(u16, IpAddr, ListenerProtocol)]) -> Snapshot {
    let listeners = listeners
        .iter()
        .map(|&(port, bind, protocol)| Listener {
            port,
            bind,
            protocol,
            servers: vec![],
            http_routes: Arc::default(),
            sni: HostTable::default(),
            l4_authz: None,
        })
        .collect();
    Snapshot::new(1, listeners, vec![], vec![])
}

fn ports(list: &[(u16, IpAddr)]) -> BTreeMap<u16, IpAddr> {
    list.iter().copied().collect()
}

#[test]
fn every_listener_is_served() {
    let s = snapshot(&[
        (80, ANY, ListenerProtocol::Http),
        (443, ANY, ListenerProtocol::Tls),
        (8080, LOCAL, ListenerProtocol::Http),
        (27017, ANY, ListenerProtocol::Tcp),
    ]);
    assert_eq!(served(&s), ports(&[(80, ANY), (443, ANY), (8080, LOCAL), (27017, ANY)]));
}

#[test]
fn first_generation_opens_everything() {
    let p = plan(&BTreeMap::new(), &ports(&[(80, ANY), (8080, LOCAL)]));
    assert_eq!(p, Plan { open: vec![(80, ANY), (8080, LOCAL)], keep: vec![], close: vec![] });
}

#[test]
fn unchanged_ports_keep_their_sockets() {
    let current = ports(&[(80, ANY), (81, ANY)]);
    assert_eq!(plan(&current, &current), Plan { open: vec![], keep: vec![80, 81], close: vec![] });
}

#[test]
fn added_and_removed_ports() {
    let p = plan(&ports(&[(80, ANY), (81, ANY)]), &ports(&[(81, ANY), (82, LOCAL)]));
    assert_eq!(p, Plan { open: vec![(82, LOCAL)], keep: vec![81], close: vec![80] });
}

#[test]
fn a_new_bind_address_rebinds_the_port() {
    let p = plan(&ports(&[(80, ANY), (90, ANY)]), &ports(&[(80, LOCAL), (90, ANY)]));
    assert_eq!(p, Plan { open: vec![(80, LOCAL)], keep: vec![90], close: vec![80] });
}

#[test]
fn everything_removed() {
    let p = plan(&ports(&[(80, ANY), (81, ANY)]), &BTreeMap::new());
    assert_eq!(p, Plan { open: vec![], keep: vec![], close: vec![80, 81] });
}
