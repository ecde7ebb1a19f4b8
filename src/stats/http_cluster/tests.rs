//! Status counters found once per worker, summed by cluster and class.

use super::*;

#[test]
fn workers_count_codes_apart_and_the_sum_adds_them_up() {
    let registries: Vec<HttpClusterRegistry> = (0..2).map(|_| Registry::default()).collect();
    let name: Arc<str> = "outbound|80||app.local".into();
    for (i, registry) in registries.iter().enumerate() {
        let cluster = HttpCluster::new(registry.register(name.clone()));
        for status in [200, 200, 503, 204] {
            cluster.record_status(status);
        }
        cluster.rq_total.add(4);
        cluster.rq_retry.add(i as u64);
        cluster.cx_total.inc();
        assert_eq!(cluster.codes.borrow().len(), 3, "a code is looked up once");
    }
    HttpCluster::new(registries[1].register("outbound|80||other.local".into())).record_status(404);
    let totals = sum(registries.iter());
    assert_eq!(totals.len(), 2);
    let app = &totals[&name];
    assert_eq!(app.codes, BTreeMap::from([(200, 4), (204, 2), (503, 2)]));
    assert_eq!((app.in_class(2), app.in_class(4), app.in_class(5)), (6, 0, 2));
    assert_eq!((app.rq_total, app.rq_retry, app.cx_total, app.cx_connect_fail), (8, 1, 2, 0));
    assert_eq!(totals["outbound|80||other.local"].codes, BTreeMap::from([(404, 1)]));
}
