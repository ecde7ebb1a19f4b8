//! Remote key sets for RequestAuthentication `jwksUri`s: fetched on the control thread, in a
//! tokio runtime of its own (as `dns.rs` asks names), never on the request path. A compile
//! asks for the key sets it needs and waits for a new one's first fetch, as istiod resolves
//! a `jwksUri` before it pushes the config; a changed key set makes the control thread
//! republish the snapshot (see `reload.rs`), as istiod pushes again.
//!
//! As istiod's `JwksResolver`: a key set is fetched again every [`REFRESH`], one minute after
//! a failure, and a failed fetch keeps the last good keys. Until one fetch succeeded, the
//! provider has no keys and its tokens fail. A token naming a `kid` the keys lack makes a
//! worker ask for the set again ([`crate::publish::ControlEvent::JwksRefetch`]); such asks
//! fetch one set at most once per [`MIN_REFETCH`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::jwks::Jwks as KeySet;
use crate::http::codec::ChunkedDecoder;
use crate::snapshot::jwt::JwksSource;
use crate::snapshot::system_roots;

/// istiod's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL` default.
pub const REFRESH: Duration = Duration::from_secs(20 * 60);
/// istiod's `JwtPubKeyRefreshIntervalOnFailure`.
pub const RETRY: Duration = Duration::from_secs(60);
/// The least time between two fetches of one set that workers asked for.
pub const MIN_REFETCH: Duration = Duration::from_secs(2);
/// Likewise after a failed fetch: a server that does not answer holds the control thread for
/// the rule's `timeout` each time.
pub const MIN_REFETCH_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// The most a JWKS (or discovery) document may weigh.
const MAX_BODY: usize = 1 << 20;

struct Entry {
    keys: Option<Arc<KeySet>>,
    due: Instant,
    fetched: Instant,
    /// The last fetch failed.
    failed: bool,
}

pub struct Jwks {
    runtime: tokio::runtime::Runtime,
    sets: HashMap<JwksSource, Entry>,
    /// The sources the compile under way asked for: once it ends, only those are kept.
    asked: HashSet<JwksSource>,
    tls: Option<Arc<ClientConfig>>,
}

impl Jwks {
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Jwks { runtime, sets: HashMap::new(), asked: HashSet::new(), tls: None })
    }

    /// A compile is about to ask for key sets.
    pub fn begin(&mut self) {
        self.asked.clear();
    }

    /// The compile that asked is the one served: sets it did not ask for are no longer fetched.
    pub fn commit(&mut self) {
        let asked = &self.asked;
        self.sets.retain(|source, _| asked.contains(source));
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.sets.values().map(|e| e.due).min()
    }

    /// Fetches every set that is due. True when a set changed: the snapshot must then be
    /// compiled again. A failure keeps the last good keys.
    pub fn refresh(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<JwksSource> = self.sets.iter().filter(|(_, e)| e.due <= now).map(|(s, _)| s.clone()).collect();
        let mut changed = false;
        for source in due {
            changed |= self.fetch_into(&source);
        }
        changed
    }

    /// A worker met an unknown `kid` (or no keys) for the set at `uri`: make it due now, or as
    /// soon as [`MIN_REFETCH`] (after a failure, [`MIN_REFETCH_AFTER_FAILURE`]) since its last
    /// fetch allows.
    pub fn refetch(&mut self, uri: &str) {
        for (source, entry) in self.sets.iter_mut().filter(|(s, _)| &*s.uri == uri) {
            let gap = if entry.failed { MIN_REFETCH_AFTER_FAILURE } else { MIN_REFETCH };
            let soonest = entry.fetched + gap;
            if entry.due > soonest {
                tracing::debug!(uri = %source.uri, "a token names a key the set lacks: fetching it again");
                entry.due = soonest;
            }
        }
    }

    /// Fetches `source` now and records the outcome; true when its keys changed.
    fn fetch_into(&mut self, source: &JwksSource) -> bool {
        let result = self.fetch(source);
        let Some(entry) = self.sets.get_mut(source) else { return false };
        let now = Instant::now();
        entry.fetched = now;
        entry.failed = result.is_err();
        match result {
            Ok(keys) => {
                entry.due = now + REFRESH;
                if entry.keys.as_deref() == Some(&keys) {
                    return false;
                }
                tracing::info!(uri = %source.uri, keys = keys.keys.len(), "JWKS fetched");
                entry.keys = Some(Arc::new(keys));
                true
            }
            Err(e) => {
                entry.due = now + RETRY;
                let kept = entry.keys.as_ref().map_or(0, |k| k.keys.len());
                tracing::warn!(uri = %source.uri, error = %e, kept, "JWKS fetch failed; the last keys are kept");
                false
            }
        }
    }

    fn fetch(&mut self, source: &JwksSource) -> Result<KeySet, String> {
        let tls = self.tls.get_or_insert_with(client_config).clone();
        let timeout = source.timeout;
        self.runtime.block_on(async move {
            let work = async {
                let mut uri = source.uri.to_string();
                if source.discovery {
                    let doc: serde_json::Value = serde_json::from_slice(&get(&uri, &tls).await?)
                        .map_err(|e| format!("OpenID discovery document: {e}"))?;
                    uri = doc
                        .get("jwks_uri")
                        .and_then(|v| v.as_str())
                        .ok_or("the OpenID discovery document names no jwks_uri")?
                        .to_owned();
                }
                let body = get(&uri, &tls).await?;
                let text = std::str::from_utf8(&body).map_err(|_| "the JWKS is not UTF-8".to_owned())?;
                KeySet::parse(text)
            };
            tokio::time::timeout(timeout, work).await.map_err(|_| format!("no answer within {timeout:?}"))?
        })
    }

    /// The set for `source`, fetched now when it is new.
    pub fn keys(&mut self, source: &JwksSource) -> Option<Arc<KeySet>> {
        self.asked.insert(source.clone());
        if !self.sets.contains_key(source) {
            let now = Instant::now();
            self.sets.insert(source.clone(), Entry { keys: None, due: now, fetched: now, failed: false });
            self.fetch_into(source);
        }
        self.sets.get(source).and_then(|e| e.keys.clone())
    }
}

fn client_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(system_roots()).with_no_client_auth());
    match config {
        Ok(c) => Arc::new(c),
        // ring's default provider supports the default versions: unreachable in practice.
        Err(e) => {
            tracing::error!("JWKS client TLS: {e}");
            Arc::new(ClientConfig::builder().with_root_certificates(system_roots()).with_no_client_auth())
        }
    }
}

/// One HTTP/1.1 GET, `Connection: close`: the body of a 200 answer.
async fn get(uri: &str, tls: &Arc<ClientConfig>) -> Result<Vec<u8>, String> {
    let (https, rest) = match uri.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => return Err(format!("{uri}: not an http or https URL")),
    };
    let (authority, path) = rest.find(['/', '?']).map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = split_port(authority, if https { 443 } else { 80 })?;
    let tcp = TcpStream::connect((host, port)).await.map_err(|e| format!("{uri}: connect: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {authority}\r\naccept: application/json\r\nuser-agent: strait\r\n\
         connection: close\r\n\r\n"
    );
    let raw = if https {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{uri}: {e}"))?;
        let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{uri}: TLS: {e}"))?;
        exchange(&mut stream, request.as_bytes()).await
    } else {
        let mut stream = tcp;
        exchange(&mut stream, request.as_bytes()).await
    }
    .map_err(|e| format!("{uri}: {e}"))?;
    body(&raw).map_err(|e| format!("{uri}: {e}"))
}

/// Sends `request`, then reads until the answer is whole: by its framing, or at the end of the
/// stream (a server may keep the connection open despite `connection: close`).
async fn exchange<S: AsyncReadExt + AsyncWriteExt + Unpin>(stream: &mut S, request: &[u8]) -> Result<Vec<u8>, String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            // A server that closes without close_notify still sent its answer whole when framed.
            Err(e) if raw.is_empty() => return Err(e.to_string()),
            Err(_) => return Ok(raw),
        }
        if raw.len() > MAX_BODY + 16 * 1024 {
            return Err(format!("the answer is over {MAX_BODY} bytes"));
        }
        if whole(&raw) {
            return Ok(raw);
        }
    }
}

/// The answer in `raw` is complete by its own framing (a length, or chunks to the last).
fn whole(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = response.parse(raw) else { return false };
    let header = |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().windows(7).any(|w| w == b"chunked")) {
        return dechunk(&raw[head_len..]).is_ok();
    }
    let length = header("content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
    length.is_some_and(|n| raw.len() >= head_len + n)
}

fn split_port(authority: &str, default: u16) -> Result<(&str, u16), String> {
    let bracketed = authority.strip_prefix('[').and_then(|a| a.split_once(']'));
    let (host, port) = match bracketed {
        Some((host, rest)) => (host, rest.strip_prefix(':')),
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
        None => default,
    };
    Ok((host, port))
}

/// The body of a whole `200` answer in `raw`.
fn body(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the answer ended inside its head".to_owned()),
        Err(e) => return Err(format!("invalid answer: {e}")),
    };
    if response.code != Some(200) {
        return Err(format!("status {}", response.code.unwrap_or_default()));
    }
    let header = |name: &str| {
        response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    let rest = &raw[head_len..];
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return dechunk(rest);
    }
    let body = match header("content-length").map(|v| v.trim().parse::<usize>()) {
        Some(Ok(n)) if n <= rest.len() => &rest[..n],
        Some(Ok(_)) => return Err("the answer ended inside its body".to_owned()),
        Some(Err(_)) => return Err("invalid content-length".to_owned()),
        None => rest,
    };
    if body.len() > MAX_BODY {
        return Err(format!("the answer is over {MAX_BODY} bytes"));
    }
    Ok(body.to_vec())
}

fn dechunk(mut input: &[u8]) -> Result<Vec<u8>, String> {
    let mut decoder = ChunkedDecoder::decoding();
    let mut out = Vec::new();
    loop {
        let progress = decoder.feed(input).map_err(|e| format!("invalid chunked body: {e:?}"))?;
        if let Some(span) = &progress.data {
            out.extend_from_slice(&input[span.clone()]);
        }
        if progress.done {
            return Ok(out);
        }
        if progress.consumed == 0 || progress.consumed >= input.len() && progress.data.is_none() {
            return Err("the answer ended inside its body".to_owned());
        }
        input = &input[progress.consumed..];
        if out.len() > MAX_BODY {
            return Err(format!("the answer is over {MAX_BODY} bytes"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_length_by_chunks_or_to_the_end_and_only_a_200_counts() {
        assert_eq!(body(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}xx").unwrap(), b"{}");
        assert_eq!(body(b"HTTP/1.1 200 OK\r\n\r\n{\"keys\":[]}").unwrap(), b"{\"keys\":[]}");
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{\"\r\n4\r\nk\":1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(body(chunked).unwrap(), b"{\"k\":1}");
        assert_eq!(body(b"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n").unwrap_err(), "status 503");
        assert!(body(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab").is_err());
    }

    #[test]
    fn an_answer_is_whole_by_its_framing_without_waiting_for_the_close() {
        assert!(whole(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"));
        assert!(!whole(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n{}"));
        assert!(whole(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"));
        assert!(!whole(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n"));
        assert!(!whole(b"HTTP/1.1 200 OK\r\n\r\n{}"), "unframed: to the end of the stream");
        assert!(!whole(b"HTTP/1.1 200 OK\r\ncontent-le"));
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split_port("keys.example.com", 443).unwrap(), ("keys.example.com", 443));
        assert_eq!(split_port("127.0.0.1:8080", 80).unwrap(), ("127.0.0.1", 8080));
        assert_eq!(split_port("[::1]:9", 80).unwrap(), ("::1", 9));
        assert!(split_port("host:x", 80).is_err());
    }
}
