//! TLS test support: throwaway certificates (rcgen: CAs, server and client leaves), blocking
//! rustls clients that can speak HTTP/1.1 and say which certificate they were served, a rustls
//! HTTP backend on 127.0.0.1:0 (optionally requiring client certificates, counting handshakes),
//! and the Istio YAML for TLS servers, Secrets, TLS ServiceEntries and TLS routes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
    SupportedProtocolVersion,
};

use super::backend::Received;
use super::client::Response;
use super::config::head;

// ---------------------------------------------------------------------------------------------
// Certificates

fn next_serial() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 ^ u64::from(std::process::id());
    // Positive, distinct within the process, and unlikely to repeat across processes.
    ((seed.wrapping_mul(0x9E37_79B9) ^ NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x1_0000_0001)) >> 2) | 1
}

/// A certificate authority that signs the test's leaves.
pub struct Ca {
    pub cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(SerialNumber::from(next_serial()));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Writes the CA certificate to `dir/NAME` and returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A leaf for `dns` (DNS names, or IP addresses) and `uris` (URI SANs), with no extended key
    /// usage; `edit` adjusts the rest (subject, validity, serial) before this CA signs it.
    pub fn leaf(&self, dns: &[&str], uris: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params = CertificateParams::new(dns.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.subject_alt_names.extend(uris.iter().map(|u| SanType::URI((*u).try_into().unwrap())));
        params.serial_number = Some(SerialNumber::from(next_serial()));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.use_authority_key_identifier_extension = true;
        edit(&mut params);
        let serial = params.serial_number.clone().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            spki_der: key.public_key_der(),
            serial,
        }
    }

    /// A server leaf for `names` (DNS SANs), subject CN = the first name.
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, &[], |params| {
            params.distinguished_name = common_name(names[0]);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        })
    }

    /// A client leaf with subject CN = `cn` and, if given, a URI SAN (a SPIFFE id).
    pub fn client(&self, cn: &str, uri: Option<&str>) -> Leaf {
        self.leaf(&[], uri.as_slice(), |params| {
            params.distinguished_name = common_name(cn);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        })
    }

    /// A PEM certificate revocation list of this CA revoking `leaves`, current until 2100.
    pub fn crl(&self, leaves: &[&Leaf]) -> String {
        self.crl_until(leaves, 2100)
    }

    /// A PEM certificate revocation list of this CA revoking `leaves`, issued in 2020 and current
    /// until the start of `next_update_year` (a past one makes a stale list).
    pub fn crl_until(&self, leaves: &[&Leaf], next_update_year: i32) -> String {
        let revoked = |leaf: &&Leaf| RevokedCertParams {
            serial_number: leaf.serial.clone(),
            revocation_time: date_time_ymd(2020, 1, 1),
            reason_code: None,
            invalidity_date: None,
        };
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(next_update_year, 1, 1),
            crl_number: SerialNumber::from(next_serial()),
            issuing_distribution_point: None,
            revoked_certs: leaves.iter().map(revoked).collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.cert, &self.key).unwrap().pem().unwrap()
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// A signed leaf certificate and its private key (PKCS#8).
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    key_der: Vec<u8>,
    spki_der: Vec<u8>,
    /// What a CRL names it by.
    serial: SerialNumber,
}

impl Leaf {
    /// Writes `dir/STEM.crt` and `dir/STEM.key`; returns (cert path, key path).
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.der.clone())]
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The public key, a DER SubjectPublicKeyInfo: what an SPKI pin hashes.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the DER certificate, lower-case hex: XFCC's `Hash`.
    pub fn sha256_hex(&self) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, &self.der).as_ref())
    }

    pub fn info(&self) -> CertInfo {
        CertInfo::parse(&self.der)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Replaces `path` with `contents` the way Kubernetes updates a mounted file: write a temporary
/// file beside it, then rename it over.
pub fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension(format!("tmp{}", next_serial()));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// What a test reads off a served certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, hex.
    pub serial: String,
    pub subject: String,
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> CertInfo {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der).expect("a DER certificate");
        let mut info = CertInfo {
            serial: hex(cert.raw_serial()),
            subject: cert.subject().to_string(),
            dns_names: Vec::new(),
            uris: Vec::new(),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => info.dns_names.push(d.to_string()),
                    GeneralName::URI(u) => info.uris.push(u.to_string()),
                    _ => {}
                }
            }
        }
        info
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(cas: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).unwrap();
    }
    roots
}

/// Which TLS versions a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    Both,
    Only12,
    Only13,
}

/// A blocking rustls client trusting one CA.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

type WrapVerifier = Box<dyn FnOnce(Arc<WebPkiServerVerifier>) -> Arc<dyn ServerCertVerifier>>;

/// How a [`TlsClient`] is built.
pub struct TlsClientBuilder {
    roots: Vec<CertificateDer<'static>>,
    identity: Option<Leaf>,
    versions: Versions,
    verify_with: Option<WrapVerifier>,
    alpn: Vec<Vec<u8>>,
    resume: bool,
}

impl TlsClientBuilder {
    /// Keeps sessions (tickets and session IDs) for later connections to resume.
    pub fn resume(mut self) -> Self {
        self.resume = true;
        self
    }

    /// Presents `leaf` when the server asks for a certificate.
    pub fn identity(mut self, leaf: &Leaf) -> Self {
        self.identity = Some(leaf.clone());
        self
    }

    pub fn versions(mut self, v: Versions) -> Self {
        self.versions = v;
        self
    }

    /// Verifies the server's certificate with what `wrap` makes of the usual verifier (one that
    /// checks for another name than the SNI sent, say).
    pub fn verify_with(
        mut self,
        wrap: impl FnOnce(Arc<WebPkiServerVerifier>) -> Arc<dyn ServerCertVerifier> + 'static,
    ) -> Self {
        self.verify_with = Some(Box::new(wrap));
        self
    }

    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    pub fn build(self) -> TlsClient {
        static V12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
        static V13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let versions = match self.versions {
            Versions::Both => BOTH,
            Versions::Only12 => V12,
            Versions::Only13 => V13,
        };
        let builder = ClientConfig::builder_with_provider(provider()).with_protocol_versions(versions).unwrap();
        let roots = Arc::new(roots(&self.roots));
        let builder = match self.verify_with {
            None => builder.with_root_certificates(roots),
            Some(wrap) => {
                let inner = WebPkiServerVerifier::builder_with_provider(roots, provider()).build().unwrap();
                builder.dangerous().with_custom_certificate_verifier(wrap(inner))
            }
        };
        let mut config = match self.identity {
            Some(leaf) => builder.with_client_auth_cert(leaf.chain(), leaf.key()).unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        // Unless asked, every connection is a full handshake: a resumed session shows the
        // certificate of the handshake that issued its ticket, not the one the server holds now.
        if !self.resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        TlsClient { config: Arc::new(config) }
    }
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl TlsClient {
    /// A client trusting `ca`, no client certificate, TLS 1.2 and 1.3.
    pub fn builder(ca: &Ca) -> TlsClientBuilder {
        TlsClientBuilder {
            roots: vec![ca.der()],
            identity: None,
            versions: Versions::Both,
            verify_with: None,
            alpn: Vec::new(),
            resume: false,
        }
    }

    pub fn new(ca: &Ca) -> TlsClient {
        Self::builder(ca).build()
    }

    /// Connects to `addr` with SNI `sni` and completes the handshake (as far as the client
    /// sees it: with TLS 1.3 a server may still refuse the client's certificate afterwards).
    pub fn connect(&self, addr: SocketAddr, sni: &str) -> io::Result<TlsStream> {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        sock.set_write_timeout(Some(Duration::from_secs(5)))?;
        let name = ServerName::try_from(sni.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(self.config.clone(), name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }

    /// A keep-alive HTTP/1.1 connection over TLS.
    pub fn open(&self, addr: SocketAddr, sni: &str) -> io::Result<TlsConn> {
        Ok(TlsConn { reader: BufReader::new(self.connect(addr, sni)?) })
    }

    /// `GET path` with `Host: host` on a fresh connection (SNI `sni`): the response, or why there
    /// was none (handshake refused, connection closed...).
    pub fn get(&self, addr: SocketAddr, sni: &str, host: &str, path: &str) -> io::Result<Response> {
        self.request(addr, sni, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
    }

    /// One raw request on a fresh connection.
    pub fn request(&self, addr: SocketAddr, sni: &str, raw: &str) -> io::Result<Response> {
        let mut c = self.open(addr, sni)?;
        c.send(raw.as_bytes())?;
        c.read_response()
    }

    /// The certificate the server presents for SNI `sni`.
    pub fn served(&self, addr: SocketAddr, sni: &str) -> io::Result<Vec<u8>> {
        let s = self.connect(addr, sni)?;
        Ok(peer_der(&s))
    }
}

/// The leaf certificate the peer of `s` presented.
pub fn peer_der(s: &TlsStream) -> Vec<u8> {
    s.conn.peer_certificates().and_then(|c| c.first()).expect("a server certificate").to_vec()
}

/// An HTTP/1.1 connection over TLS; responses are read in order.
pub struct TlsConn {
    pub reader: BufReader<TlsStream>,
}

impl TlsConn {
    pub fn stream(&self) -> &TlsStream {
        self.reader.get_ref()
    }

    pub fn peer_der(&self) -> Vec<u8> {
        peer_der(self.stream())
    }

    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(raw)?;
        s.flush()
    }

    pub fn get(&mut self, path: &str, host: &str) -> io::Result<Response> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
        self.read_response()
    }

    pub fn read_response(&mut self) -> io::Result<Response> {
        read_response(&mut self.reader)
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one HTTP/1.1 response (not to a HEAD) from `r`.
pub fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a status line"));
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = if parts.next() == Some("HTTP/1.0") { 0 } else { 1 };
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad(&line))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed in the head"));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').ok_or_else(|| bad(l))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Response { status, reason, version, headers, body: Vec::new() };
    if status < 200 || status == 204 || status == 304 {
        return Ok(resp);
    }
    if resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("chunk size"))?;
            if size == 0 {
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("content-length"))?;
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    } else {
        // Read to the close; a peer that closes without close_notify still ends the body.
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => resp.body.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// A TLS backend

/// An HTTPS/1.1 backend on 127.0.0.1:0 (rustls, a thread per connection). Every request is
/// answered 200 with the backend's name as body and `x-backend: NAME`; `/status/N` answers N.
pub struct TlsBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// TCP connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// Handshakes completed.
    pub handshakes: Arc<AtomicUsize>,
    /// The client certificates presented (leaf DER), one per handshake that had one.
    pub client_certs: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The SNI of every completed handshake (`None`: none sent).
    pub snis: Arc<Mutex<Vec<Option<String>>>>,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl TlsBackend {
    /// Serves `leaf`; when `client_ca` is given, requires a client certificate it signed.
    pub fn start(name: &str, leaf: &Leaf, client_ca: Option<&Ca>) -> TlsBackend {
        let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&[ca.der()])), provider())
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(builder.with_single_cert(leaf.chain(), leaf.key()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TlsBackend {
            name: name.to_string(),
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            handshakes: Arc::default(),
            client_certs: Arc::default(),
            snis: Arc::default(),
            received: Arc::default(),
            stop: Arc::default(),
        };
        let (name, accepted, handshakes, certs, snis, rec, stop) = (
            b.name.clone(),
            b.accepted.clone(),
            b.handshakes.clone(),
            b.client_certs.clone(),
            b.snis.clone(),
            b.received.clone(),
            b.stop.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(sock) = stream else { continue };
                accepted.fetch_add(1, Ordering::Relaxed);
                let (config, name, handshakes, certs, snis, rec) =
                    (config.clone(), name.clone(), handshakes.clone(), certs.clone(), snis.clone(), rec.clone());
                std::thread::spawn(move || {
                    let _ = sock.set_nodelay(true);
                    let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
                    let Ok(conn) = ServerConnection::new(config) else { return };
                    let mut s = StreamOwned::new(conn, sock);
                    while s.conn.is_handshaking() {
                        if s.conn.complete_io(&mut s.sock).is_err() {
                            return;
                        }
                    }
                    handshakes.fetch_add(1, Ordering::Relaxed);
                    snis.lock().unwrap().push(s.conn.server_name().map(str::to_string));
                    if let Some(leaf) = s.conn.peer_certificates().and_then(|c| c.first()) {
                        certs.lock().unwrap().push(leaf.to_vec());
                    }
                    serve_http(s, &name, &rec);
                });
            }
        });
        b
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Received {
        self.requests().pop().expect("the TLS backend received a request")
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_http(stream: StreamOwned<ServerConnection, TcpStream>, name: &str, rec: &Mutex<Vec<Received>>) {
    let mut r = BufReader::new(stream);
    loop {
        let Some(mut req) = super::backend::read_head(&mut r) else {
            return;
        };
        // `/early/N` answers N before reading the body, then reads it away, as a server
        // refusing an upload at once does.
        if let Some(code) = req.target.strip_prefix("/early/").and_then(|c| c.parse::<u16>().ok()) {
            rec.lock().unwrap().push(req);
            let w = r.get_mut();
            let head =
                format!("HTTP/1.1 {code} X\r\nx-backend: {name}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if w.write_all(head.as_bytes()).and_then(|_| w.flush()).is_ok() {
                let _ = io::copy(&mut r, &mut io::sink());
            }
            return;
        }
        if let Some(len) = req.header("content-length").and_then(|l| l.parse::<usize>().ok()) {
            req.body.resize(len, 0);
            if r.read_exact(&mut req.body).is_err() {
                return;
            }
        }
        let close = req.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let code: u16 = req.target.strip_prefix("/status/").and_then(|c| c.parse().ok()).unwrap_or(200);
        rec.lock().unwrap().push(req);
        let conn = if close { "connection: close\r\n" } else { "" };
        let w = r.get_mut();
        let head = format!("HTTP/1.1 {code} X\r\nx-backend: {name}\r\ncontent-length: {}\r\n{conn}\r\n", name.len());
        if w.write_all(head.as_bytes()).and_then(|_| w.write_all(name.as_bytes())).and_then(|_| w.flush()).is_err()
            || close
        {
            w.conn.send_close_notify();
            let _ = w.flush();
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// openssl s_client, as a client outside Rust sees the gateway

/// What one `openssl s_client` connection printed, and whether it ended well.
pub struct SClient {
    pub ok: bool,
    pub text: String,
}

impl SClient {
    /// Connects to 127.0.0.1:`port` with SNI `sni`, trusting `ca`, with `args` (versions,
    /// `-sess_out`/`-sess_in` files, a client certificate…). With a `request` (which should
    /// close the connection), sends it and reads until the server closes; 10 s at most.
    pub fn run(port: u16, sni: &str, ca: &Path, args: &[&str], request: Option<&str>) -> SClient {
        let mut cmd = std::process::Command::new("timeout");
        cmd.args(["10", "openssl", "s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", sni])
            .arg("-CAfile")
            .arg(ca)
            .args(args)
            .args(request.map(|_| "-ign_eof"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("openssl runs");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(request) = request {
            let _ = stdin.write_all(request.as_bytes());
        }
        drop(stdin);
        let out = child.wait_with_output().expect("openssl runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        SClient { ok: out.status.success(), text }
    }

    /// The handshake resumed the session given with `-sess_in`.
    pub fn resumed(&self) -> bool {
        self.text.lines().any(|l| l.starts_with("Reused, TLSv"))
    }

    /// The handshake made a new session.
    pub fn new_session(&self) -> bool {
        self.text.lines().any(|l| l.starts_with("New, TLSv"))
    }

    /// The status of the HTTP answer read, if one was. s_client may print a session ticket
    /// arriving in the middle of a line of the answer, so the status line is looked for anywhere.
    pub fn status(&self) -> Option<u16> {
        let (_, rest) = self.text.split_once("HTTP/1.1 ")?;
        rest.get(..3)?.parse().ok()
    }
}

// ---------------------------------------------------------------------------------------------
// Istio YAML

/// A `tls:` flow mapping for `mode` with a certificate and key file.
pub fn files_tls(mode: &str, cert: &Path, key: &Path) -> String {
    format!("{{mode: {mode}, serverCertificate: \"{}\", privateKey: \"{}\"}}", cert.display(), key.display())
}

/// A `tls:` flow mapping for `SIMPLE` with a certificate and key file.
pub fn simple_tls(cert: &Path, key: &Path) -> String {
    files_tls("SIMPLE", cert, key)
}

/// A `tls:` flow mapping for `mode` (MUTUAL, OPTIONAL_MUTUAL) with a CA to verify clients.
pub fn mutual_tls(mode: &str, cert: &Path, key: &Path, ca: &Path) -> String {
    format!(
        "{{mode: {mode}, serverCertificate: \"{}\", privateKey: \"{}\", caCertificates: \"{}\"}}",
        cert.display(),
        key.display(),
        ca.display()
    )
}

/// One entry of a Gateway's `servers:` list; `tls` is a flow mapping (or empty for none). The
/// port is named `name`, which must be unique in the Gateway.
pub fn server(port: u16, name: &str, protocol: &str, hosts: &[&str], tls: &str) -> String {
    let hosts: String = hosts.iter().map(|h| format!("    - \"{h}\"\n")).collect();
    let tls = if tls.is_empty() { String::new() } else { format!("    tls: {tls}\n") };
    format!("  - port:\n      number: {port}\n      name: {name}\n      protocol: {protocol}\n    hosts:\n{hosts}{tls}")
}

/// A Gateway `name` in `default` for the default selector with the given servers.
pub fn gateway(name: &str, servers: &[String]) -> String {
    format!("{}  selector:\n    istio: ingressgateway\n  servers:\n{}", head("Gateway", name), servers.concat())
}

/// A VirtualService for `hosts` bound to `gateways`, every request to `dest` (its only port).
pub fn route_all(name: &str, gateways: &[&str], hosts: &[&str], dest: &str) -> String {
    let hosts: String = hosts.iter().map(|h| format!("  - \"{h}\"\n")).collect();
    let gateways: String = gateways.iter().map(|g| format!("  - {g}\n")).collect();
    format!(
        "{}  hosts:\n{hosts}  gateways:\n{gateways}  http:\n  - route:\n    - destination:\n        host: {dest}\n",
        head("VirtualService", name)
    )
}

/// A VirtualService for `hosts` on `gateway` with one `tls` route: SNI in `sni_hosts` on
/// gateway port `port` to `dest`:`dest_port`.
pub fn tls_route(
    name: &str,
    gateway: &str,
    hosts: &[&str],
    sni_hosts: &[&str],
    port: u16,
    dest: &str,
    dest_port: u16,
) -> String {
    let hosts: String = hosts.iter().map(|h| format!("  - \"{h}\"\n")).collect();
    let snis: String = sni_hosts.iter().map(|h| format!("        - \"{h}\"\n")).collect();
    format!(
        "{}  hosts:
{hosts}  gateways:
  - {gateway}
  tls:
  - match:
      - port: {port}
        sniHosts:
{snis}    route:
    - destination:
        host: {dest}
        port:
          number: {dest_port}
",
        head("VirtualService", name)
    )
}

/// A STATIC ServiceEntry `host` with one port `port` of `protocol` (named after it in lower
/// case), one endpoint at 127.0.0.1:`endpoint_port`, and `location` if given.
pub fn service_entry(
    name: &str,
    host: &str,
    port: u16,
    protocol: &str,
    endpoint_port: u16,
    location: Option<&str>,
) -> String {
    let port_name = protocol.to_ascii_lowercase();
    let location = location.map(|l| format!("  location: {l}\n")).unwrap_or_default();
    format!(
        "{}  hosts:
  - {host}
  ports:
  - number: {port}
    name: {port_name}
    protocol: {protocol}
{location}  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports:
      {port_name}: {endpoint_port}
",
        head("ServiceEntry", name)
    )
}

/// A DestinationRule for `host` whose `trafficPolicy.tls` is the flow mapping `tls`.
pub fn tls_destination_rule(name: &str, host: &str, tls: &str) -> String {
    format!("{}  host: {host}\n  trafficPolicy:\n    tls: {tls}\n", head("DestinationRule", name))
}

/// A core `kind: Secret` of type `kubernetes.io/tls` holding `leaf`, as kubectl writes it.
pub fn secret(name: &str, leaf: &Leaf) -> String {
    secret_in("default", name, leaf)
}

/// [`secret`] in `namespace`.
pub fn secret_in(namespace: &str, name: &str, leaf: &Leaf) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: {namespace}
type: kubernetes.io/tls
data:
  tls.crt: {}
  tls.key: {}
",
        b64(&leaf.cert_pem),
        b64(&leaf.key_pem)
    )
}

/// Writes `leaf` as a secrets-directory credential: `dir/NAME/{tls.crt,tls.key}`.
pub fn write_credential(dir: &Path, name: &str, leaf: &Leaf) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(d.join("tls.key"), &leaf.key_pem).unwrap();
}
