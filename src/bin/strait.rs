//! `strait`: parse the command line, set up logging, run or validate, and render errors once.
// With `panic = "abort"` one panic ends every core: outside tests (clippy.toml) nothing unwraps.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::undocumented_unsafe_blocks)]

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use strait::admin::{LogControl, LogFilter};
use strait::cli::{Cli, Command, DRIVER_ENV};
use strait::config::Diagnostics;
use strait::control::{self, fails_validation, BuildOptions, RunError};
use strait::percore::access_log;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logging = init_logging(cli.log_level.as_ref());
    match cli.command {
        Command::Validate(args) => validate(&args.build_options()),
        Command::Run(args) => {
            let opts = match args.run_options(std::env::var(DRIVER_ENV).ok().as_deref()) {
                Ok(opts) => opts,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match control::run(opts, logging) {
                Ok(()) => {
                    access_log::finish(Duration::from_secs(1));
                    ExitCode::SUCCESS
                }
                Err(RunError::InvalidConfig(diagnostics)) => {
                    print_all(&diagnostics);
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// mimalloc commits arena memory eagerly where the kernel overcommits: several MiB resident
/// that an idle gateway never uses. Committing on demand roughly halves the footprint and costs
/// nothing measurable per request. The option must be set before mimalloc reserves its first
/// arena, which happens before `main`: hence a constructor that runs ahead of mimalloc's own
/// (init_array priority 100; mimalloc registers at the default priority).
#[used]
#[link_section = ".init_array.00100"]
static COMMIT_ON_DEMAND: extern "C" fn() = commit_memory_on_demand;

extern "C" fn commit_memory_on_demand() {
    // SAFETY: sets a process-wide allocator option; mimalloc allows it at any time, before its
    // own initialisation included (it then keeps the value instead of reading the environment).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// `--log-level` wins (one of Envoy's level names, or a filter such as `strait=debug`), then
/// RUST_LOG, then info; always on stderr (stdout is the access log). The filter sits in a
/// reload layer so that `POST /logging` can change it while serving.
fn init_logging(level: Option<&LogFilter>) -> LogControl {
    let filter = match level {
        Some(level) => level.env_filter(),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::registry().with(filter).with(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi)).init();
    LogControl::new(handle)
}

fn validate(opts: &BuildOptions) -> ExitCode {
    let (diagnostics, snapshot) = match control::build(opts, 1) {
        Ok(built) => (built.warnings, Some(built.snapshot)),
        Err(diagnostics) => (diagnostics, None),
    };
    print_all(&diagnostics);
    match snapshot {
        Some(s) if !diagnostics.iter().any(|d| fails_validation(d.severity)) => {
            println!("ok: {} listeners, {} clusters", s.listeners.len(), s.clusters.len());
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    }
}

/// Dangling references are errors to `validate` (as IST0101 fails `istioctl analyze`), though
/// `run` serves them.
fn print_all(diagnostics: &Diagnostics) {
    for d in diagnostics.iter() {
        eprintln!("{}: {d}", if fails_validation(d.severity) { "error" } else { "warning" });
    }
}
