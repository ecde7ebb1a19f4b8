//! `strait-bench serve`: the built-in backend. `http` answers HTTP/1.1 (a fixed-size body or
//! the request's own, optionally over TLS), `h2` the same over HTTP/2 and gRPC calls too;
//! `sink` and `echo` are raw TCP; `dns` answers names for the gateway's DNS refresh (the tests'
//! DNS server, on a port of the caller's). Thread-per-core like Strait: each thread is a pinned monoio
//! runtime with its own SO_REUSEPORT listener and a task per connection, so in a perf scenario
//! the backend costs about what the C one does and never sets the pace. It runs until killed.

mod http;
mod http2;

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use monoio_rustls::TlsAcceptor;
use strait::kit::driver::{self, Driver};
use strait::kit::{listen, DriverChoice};

use crate::cli::{Cpus, ServeArgs, ServeDnsArgs, ServeHttpArgs, ServeKind};
use crate::error::BenchError;

/// `sink` reads this much at a time: a bulk stream costs few reads per gigabyte.
const SINK_READ: usize = 256 * 1024;

/// `echo` reads (and writes back) this much at a time.
const ECHO_READ: usize = 64 * 1024;

/// Pause after an accept error that repeats until something frees up (EMFILE, ENOBUFS…),
/// instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// `serve dns`: `hostN.SUFFIX` → 127.0.0.1 until killed.
fn serve_dns(listen: SocketAddr, args: &ServeDnsArgs) -> Result<(), BenchError> {
    let server = strait_test_support::dns::DnsServer::bind(listen, args.ttl);
    for n in 0..args.names {
        server.set(&format!("host{n}.{}", args.suffix), &[std::net::Ipv4Addr::LOCALHOST]);
    }
    eprintln!("serving {} names on {} (udp), TTL {} s", args.names, server.addr, args.ttl);
    loop {
        std::thread::park();
    }
}

/// How a serving thread tells `run` it is up, or why it is not.
type Ready = mpsc::Sender<io::Result<()>>;

/// What every thread serves, decided once from the flags.
#[derive(Clone)]
enum Kind {
    Http { config: http::Config, tls: Option<TlsAcceptor> },
    H2 { config: http::Config, tls: Option<tokio_rustls::TlsAcceptor> },
    Sink,
    Echo,
}

/// The same, as one thread holds it: the HTTP responses serialized for this thread alone, so
/// threads share no reference counts on the hot path.
enum Local {
    Http(Rc<http::Server>, Option<TlsAcceptor>),
    H2(Rc<http2::Server>, Option<tokio_rustls::TlsAcceptor>),
    Sink,
    Echo,
}

pub fn run(args: &ServeArgs) -> Result<(), BenchError> {
    if args.threads == 0 {
        return Err(BenchError::Usage("--threads must be at least 1".into()));
    }
    let kind = match &args.kind {
        ServeKind::Http(http) => {
            let tls = tls_config(http, crate::tls::HTTP1)?.map(TlsAcceptor::from);
            Kind::Http { config: config(http), tls }
        }
        ServeKind::H2(http) => {
            let tls = tls_config(http, crate::tls::H2)?.map(tokio_rustls::TlsAcceptor::from);
            Kind::H2 { config: config(http), tls }
        }
        ServeKind::Sink => Kind::Sink,
        ServeKind::Echo => Kind::Echo,
        ServeKind::Dns(dns) => return serve_dns(args.listen, dns),
    };
    let listeners = bind(args.listen, args.threads).map_err(BenchError::io(format!("listening on {}", args.listen)))?;
    let addr = listeners[0].local_addr().map_err(BenchError::io("reading the listening address"))?;
    let driver = driver::resolve(DriverChoice::Auto).map_err(|e| BenchError::Usage(e.to_string()))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(listeners.len());
    for (index, listener) in listeners.into_iter().enumerate() {
        let cpu = args.cpus.as_ref().map(|Cpus(cpus)| cpus[index % cpus.len()]);
        let (kind, ready_tx) = (kind.clone(), ready_tx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("serve-{index}"))
            .spawn(move || serve_thread(listener, kind, cpu, driver, ready_tx))
            .map_err(BenchError::io("spawning a serving thread"))?;
        threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..threads.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(BenchError::io("starting a serving thread")(e)),
            Err(mpsc::RecvError) => return Err(BenchError::Usage("a serving thread panicked".into())),
        }
    }
    // Scenarios and tests wait for this line before they send load.
    eprintln!("listening on {addr}");
    for thread in threads {
        if thread.join().is_err() {
            return Err(BenchError::Usage("a serving thread panicked".into()));
        }
    }
    Ok(())
}

/// What `serve http` and `serve h2` answer.
fn config(args: &ServeHttpArgs) -> http::Config {
    let stall = args.stall_once.map(|(at, wait)| Arc::new(http::Stall::new(at, wait)));
    http::Config { size: args.size, echo: args.echo, stall, relay: args.relay }
}

/// The TLS `--tls-cert` and `--tls-key` ask for, offering `alpn`.
fn tls_config(args: &ServeHttpArgs, alpn: &[u8]) -> Result<Option<Arc<rustls::ServerConfig>>, BenchError> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => crate::tls::server_config(cert, key, alpn).map(Some),
        _ => Ok(None),
    }
}

/// One serving thread: pinned, its own runtime, its own listener. It says whether it came up on
/// `ready`, then serves for as long as the process lives.
fn serve_thread(listener: StdListener, kind: Kind, cpu: Option<usize>, driver: Driver, ready: Ready) {
    if let Some(id) = cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let mut rt = match driver::build(driver, DriverChoice::Auto) {
        Ok((rt, _)) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        // Registering the socket with the driver needs the runtime running.
        match TcpListener::from_std(listener) {
            Ok(listener) => {
                let local = Local::new(kind);
                let _ = ready.send(Ok(()));
                // Done with it: `run` sees a thread that dies before reporting as a hang-up.
                drop(ready);
                accept_loop(listener, local).await;
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    });
}

/// One listening socket per thread in one SO_REUSEPORT group, so the kernel spreads the
/// connections and no thread accepts for another. Port 0 is resolved by the first bind and
/// shared by the rest.
fn bind(addr: SocketAddr, threads: usize) -> io::Result<Vec<StdListener>> {
    let first = listen(addr)?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..threads {
        all.push(listen(addr)?);
    }
    Ok(all)
}

impl Local {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Http { config, tls } => Local::Http(Rc::new(http::Server::new(&config)), tls),
            Kind::H2 { config, tls } => Local::H2(Rc::new(http2::Server::new(&config)), tls),
            Kind::Sink => Local::Sink,
            Kind::Echo => Local::Echo,
        }
    }
}

async fn accept_loop(listener: TcpListener, local: Local) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                eprintln!("strait-bench serve: accept: {e}");
                monoio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Answers are written whole; Nagle would only hold their last segment back.
        let _ = stream.set_nodelay(true);
        match &local {
            Local::Http(server, None) => {
                monoio::spawn(http::serve(stream, server.clone()));
            }
            Local::Http(server, Some(tls)) => {
                let (server, tls) = (server.clone(), tls.clone());
                monoio::spawn(async move {
                    // A failed handshake is the client's business (a port probe, a refused
                    // certificate): the connection just ends.
                    if let Ok(stream) = tls.accept(stream).await {
                        http::serve(stream, server).await;
                    }
                });
            }
            Local::H2(server, tls) => {
                // h2 reads and writes through tokio's traits: the stream's poll-io form.
                let Ok(stream) = stream.try_into_poll_io() else { continue };
                let (server, tls) = (server.clone(), tls.clone());
                monoio::spawn(async move {
                    match tls {
                        None => http2::serve(stream, server).await,
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                http2::serve(stream, server).await;
                            }
                        }
                    }
                });
            }
            Local::Sink => {
                monoio::spawn(sink(stream));
            }
            Local::Echo => {
                monoio::spawn(echo(stream));
            }
        }
    }
}

/// Errors about the one connection being accepted: the next accept is unaffected.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM))
}

/// Reads and drops everything until the peer closes.
async fn sink(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(SINK_READ);
    loop {
        // monoio reads into the whole capacity from index 0: nothing to clear between reads.
        let (res, back) = stream.read(buf).await;
        buf = back;
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
    }
}

/// Writes back everything read. On the peer's FIN, everything has been echoed: send ours, so a
/// half-closing client sees the end of its echo.
async fn echo(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(ECHO_READ);
    loop {
        let (res, back) = stream.read(buf).await;
        match res {
            Ok(0) => {
                let _ = stream.shutdown().await;
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
        let (res, back) = stream.write_all(back).await;
        if res.is_err() {
            return;
        }
        buf = back;
    }
}
