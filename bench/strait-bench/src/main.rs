//! `strait-bench`: the load generator, backend and side-by-side scenario runner that ship with
//! Strait. Thread-per-core on monoio, like the proxy it measures, so it is never the bottleneck.
//!
//! Layout: `cli` (the command line) → `runner` (pinned threads, one monoio runtime each, a
//! bounded run and a live progress line) → the load modes `http` (closed and open loop),
//! `http2` (HTTP/2 and gRPC unary: connections × streams, closed and open loop), `tcp`
//! (throughput and echo latency) and `tls` (handshakes and HTTPS requests), each filling
//! per-thread `stats::Recorder`s that `report` merges into one table or JSON document and
//! judges (its verdict is the exit code);
//! `serve` is the built-in backend; `scenario` starts backend, Strait and peers and compares
//! them.

mod cli;
mod connect;
mod error;
mod http;
mod http2;
mod report;
mod runner;
mod scenario;
mod serve;
mod stats;
mod tcp;
mod tls;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Http(args) => http::run(&args).and_then(|r| finish(&r, &args.load)),
        cli::Command::Tcp(args) => tcp::run(&args).and_then(|r| finish(&r, &args.load)),
        cli::Command::Tls(args) => tls::run(&args).and_then(|r| finish(&r, &args.load)),
        cli::Command::H2(args) => http2::run(&args).and_then(|r| finish(&r, &args.load)),
        cli::Command::Grpc(args) => http2::run_grpc(&args).and_then(|r| finish(&r, &args.load)),
        cli::Command::Serve(args) => serve::run(&args),
        cli::Command::Scenario(args) => scenario::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strait-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The report, whatever it says, then its verdict: a failing target fails the command, so a
/// script notices a run that measured nothing but errors.
fn finish(report: &report::Report, load: &cli::LoadArgs) -> Result<(), error::BenchError> {
    report.print(load.out.json);
    report.verdict(load.max_error_rate)
}
