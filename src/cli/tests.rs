//! Command-line parsing against the CLI contract.

use std::time::Duration;

use clap::Parser;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("strait").chain(args.iter().copied()))
}

fn run_args(args: &[&str]) -> RunArgs {
    match parse(args).expect("parses").command {
        Command::Run(run) => *run,
        other => panic!("not run: {other:?}"),
    }
}

#[test]
fn run_with_every_flag() {
    let run = run_args(&[
        "run",
        "--config",
        "a.yaml",
        "--config",
        "dir/",
        "--workers",
        "3",
        "--label",
        "app=edge",
        "--label",
        "tier=",
        "--admin",
        "0.0.0.0:9901",
        "--secrets-dir",
        "/secrets",
        "--log-level",
        "debug",
        "--access-log",
        "--access-log-encoding",
        "json",
        "--mirror-shadow-suffix",
        "--driver",
        "legacy",
        "--drain-timeout",
        "250ms",
        "--max-request-headers-kb",
        "8",
        "--request-headers-timeout",
        "5s",
        "--max-request-duration",
        "30s",
        "--share-ports",
    ]);
    let opts = run.run_options(Some("uring")).unwrap();
    assert_eq!(opts.build.paths, [PathBuf::from("a.yaml"), PathBuf::from("dir/")]);
    assert_eq!(opts.build.labels, BTreeMap::from([("app".into(), "edge".into()), ("tier".into(), String::new())]));
    assert_eq!(opts.build.secrets_dir, Some(PathBuf::from("/secrets")));
    assert_eq!(
        opts.workers,
        WorkerOptions {
            workers: 3,
            driver: DriverChoice::Legacy,
            access_log: Some(Encoding::Json),
            mirror_shadow_suffix: true,
            limits: ClientLimits {
                head: Limits { max_head: 8 * 1024, ..Limits::default() },
                request_headers_timeout: Duration::from_secs(5),
                max_request_duration: Some(Duration::from_secs(30)),
                ..ClientLimits::default()
            },
            redis: None,
        }
    );
    assert_eq!(opts.admin, "0.0.0.0:9901".parse().unwrap());
    assert_eq!(opts.drain_timeout, Duration::from_millis(250));
    assert!(opts.share_ports);
}

#[test]
fn run_defaults() {
    let opts = run_args(&["run", "--config", "c"]).run_options(None).unwrap();
    assert_eq!(opts.workers.limits, ClientLimits::default());
    assert_eq!(opts.build.labels, BTreeMap::from([("istio".into(), "ingressgateway".into())]));
    assert_eq!(opts.build.secrets_dir, None);
    assert_eq!(opts.workers.workers, default_workers());
    assert_eq!(opts.workers.driver, DriverChoice::Auto);
    assert_eq!(opts.workers.access_log, None);
    assert!(!opts.workers.mirror_shadow_suffix);
    assert_eq!(opts.admin, "127.0.0.1:15000".parse().unwrap());
    assert_eq!(opts.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    assert!(!opts.share_ports, "another process's port is refused unless asked");
    assert!(!opts.watch, "files are re-read on SIGHUP unless asked");
}

#[test]
fn watch_watches_every_config_input() {
    let opts = run_args(&["run", "--config", "a", "--config", "b.yaml", "--proxy-config", "p.yaml", "--watch"])
        .run_options(None)
        .unwrap();
    assert!(opts.watch);
    let inputs: Vec<PathBuf> = ["a", "b.yaml", "p.yaml"].iter().map(PathBuf::from).collect();
    assert_eq!(opts.build.inputs(), inputs);
}

#[test]
fn log_level_is_accepted_anywhere() {
    let level = |s: &str| Some(s.parse::<LogFilter>().unwrap());
    assert_eq!(parse(&["--log-level", "warn", "run", "--config", "c"]).unwrap().log_level, level("warn"));
    assert_eq!(parse(&["validate", "--config", "c", "--log-level", "trace"]).unwrap().log_level, level("trace"));
    assert_eq!(
        parse(&["run", "--config", "c", "--log-level", "strait=debug"]).unwrap().log_level,
        level("strait=debug")
    );
}

#[test]
fn an_unknown_log_level_is_refused_with_the_levels() {
    for bad in ["infoo", "verbose", "strait=infoo", "strait", ""] {
        let err = parse(&["run", "--config", "c", "--log-level", bad]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}: {err}");
        assert_eq!(err.exit_code(), 2, "{bad}");
        assert!(err.to_string().contains("the levels are trace debug info warning error critical off"), "{bad}: {err}");
    }
}

#[test]
fn validate_takes_config_labels_and_secrets() {
    let cli = parse(&["validate", "--config", "x", "--config", "y", "--label", "a=b", "--secrets-dir", "s"]).unwrap();
    let Command::Validate(args) = cli.command else { panic!("not validate") };
    let opts = args.build_options();
    assert_eq!(opts.paths, [PathBuf::from("x"), PathBuf::from("y")]);
    assert_eq!(opts.labels, BTreeMap::from([("a".into(), "b".into())]));
    assert_eq!(opts.secrets_dir, Some(PathBuf::from("s")));
}

#[test]
fn refuses_bad_command_lines() {
    assert!(parse(&["run"]).is_err(), "--config is required");
    assert!(parse(&["validate"]).is_err(), "--config is required");
    assert!(parse(&["run", "--config", "c", "--workers", "0"]).is_err());
    assert!(parse(&["run", "--config", "c", "--label", "novalue"]).is_err());
    assert!(parse(&["run", "--config", "c", "--admin", "localhost"]).is_err());
    assert!(parse(&["run", "--config", "c", "--driver", "kqueue"]).is_err());
    assert!(parse(&["run", "--config", "c", "--drain-timeout", "5 parsecs"]).is_err());
    assert!(parse(&["validate", "--config", "c", "--workers", "2"]).is_err(), "validate serves nothing");
}

#[test]
fn driver_flag_beats_environment() {
    assert_eq!(driver_choice(None, None), Ok(DriverChoice::Auto));
    assert_eq!(driver_choice(None, Some("")), Ok(DriverChoice::Auto));
    assert_eq!(driver_choice(None, Some("legacy")), Ok(DriverChoice::Legacy));
    assert_eq!(driver_choice(None, Some("URING")), Ok(DriverChoice::Uring));
    assert_eq!(driver_choice(None, Some("io_uring")), Ok(DriverChoice::Uring));
    assert_eq!(driver_choice(Some(DriverChoice::Uring), Some("legacy")), Ok(DriverChoice::Uring));
    assert!(driver_choice(None, Some("poll")).unwrap_err().contains("STRAIT_DRIVER=poll"));
    assert_eq!(run_args(&["run", "--config", "c", "--driver", "epoll"]).driver, Some(DriverChoice::Legacy));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    for bad in ["", "s", "-1s", "5d", "1..2s", "ms5"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn labels() {
    assert_eq!(parse_label("k=v=w"), Ok(("k".into(), "v=w".into())));
    assert!(parse_label("=v").is_err());
    assert!(parse_label("k").is_err());
}

#[test]
fn version_names_the_commit_built_from() {
    use clap::CommandFactory;
    let version = Cli::command().render_version();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    // `-dirty` follows the hash when tracked files differ from the commit.
    let commit = head.unwrap_or_else(|| "unknown".to_string());
    let expected = format!("strait {} ({commit}", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected), "{version:?} does not start with {expected:?}");
    assert!(version.trim_end().ends_with(')'), "{version:?}");
}

#[test]
fn namespace_of_run_and_validate() {
    let build = |args: &[&str]| match parse(args).unwrap().command {
        Command::Run(run) => run.config.build_options(),
        Command::Validate(config) => config.build_options(),
    };
    for command in ["run", "validate"] {
        assert_eq!(build(&[command, "--config", "c"]).namespace, "default", "{command}");
        let opts = build(&[command, "--config", "c", "--namespace", "istio-system"]);
        assert_eq!(opts.namespace, "istio-system", "{command}");
    }
}
