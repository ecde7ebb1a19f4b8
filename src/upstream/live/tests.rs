//! The registry keeps a cluster's and an endpoint's state while they stay in the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::snapshot::Endpoint;

fn endpoint(addr: &str) -> Endpoint {
    Endpoint { addr: addr.parse().unwrap(), weight: 1, labels: Arc::new(BTreeMap::new()), locality: None }
}

fn snapshot(clusters: &[(&str, &[&str])]) -> Snapshot {
    let clusters = clusters
        .iter()
        .map(|(host, addrs)| Cluster::test(host, 80, addrs.iter().map(|a| endpoint(a)).collect()))
        .collect();
    Snapshot::new(0, vec![], clusters, vec![])
}

#[test]
fn state_stays_with_its_cluster_and_address_and_leaves_with_them() {
    let mut registry = LiveRegistry::default();
    let first = registry.resolve(&snapshot(&[("a.local", &["10.0.0.1:80", "10.0.0.2:80"]), ("b.local", &[])]));
    let open = first.cluster(0).connections.try_acquire(u32::MAX).unwrap();

    // Reordered clusters and endpoints, one endpoint gone, one new: state follows the names.
    let second = registry.resolve(&snapshot(&[("b.local", &[]), ("a.local", &["10.0.0.3:80", "10.0.0.2:80"])]));
    let a = second.cluster(1);
    assert!(Arc::ptr_eq(&a.connections, &first.cluster(0).connections), "the open connection is still counted");
    assert!(!a.connections.has_room(1));
    assert!(Arc::ptr_eq(&a.health[1], &first.cluster(0).health[1]), "10.0.0.2 keeps its outlier state");
    assert!(!Arc::ptr_eq(&a.health[0], &first.cluster(0).health[0]), "10.0.0.3 is new");
    assert!(Arc::ptr_eq(&second.cluster(0).retries, &first.cluster(1).retries));

    // Kept over any number of reloads; gone once the config drops it, fresh when it returns.
    let third = registry.resolve(&snapshot(&[("a.local", &["10.0.0.2:80"])]));
    assert!(Arc::ptr_eq(&third.cluster(0).health[0], &first.cluster(0).health[1]));
    let fourth = registry.resolve(&snapshot(&[("b.local", &[]), ("a.local", &["10.0.0.1:80"])]));
    assert!(!Arc::ptr_eq(&fourth.cluster(0).retries, &first.cluster(1).retries), "b.local left and came back");
    assert!(!Arc::ptr_eq(&fourth.cluster(1).health[0], &first.cluster(0).health[0]), "10.0.0.1 left and came back");
    assert!(Arc::ptr_eq(&fourth.cluster(1).connections, &first.cluster(0).connections));
    drop(open);
    assert!(fourth.cluster(1).connections.has_room(1));
}
