use tracing_subscriber::layer::SubscriberExt;

use super::*;

#[test]
fn envoy_level_names_parse() {
    for (name, level) in [
        ("trace", LogLevel::Trace),
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warning", LogLevel::Warning),
        ("warn", LogLevel::Warning),
        ("error", LogLevel::Error),
        ("critical", LogLevel::Critical),
        ("off", LogLevel::Off),
        ("DEBUG", LogLevel::Debug),
    ] {
        assert_eq!(name.parse(), Ok(level), "{name}");
    }
    for bad in ["bogus", "", "strait=debug", "fatal"] {
        assert_eq!(bad.parse::<LogLevel>(), Err(UnknownLevel(bad.to_string())));
    }
}

#[test]
fn log_filters_take_envoy_levels_alone_or_after_a_target() {
    for (given, installed) in [
        ("info", "info"),
        ("warning", "warn"),
        ("CRITICAL", "error"),
        ("off", "off"),
        ("strait=debug", "strait=debug"),
        ("strait::http=warning, info", "strait::http=warn,info"),
        ("strait=trace,", "strait=trace"),
        ("[conn{id=5}]=debug", "[conn{id=5}]=debug"),
    ] {
        assert_eq!(given.parse::<LogFilter>().map(|f| f.0), Ok(installed.to_string()), "{given}");
    }
    // tracing would read each as a target with every level on (or, `strait=`, at trace).
    for (given, directive) in [
        ("infoo", "infoo"),
        ("verbose", "verbose"),
        ("strait", "strait"),
        ("strait=", "strait="),
        ("strait=infoo", "strait=infoo"),
        ("info,verbose", "verbose"),
        ("strait[conn{id=5}]", "strait[conn{id=5}]"),
        ("", ""),
        (",", ","),
    ] {
        assert_eq!(given.parse::<LogFilter>(), Err(BadLogFilter::Level(directive.to_string())), "{given}");
    }
    assert!(matches!("*=debug".parse::<LogFilter>(), Err(BadLogFilter::Filter(..))), "tracing's own syntax check");
    let err = "infoo".parse::<LogFilter>().unwrap_err().to_string();
    assert!(err.contains(LEVEL_NAMES), "{err}");
}

#[test]
fn levels_map_onto_tracing() {
    assert_eq!(LogLevel::Warning.level_filter(), LevelFilter::WARN);
    assert_eq!(LogLevel::Critical.level_filter(), LevelFilter::ERROR);
    assert_eq!(LogLevel::Off.level_filter(), LevelFilter::OFF);
    assert_eq!(LogLevel::Debug.env_filter().to_string(), "debug");
    // Every level prints as the name it parses from.
    for name in LEVEL_NAMES.split(' ') {
        assert_eq!(name.parse::<LogLevel>().unwrap().to_string(), name);
    }
}

#[test]
fn active_loggers_use_envoy_names() {
    assert_eq!(active_loggers("warn"), "active loggers:\n  all: warning\n");
    assert_eq!(active_loggers("off"), "active loggers:\n  all: off\n");
    assert_eq!(active_loggers("strait=debug,info"), "active loggers:\n  all: strait=debug,info\n");
}

#[test]
fn control_changes_the_filter_in_place() {
    let (layer, handle) = reload::Layer::new(EnvFilter::new("info"));
    let subscriber = Registry::default().with(layer);
    let control = LogControl::new(handle);
    assert_eq!(control.current().unwrap(), "info");
    control.set(LogLevel::Debug).unwrap();
    assert_eq!(control.current().unwrap(), "debug");
    control.set(LogLevel::Critical).unwrap();
    assert_eq!(control.current().unwrap(), "error");
    drop(subscriber);
    assert!(control.set(LogLevel::Info).is_err(), "the subscriber is gone");
}
