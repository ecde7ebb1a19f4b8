//! The admin server (`--admin`, default 127.0.0.1:15000): renders what `stats` and the
//! published snapshot hold.
//!
//! Plain blocking std::net on threads of its own: admin traffic is a probe or a scrape now and
//! then, and must never cost the workers anything. A fixed few threads serve it, each
//! connection within deadlines, so that no number of slow or idle clients can grow the process.
//! Routes: `/ready`, `/server_info`, `/config_dump`, `/clusters`, `/stats`, `/stats/prometheus`,
//! `/logging` (`POST` changes the log level), `POST /reload`.
//!
//! Like Envoy's admin, the port is unauthenticated: it belongs on loopback. What it does guard
//! against is a web page in a browser on the same host driving it: a state-changing request
//! whose `Origin` is another site's, or whose `Host` is not the admin's address (DNS
//! rebinding), is refused.

mod clusters;
mod config_dump;
mod http;
mod istio;
mod logging;
mod samples;
mod server_info;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Sender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::json;
use tracing::debug;

pub use config_dump::to_json;
pub use logging::{BadLogFilter, LogControl, LogFilter, LogLevel, UnknownLevel};
pub use server_info::duration as protobuf_duration;

use crate::publish::{ControlEvent, Readiness, Shared};
use crate::stats::{endpoints, IstioDestination, Totals};
use http::{Request, Response};

/// Connections served at once: enough that a slow `POST /reload` never holds up a `/ready`
/// probe, few enough that the admin costs a fixed handful of threads.
const SERVERS: usize = 4;
/// Accepted connections waiting for a server; past them a connection is closed at once.
const QUEUED: usize = 32;
/// From its accept, a client has this long to send its whole request (waiting in the queue
/// counts), so that silent or trickling clients give their place up within seconds...
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// ...and this long to take the whole answer once it is ready.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// A reload builds a whole snapshot; large configs take a while, but not this long.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Workers look for a new generation every 50 ms; one that takes longer is busy, and the
/// answer goes out without it.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(1);

const INDEX: &str = "strait admin\n\
  GET  /ready             200 LIVE once serving (a failed reload leaves it so), 503 before and while draining\n\
  GET  /server_info       version, state, uptime, workers, driver, command line, reloads (JSON)\n\
  GET  /config_dump       the served snapshot as JSON\n\
  GET  /clusters          clusters and endpoints, Envoy's text format\n\
  GET  /stats             counters, `name: value`; ?format=json|prometheus, ?filter=REGEX\n\
  GET  /stats/prometheus  counters, Prometheus text format\n\
  GET  /logging           the log level\n\
  POST /logging?level=L   set every logger to L: trace debug info warning error critical off\n\
  POST /reload            re-read the config, as SIGHUP does\n";

/// The admin listener, bound at start so that a taken port stops `strait run` at once.
pub struct Admin {
    listener: TcpListener,
    addr: SocketAddr,
}

struct Context {
    shared: Arc<Shared>,
    events: Sender<ControlEvent>,
    logging: LogControl,
    /// `/server_info`'s `command_line_options`, fixed at start.
    command_line: serde_json::Value,
}

impl Admin {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        Ok(Self { addr: listener.local_addr()?, listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves on threads of its own: one accepts into a bounded queue, [`SERVERS`] take from
    /// it. A reload is asked for on `events`; `command_line` is `/server_info`'s
    /// `command_line_options`.
    pub fn spawn(
        self,
        shared: Arc<Shared>,
        events: Sender<ControlEvent>,
        logging: LogControl,
        command_line: serde_json::Value,
    ) -> io::Result<()> {
        let ctx = Arc::new(Context { shared, events, logging, command_line });
        let (queue, accepted) = mpsc::sync_channel::<(TcpStream, Instant)>(QUEUED);
        let accepted = Arc::new(Mutex::new(accepted));
        for i in 0..SERVERS {
            let (ctx, accepted) = (ctx.clone(), accepted.clone());
            std::thread::Builder::new().name(format!("strait-admin-{i}")).spawn(move || loop {
                // The lock is held only while waiting: one server waits, the others queue on it.
                let next = accepted.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((stream, at)) = next else { return };
                if let Err(e) = serve(stream, at, &ctx) {
                    debug!("admin connection: {e}");
                }
            })?;
        }
        std::thread::Builder::new().name("strait-admin".into()).spawn(move || {
            for stream in self.listener.incoming() {
                let Ok(stream) = stream else { continue };
                match queue.try_send((stream, Instant::now())) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => debug!("admin busy: connection closed"),
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        })?;
        Ok(())
    }
}

/// Serves the one request of a connection accepted at `accepted`.
fn serve(mut stream: TcpStream, accepted: Instant, ctx: &Context) -> io::Result<()> {
    let (resp, head_only) = match http::read_request(&mut stream, accepted + READ_DEADLINE) {
        Ok(req) => (route(&req, stream.local_addr()?, ctx), req.method == "HEAD"),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => (Response::text(400, format!("{e}\n")), false),
        Err(e) => return Err(e),
    };
    http::write_response(&mut stream, &resp, head_only, Instant::now() + WRITE_DEADLINE)
}

/// Answers `req`, which reached the admin at `local`.
fn route(req: &Request, local: SocketAddr, ctx: &Context) -> Response {
    let read_only = matches!(req.method.as_str(), "GET" | "HEAD");
    if !read_only {
        if let Some(refusal) = cross_site(req, local) {
            return Response::text(403, refusal);
        }
    }
    match req.path.as_str() {
        "/reload" if req.method == "POST" => reload(ctx),
        "/reload" => Response::text(405, "use POST /reload\n"),
        "/logging" if req.method == "POST" => set_log_level(req.query.as_deref(), &ctx.logging),
        _ if !read_only => Response::text(405, "admin pages are read with GET\n"),
        "/" => Response::text(200, INDEX),
        "/ready" => ready(&ctx.shared),
        "/server_info" => json_response(&server_info::render(&ctx.shared, &ctx.command_line)),
        // A GET must not change anything: say how, rather than ignore the level.
        "/logging" if req.query.is_some() => Response::text(405, "use POST /logging?level=LEVEL\n"),
        "/logging" => active_loggers(&ctx.logging),
        "/config_dump" => config_dump(&ctx.shared),
        "/clusters" => {
            let totals = endpoints::sum(ctx.shared.workers.iter().map(|w| &w.endpoints));
            Response::text(200, clusters::render(&ctx.shared.snapshot(), &totals))
        }
        "/stats/prometheus" => stats_page(&ctx.shared, req.query.as_deref(), Format::Prometheus),
        "/stats" => stats_page(&ctx.shared, req.query.as_deref(), Format::Text),
        _ => Response::text(404, INDEX),
    }
}

/// Why a state-changing request is refused as coming from another site, if it is: a browser
/// sends the page's `Origin` with it, and the name the page used as its `Host`, which under DNS
/// rebinding is the attacker's own name pointing here. Clients that send neither (curl sends
/// the address it was given) are served.
fn cross_site(req: &Request, local: SocketAddr) -> Option<&'static str> {
    if req.host.as_deref().is_some_and(|host| !http::names_admin(host, local)) {
        return Some("refused: the Host is not this admin's address\n");
    }
    let same_origin = |origin: &str| origin.strip_prefix("http://").is_some_and(|a| http::names_admin(a, local));
    if req.origin.as_deref().is_some_and(|origin| !same_origin(origin)) {
        return Some("refused: a request from another origin\n");
    }
    None
}

fn ready(shared: &Shared) -> Response {
    let readiness = shared.readiness();
    let status = if readiness == Readiness::Live { 200 } else { 503 };
    Response::text(status, format!("{}\n", readiness.name()))
}

fn config_dump(shared: &Shared) -> Response {
    let mut dump = to_json(&shared.snapshot());
    dump["draining"] = json!(shared.readiness() == Readiness::Draining);
    dump["reloads"] = server_info::reloads(shared);
    json_response(&dump)
}

fn json_response(value: &serde_json::Value) -> Response {
    // Display's alternate form is serde_json's pretty printer, and writing to a String cannot fail.
    let body = format!("{value:#}\n").into_bytes();
    Response { status: 200, content_type: "application/json", body }
}

fn active_loggers(logging: &LogControl) -> Response {
    match logging.current() {
        Ok(filter) => Response::text(200, logging::active_loggers(&filter)),
        Err(e) => Response::text(500, format!("log filter unavailable: {e}\n")),
    }
}

/// `POST /logging?level=LEVEL`, Envoy's way of changing every logger at once; answered, as
/// Envoy does, with the loggers as they now are, or a 400 with the usage.
fn set_log_level(query: Option<&str>, logging: &LogControl) -> Response {
    let params: Vec<&str> = query.unwrap_or("").split('&').filter(|p| !p.is_empty()).collect();
    let level = match params.as_slice() {
        [param] => match param.split_once('=').unwrap_or((param, "")) {
            ("level", value) => value.parse::<LogLevel>().map_err(|e| e.to_string()),
            (name, _) => Err(format!("`{name}`: only `level` is supported (one filter serves every logger)")),
        },
        [] => Err("missing `level`".to_string()),
        _ => Err("expected exactly one parameter, `level`".to_string()),
    };
    match level {
        Ok(level) => match logging.set(level) {
            Ok(()) => active_loggers(logging),
            Err(e) => Response::text(500, format!("cannot change the log level: {e}\n")),
        },
        Err(e) => Response::text(
            400,
            format!(
                "error: {e}\n\nusage: POST /logging?level=<level> (change all levels)\nlevels: {}\n",
                logging::LEVEL_NAMES
            ),
        ),
    }
}

/// How `/stats` writes the counters.
#[derive(Clone, Copy)]
enum Format {
    /// Envoy's `name: value` lines.
    Text,
    Json,
    Prometheus,
}

/// `/stats` and `/stats/prometheus` with Envoy's parameters: `format` (`json`, `prometheus`,
/// `text`) and `filter`, a regex that a stat's name must contain a match of (in Prometheus
/// text the Istio families are matched by their family name).
fn stats_page(shared: &Shared, query: Option<&str>, mut format: Format) -> Response {
    let mut filter = None;
    // Percent-decoded as Envoy decodes them: a `+` stays a `+`, as a regex means it.
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().replace('+', "%2B").as_bytes()) {
        match (&*key, &*value) {
            ("format", "text") => format = Format::Text,
            ("format", "json") => format = Format::Json,
            ("format", "prometheus") => format = Format::Prometheus,
            ("format", other) => {
                return Response::text(400, format!("unknown format `{other}`: text, json or prometheus\n"))
            }
            ("filter", re) => match Regex::new(re) {
                Ok(re) => filter = Some(re),
                Err(e) => return Response::text(400, format!("invalid regex in filter: {e}\n")),
            },
            // Envoy's other parameters (`usedonly`, `type`, histogram options) change nothing here.
            _ => {}
        }
    }
    let keep = |name: &str| filter.as_ref().is_none_or(|re| re.is_match(name));
    let totals = Totals::sum(&shared.workers);
    let snapshot = shared.snapshot();
    let mut samples = samples::samples(&totals, &shared.control, shared.workers.len(), &snapshot);
    samples.retain(|s| keep(&s.stat));
    match format {
        Format::Text => Response::text(200, samples::plain(&samples)),
        Format::Json => json_response(&samples::json(&samples)),
        Format::Prometheus => {
            let mut text = samples::prometheus(&samples);
            let cluster_labels = |name: &str| IstioDestination::of(snapshot.clusters.iter().find(|c| &*c.name == name));
            let http = crate::stats::istio::sum(shared.workers.iter().map(|w| &w.istio));
            istio::render(
                &http,
                &totals.l4,
                &cluster_labels,
                (&*snapshot.source_workload, &*snapshot.source_namespace),
                &keep,
                &mut text,
            );
            let body = text.into_bytes();
            Response { status: 200, content_type: "text/plain; version=0.0.4; charset=utf-8", body }
        }
    }
}

/// Hands the reload to the control thread and answers with its outcome.
fn reload(ctx: &Context) -> Response {
    let (tx, rx) = mpsc::channel();
    if ctx.events.send(ControlEvent::Reload(Some(tx))).is_err() {
        return Response::text(503, "control thread gone\n");
    }
    match rx.recv_timeout(RELOAD_TIMEOUT) {
        Ok(Ok(r)) => {
            wait_served(&ctx.shared, r.generation);
            Response::text(200, format!("reloaded: generation {}, {} listeners\n", r.generation, r.listeners))
        }
        Ok(Err(e)) if ctx.shared.readiness() == Readiness::Draining => Response::text(503, format!("{e}\n")),
        Ok(Err(e)) => Response::text(500, format!("reload failed: {e}\n")),
        Err(_) => Response::text(503, "no answer from the control thread\n"),
    }
}

/// Returns once every worker serves `generation` (or after [`SWITCH_TIMEOUT`]), so that the
/// caller's next request is answered by the new config.
fn wait_served(shared: &Shared, generation: u64) {
    let deadline = Instant::now() + SWITCH_TIMEOUT;
    while shared.served_generation() < generation && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests;
