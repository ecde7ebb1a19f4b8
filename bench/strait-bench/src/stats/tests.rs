use super::*;

fn recorder() -> Recorder {
    Recorder::new(Instant::now(), Arc::default())
}

#[test]
fn merge_across_threads_keeps_every_sample() {
    let mut a = recorder();
    let mut b = recorder();
    let now = Instant::now();
    for us in 1..=1000u64 {
        a.record(now, Duration::from_micros(us));
    }
    // A second thread saw the slow tail only.
    for _ in 0..10 {
        b.record(now, Duration::from_secs(1));
    }
    b.error(now, ErrorKind::Timeout);
    b.status(now, 503);
    a.status(now, 200);
    let mut all = Recorder::empty();
    all.merge(&a);
    all.merge(&b);
    assert_eq!(all.operations, 1010);
    assert_eq!(all.latency.len(), 1010);
    assert_eq!(all.errors[ErrorKind::Timeout as usize], 1);
    assert_eq!(all.statuses[2], 1);
    assert_eq!(all.statuses[5], 1);
    // The merged p50 is the first thread's median; its p99.9 is the second's stall.
    let p50 = all.latency.value_at_quantile(0.5);
    assert!((500_000..=510_000).contains(&p50), "p50 {p50} ns");
    let p999 = all.latency.value_at_quantile(0.999);
    assert!(p999 >= 999_000_000, "p99.9 {p999} ns");
    assert_eq!(all.latency.max(), b.latency.max());
}

#[test]
fn warmup_is_not_counted() {
    let later = Instant::now() + Duration::from_secs(3600);
    let live = Arc::new(Live::default());
    let mut r = Recorder::new(later, live.clone());
    let now = Instant::now();
    r.record(now, Duration::from_micros(5));
    r.bytes(now, 100);
    r.error(now, ErrorKind::Io);
    assert_eq!((r.operations, r.bytes, r.errors.iter().sum::<u64>(), r.latency.len()), (0, 0, 0, 0));
    r.record(later, Duration::from_micros(5));
    assert_eq!(r.operations, 1);
    assert_eq!(live.operations.load(Relaxed), 1);
}

#[test]
fn odd_statuses_are_their_own_class() {
    let mut r = recorder();
    let now = Instant::now();
    r.status(now, 99);
    r.status(now, 600);
    r.status(now, 101);
    assert_eq!(r.statuses, [2, 1, 0, 0, 0, 0]);
}
