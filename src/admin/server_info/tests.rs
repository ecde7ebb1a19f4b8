use super::*;

#[test]
fn durations_in_protobuf_json_form() {
    assert_eq!(duration(Duration::ZERO), "0s");
    assert_eq!(duration(Duration::from_secs(12)), "12s");
    assert_eq!(duration(Duration::from_millis(500)), "0.500s");
    assert_eq!(duration(Duration::from_millis(1_010)), "1.010s");
    assert_eq!(duration(Duration::from_micros(1_000_001)), "1.000001s");
    assert_eq!(duration(Duration::new(3, 7)), "3.000000007s");
    assert_eq!(duration(Duration::from_secs(3_600)), "3600s");
}

#[test]
fn driver_names_what_every_worker_runs_on() {
    assert_eq!(driver(&[]), None);
    assert_eq!(driver(&[Driver::IoUring, Driver::IoUring]), Some("io_uring"));
    assert_eq!(driver(&[Driver::Legacy]), Some("legacy"));
    assert_eq!(driver(&[Driver::IoUring, Driver::Legacy]), Some("mixed"));
}
