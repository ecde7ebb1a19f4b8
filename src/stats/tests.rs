//! Counters and their merge across workers.

use super::*;

#[test]
fn counters_and_gauges() {
    let c = Counter::default();
    c.inc();
    c.add(41);
    assert_eq!(c.get(), 42);
    let g = Gauge::default();
    g.inc();
    g.inc();
    g.dec();
    assert_eq!(g.get(), 1);
    g.set(-3);
    assert_eq!(g.get(), -3);
}

#[test]
fn worker_stats_do_not_share_cache_lines() {
    assert_eq!(std::mem::align_of::<WorkerStats>(), 128);
    let workers: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::default()).collect();
    let (a, b) = (Arc::as_ptr(&workers[0]) as usize, Arc::as_ptr(&workers[1]) as usize);
    assert_eq!(a % 128, 0);
    assert_eq!(b % 128, 0);
}

#[test]
fn status_codes_by_slot() {
    let w = WorkerStats::default();
    for code in [200, 200, 404, 503, 599, 99, 600, 999] {
        w.record_status(code);
    }
    assert_eq!(w.responses[200].get(), 2);
    assert_eq!(w.responses[404].get(), 1);
    assert_eq!(w.responses[599].get(), 1);
    assert_eq!(w.responses[0].get(), 3, "99, 600 and 999 are not HTTP statuses");
}

#[test]
fn totals_sum_every_worker() {
    let workers: Vec<Arc<WorkerStats>> = (0..3).map(|_| Arc::default()).collect();
    for (i, w) in workers.iter().enumerate() {
        let i = i as u64 + 1;
        w.downstream_cx_total.add(i);
        w.downstream_cx_active.set(i as i64);
        w.downstream_rq_total.add(10 * i);
        w.http_clusters.register("outbound|80||a.local".into()).cx_total.add(i);
        w.upstream_cx_reused.add(9 * i);
        w.record_status(200);
        w.record_status(502);
    }
    workers[0].record_status(201);
    let t = Totals::sum(&workers);
    assert_eq!(t.downstream_cx_total, 6);
    assert_eq!(t.downstream_cx_active, 6);
    assert_eq!(t.downstream_rq_total, 60);
    assert_eq!(t.http_clusters["outbound|80||a.local"].cx_total, 6);
    assert_eq!(t.upstream_cx_reused, 54);
    assert_eq!(t.responses[200], 3);
    assert_eq!(t.responses[502], 3);
    assert_eq!(t.responses_in_class(2), 4);
    assert_eq!(t.responses_in_class(5), 3);
    assert_eq!(t.responses_in_class(4), 0);
    assert!((t.upstream_reuse_ratio() - 0.9).abs() < 1e-9);
}

#[test]
fn reuse_ratio_before_any_upstream_request() {
    assert_eq!(Totals::sum(&[Arc::default()]).upstream_reuse_ratio(), 0.0);
}

#[test]
fn the_served_generation_is_the_slowest_workers() {
    let workers: Vec<Arc<WorkerStats>> = (0..3).map(|_| Arc::default()).collect();
    assert_eq!(Totals::sum(&workers).generation, 0);
    workers[0].generation.set(5);
    workers[1].generation.set(4);
    workers[2].generation.set(5);
    assert_eq!(Totals::sum(&workers).generation, 4);
    assert_eq!(served_generation(&[]), 0);
}
