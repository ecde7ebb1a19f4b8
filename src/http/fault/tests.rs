use std::time::Duration;

use super::{inject, Injected};
use crate::snapshot::{AbortStatus, Fault};

#[test]
fn full_percentages_always_apply() {
    let f = Fault { delay: Some((Duration::from_millis(5), 100.0)), abort: Some((AbortStatus::Http(418), 100.0)) };
    for draw in [0, 999_999, u32::MAX] {
        assert_eq!(
            inject(&f, draw, draw),
            Injected { delay: Some(Duration::from_millis(5)), abort: Some(AbortStatus::Http(418)) }
        );
    }
}

#[test]
fn zero_percent_never_applies() {
    let f = Fault { delay: Some((Duration::from_millis(5), 0.0)), abort: Some((AbortStatus::Http(503), 0.0)) };
    assert_eq!(inject(&f, 0, 0), Injected::default());
}

#[test]
fn fractions_follow_millionths_per_draw() {
    let f = Fault { delay: None, abort: Some((AbortStatus::Http(503), 25.5)) };
    assert_eq!(inject(&f, 0, 254_999).abort, Some(AbortStatus::Http(503)));
    assert_eq!(inject(&f, 0, 255_000).abort, None);
    let hits = (0..1_000_000u32).step_by(97).filter(|d| inject(&f, 0, *d).abort.is_some()).count();
    let total = (0..1_000_000u32).step_by(97).count();
    assert!((hits as f64 / total as f64 - 0.255).abs() < 0.005);
}

#[test]
fn delay_and_abort_draw_independently() {
    let f = Fault { delay: Some((Duration::from_secs(1), 50.0)), abort: Some((AbortStatus::Http(500), 50.0)) };
    let got = inject(&f, 10, 900_000);
    assert_eq!(got, Injected { delay: Some(Duration::from_secs(1)), abort: None });
}
