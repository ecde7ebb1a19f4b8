//! TLS load (full and resumed handshakes per second, HTTPS keep-alive requests) and the
//! server side the built-in backend terminates with.
//!
//! `full` and `resumed` open a connection per operation (`handshake`); `requests` runs the HTTP
//! loop over a TLS connector (`client`). In `resumed` each load connection keeps a session
//! store of its own and resumes the session its last handshake got, as a returning client does.

pub mod client;
mod handshake;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use rustls::pki_types::ServerName;

use crate::cli::{HttpArgs, RequestArgs, TlsArgs, TlsMode, TrustArgs};
use crate::error::BenchError;
use crate::http::Target;
use crate::report::Report;
use crate::runner;

/// The ALPN protocol the HTTP/1.1 modes offer and `serve http` accepts.
pub const HTTP1: &[u8] = b"http/1.1";
/// The ALPN protocol of HTTP/2 over TLS (RFC 9113 §3.2).
pub const H2: &[u8] = b"h2";

/// What `--sni`, `--ca` and `-k` make of a TLS client to `target`.
pub struct ClientSide {
    /// Sent as SNI and checked in the certificate.
    pub name: ServerName<'static>,
    /// The authority requests name instead of the URL's: a virtual host named by `--sni` at an
    /// address the URL gives.
    pub host: Option<String>,
    pub trust: client::Trust,
}

impl ClientSide {
    pub fn new(args: &TrustArgs, target: &Target) -> Result<ClientSide, BenchError> {
        let name = args.sni.as_deref().unwrap_or(&target.host);
        let name = ServerName::try_from(name.to_string())
            .map_err(|_| BenchError::Usage(format!("{name}: not a DNS name or IP address to send as SNI")))?;
        let host = args.sni.as_ref().map(|sni| Target { host: sni.clone(), ..target.clone() }.authority());
        Ok(ClientSide { name, host, trust: client::Trust::new(args.ca.as_deref(), args.insecure)? })
    }
}

/// A rustls server config from PEM files, offering `alpn`, with session tickets and a
/// session cache so resumed handshakes can be measured against the backend too.
pub fn server_config(cert: &Path, key: &Path, alpn: &[u8]) -> Result<Arc<rustls::ServerConfig>, BenchError> {
    let read = |p: &Path| std::fs::read(p).map_err(BenchError::io(format!("reading {}", p.display())));
    let chain = rustls_pemfile::certs(&mut &*read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(BenchError::io(format!("parsing {}", cert.display())))?;
    let key = rustls_pemfile::private_key(&mut &*read(key)?)
        .map_err(BenchError::io(format!("parsing {}", key.display())))?
        .ok_or_else(|| BenchError::Tls(format!("{}: no private key", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| BenchError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| BenchError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| BenchError::Tls(e.to_string()))?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

/// `strait-bench tls URL`: handshakes per second (`full`, `resumed`) or HTTPS requests.
pub fn run(args: &TlsArgs) -> Result<Report, BenchError> {
    let target = Target::parse(&args.url)?;
    if !target.tls {
        return Err(BenchError::Usage(format!("{}: a TLS load needs an https:// URL", args.url)));
    }
    let ClientSide { name, host, trust } = ClientSide::new(&args.trust, &target)?;
    let resume = args.mode != TlsMode::Full;
    let config = client::config(&trust, resume, HTTP1)?;
    let tls = client::Tls { addr: target.addr, name, timeout: args.load.timeout, config: Arc::new(config) };
    let mode = match args.mode {
        TlsMode::Full => "tls-full",
        TlsMode::Resumed => "tls-resumed",
        TlsMode::Requests => {
            let http = HttpArgs {
                url: args.url.clone(),
                load: args.load.clone(),
                pipeline: 1,
                request: RequestArgs {
                    method: "GET".into(),
                    headers: host.into_iter().map(|h| format!("Host: {h}")).collect(),
                    ..RequestArgs::default()
                },
                rate: None,
            };
            return crate::http::run_with(&http, "tls-requests", tls);
        }
    };
    let request = Bytes::from(format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: strait-bench\r\nConnection: close\r\n\r\n",
        target.path,
        host.unwrap_or_else(|| target.authority())
    ));
    let kinds = Arc::new(handshake::Kinds::default());
    let thread_kinds = kinds.clone();
    let outcome = runner::run(&args.load, mode, move |thread| {
        let (tls, request, kinds) = (tls.clone(), request.clone(), thread_kinds.clone());
        async move { handshake::thread(thread, tls, request, resume, &kinds).await }
    })?;
    let mut report =
        Report::new(mode, &args.url, args.load.connections, args.load.threads, &outcome.recorder, outcome.elapsed);
    report.resumed = Some(kinds.resumed.load(Relaxed));
    let declined = kinds.full_not_resumed.load(Relaxed);
    if declined > 0 {
        eprintln!(
            "strait-bench: warning: {declined} of {} handshakes were full although a session was there to resume: \
             the server declined it (or never issued one), so these figures are partly a full handshake's",
            report.operations
        );
    }
    Ok(report)
}
