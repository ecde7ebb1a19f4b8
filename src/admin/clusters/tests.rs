//! `/clusters` text.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::snapshot::{Cluster, Endpoint, Snapshot};
use crate::upstream::LiveRegistry;

#[test]
fn one_block_per_endpoint() {
    let endpoint = |addr: &str, locality: Option<&str>| Endpoint {
        addr: addr.parse().unwrap(),
        weight: 3,
        labels: Arc::new(BTreeMap::new()),
        locality: locality.map(Into::into),
    };
    let clusters = vec![Cluster::test(
        "backend.local",
        80,
        vec![endpoint("127.0.0.1:8080", None), endpoint("127.0.0.2:8080", Some("eu/west-1a/r7"))],
    )];
    let snapshot = Generation::new(Snapshot::new(0, vec![], clusters, vec![]), &mut LiveRegistry::default());
    let text = render(&snapshot, &Default::default());
    for line in [
        "outbound|80||backend.local::observability_name::outbound|80||backend.local",
        "outbound|80||backend.local::default_priority::max_connections::4294967295",
        "outbound|80||backend.local::127.0.0.1:8080::health_flags::healthy",
        "outbound|80||backend.local::127.0.0.1:8080::weight::3",
        "outbound|80||backend.local::127.0.0.1:8080::region::",
        "outbound|80||backend.local::127.0.0.2:8080::health_flags::healthy",
        "outbound|80||backend.local::127.0.0.2:8080::region::eu",
        "outbound|80||backend.local::127.0.0.2:8080::zone::west-1a",
        "outbound|80||backend.local::127.0.0.2:8080::sub_zone::r7",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
}
