//! TLS material named by the config, read and checked to be PEM that rustls will load: Gateway
//! server certificates and DestinationRule client certificates, from files or `credentialName`.
//! Validation reports what fails here; the snapshot compiler builds its TLS settings from it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::CertificateRevocationListDer;

use super::destination_rule::{ClientTlsMode, ClientTlsSettings};
use super::gateway::{ServerTlsMode, ServerTlsSettings};
use super::{ConfigSet, Resource, Secret};

/// A failure to build TLS settings: the field (relative to the `tls` block) and why.
pub(crate) type TlsError = (String, String);

/// Where `credentialName` looks: `kind: Secret` documents of the set first, then the secrets
/// directory (`DIR/NAME/{tls.crt,tls.key,ca.crt}`).
pub(crate) struct Secrets<'a> {
    by_key: HashMap<(&'a str, &'a str), &'a Resource<Secret>>,
    dir: Option<&'a Path>,
    /// Every file certificate material came from (config files holding the Secrets used
    /// included), as it was when read: a change on disk is a reason to reload.
    read: RefCell<Vec<WatchedFile>>,
}

/// A file the running config depends on, and what it looked like when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFile {
    pub path: Arc<Path>,
    pub stamp: Option<FileStamp>,
}

/// What tells one version of a file from the next without reading it: a rewrite changes the
/// modification time or size, a rename over it (how Kubernetes swaps a mounted secret) the
/// inode. Symlinks are followed, as a read does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: (u64, u64),
}

impl FileStamp {
    /// `None` when the file cannot be looked at (gone, unreadable directory).
    pub fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self { modified: m.modified().ok(), len: m.len(), inode: (m.dev(), m.ino()) })
    }
}

/// Certificate material, each part optional until the mode says what it needs.
#[derive(Default)]
pub(crate) struct Material {
    pub cert: Option<Arc<[u8]>>,
    pub key: Option<Arc<[u8]>>,
    pub ca: Option<Arc<[u8]>>,
    /// Certificate revocation lists checked with `ca` (`caCrl`, a credential's `ca.crl`).
    pub crl: Option<Arc<[u8]>>,
    /// The files read, for reloads to watch.
    pub files: Vec<Arc<Path>>,
}

impl<'a> Secrets<'a> {
    pub(crate) fn new(set: &'a ConfigSet, dir: Option<&'a Path>) -> Self {
        let mut by_key = HashMap::new();
        for s in &set.secrets {
            // The first document of a name wins, as with every other kind.
            by_key.entry((s.namespace(), s.name())).or_insert(s);
        }
        Self { by_key, dir, read: RefCell::default() }
    }

    /// The files read so far, each once.
    pub(crate) fn watched(&self) -> Vec<WatchedFile> {
        let mut files = self.read.borrow().clone();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        files
    }

    fn note(&self, path: &Path, stamp: Option<FileStamp>) {
        self.read.borrow_mut().push(WatchedFile { path: Arc::from(path), stamp });
    }

    /// Reads `path`, noting it among the material's files and the watched ones. The stamp is
    /// taken first: a change racing the read then still differs from it.
    fn read_file(&self, path: &Path, files: &mut Vec<Arc<Path>>) -> Result<Arc<[u8]>, String> {
        let stamp = FileStamp::of(path);
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        self.note(path, stamp);
        files.push(Arc::from(path));
        Ok(bytes.into())
    }

    /// Resolves `credentialName` in `namespace`, the gateway's own: istiod's SDS reads a
    /// `kubernetes://NAME` credential from the proxy's namespace, not the Gateway resource's. Keys are Kubernetes TLS secret keys (`tls.crt`,
    /// `tls.key`, `ca.crt`, `ca.crl`) or Istio's generic ones (`cert`, `key`, `cacert`, `crl`);
    /// the CA and its CRL may also come from a `NAME-cacert` secret, as istiod's SDS allows.
    fn credential(&self, namespace: &str, name: &str) -> Result<Material, String> {
        const CA: &[&str] = &[Secret::CA_CERT, "cacert"];
        const CRL: &[&str] = &[Secret::CA_CRL, "crl"];
        if let Some(resource) = self.by_key.get(&(namespace, name)) {
            self.note(&resource.origin.file, FileStamp::of(&resource.origin.file));
            let secret = &resource.spec;
            let what = format!("Secret {namespace}/{name}");
            let mut material = Material {
                cert: secret_value(secret, &[Secret::TLS_CERT, "cert"], &what)?,
                key: secret_value(secret, &[Secret::TLS_KEY, "key"], &what)?,
                ca: secret_value(secret, CA, &what)?,
                crl: secret_value(secret, CRL, &what)?,
                files: Vec::new(),
            };
            if material.ca.is_none() {
                let ca_name = format!("{name}-cacert");
                if let Some(ca_secret) = self.by_key.get(&(namespace, ca_name.as_str())) {
                    self.note(&ca_secret.origin.file, FileStamp::of(&ca_secret.origin.file));
                    let what = format!("Secret {namespace}/{ca_name}");
                    material.ca = secret_value(&ca_secret.spec, CA, &what)?;
                    if material.crl.is_none() {
                        material.crl = secret_value(&ca_secret.spec, CRL, &what)?;
                    }
                }
            }
            return Ok(material);
        }
        let missing = || {
            // A Secret of that name elsewhere is the usual slip: kept beside the Gateway resource
            // rather than in the gateway's own namespace.
            let mut elsewhere: Vec<&str> = self.by_key.keys().filter(|(_, n)| *n == name).map(|(ns, _)| *ns).collect();
            elsewhere.sort_unstable();
            let hint = match elsewhere.as_slice() {
                [] => String::new(),
                found => format!("; namespace {} has one", found.join(", ")),
            };
            format!("no Secret {name} in namespace {namespace} (the gateway's namespace, --namespace{hint})")
        };
        let Some(dir) = self.dir else {
            return Err(format!("{} and no secrets directory to look in", missing()));
        };
        let base = dir.join(name);
        if !base.is_dir() {
            return Err(format!("{} and no directory {}", missing(), base.display()));
        }
        let mut material = Material::default();
        material.cert = Some(self.read_file(&base.join(Secret::TLS_CERT), &mut material.files)?);
        material.key = Some(self.read_file(&base.join(Secret::TLS_KEY), &mut material.files)?);
        material.ca = self.read_optional(&base.join(Secret::CA_CERT), &mut material.files)?;
        material.crl = self.read_optional(&base.join(Secret::CA_CRL), &mut material.files)?;
        Ok(material)
    }

    /// Reads `path` if it exists. Watched even while absent: a CA bundle or CRL that appears
    /// changes what is verified.
    fn read_optional(&self, path: &Path, files: &mut Vec<Arc<Path>>) -> Result<Option<Arc<[u8]>>, String> {
        if !path.exists() {
            self.note(path, None);
            return Ok(None);
        }
        self.read_file(path, files).map(Some)
    }
}

/// The first of `keys` the Secret holds, decoded.
fn secret_value(secret: &Secret, keys: &[&str], what: &str) -> Result<Option<Arc<[u8]>>, String> {
    for key in keys {
        match secret.get(key) {
            Ok(Some(v)) => return Ok(Some(v.into())),
            Ok(None) => {}
            Err(e) => return Err(format!("{what} key {key}: invalid base64: {e}")),
        }
    }
    Ok(None)
}

/// Reads an optional file field into `slot` (left alone when the field is absent).
fn read_field(
    secrets: &Secrets<'_>,
    path: Option<&str>,
    field: &str,
    material: &mut Material,
    slot: fn(&mut Material) -> &mut Option<Arc<[u8]>>,
) -> Result<(), TlsError> {
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        let bytes = secrets.read_file(&PathBuf::from(path), &mut material.files).map_err(|e| (field.to_string(), e))?;
        *slot(material) = Some(bytes);
    }
    Ok(())
}

fn check_certs(bytes: &[u8], field: &str) -> Result<(), TlsError> {
    let mut count = 0;
    for cert in rustls_pemfile::certs(&mut &*bytes) {
        cert.map_err(|e| (field.to_string(), format!("not a PEM certificate: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err((field.to_string(), "no PEM certificate found".to_string()));
    }
    Ok(())
}

/// `caCrl`'s lists, parsed: PEM `X509 CRL` blocks, at least one (rustls checks what they say
/// when a verifier is built).
pub(crate) fn crls(bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = rustls_pemfile::crls(&mut &*bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("caCrl".to_string(), format!("not a PEM certificate revocation list: {e}")))?;
    if crls.is_empty() {
        return Err(("caCrl".to_string(), "no PEM certificate revocation list (X509 CRL) found".to_string()));
    }
    Ok(crls)
}

fn check_key(bytes: &[u8], field: &str) -> Result<(), TlsError> {
    match rustls_pemfile::private_key(&mut &*bytes) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err((field.to_string(), "no PEM private key found".to_string())),
        Err(e) => Err((field.to_string(), format!("not a PEM private key: {e}"))),
    }
}

/// A Gateway server's certificate material for its `tls` block (none for the passthrough
/// modes). `namespace` is the gateway's own (`--namespace`), where `credentialName` is looked up.
pub(crate) fn server_material(
    tls: &ServerTlsSettings,
    namespace: &str,
    secrets: &Secrets<'_>,
) -> Result<Material, TlsError> {
    let mut material = Material::default();
    let mutual = match tls.mode {
        None | Some(ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough) => return Ok(material),
        Some(ServerTlsMode::IstioMutual) => {
            return Err(("mode".into(), "ISTIO_MUTUAL needs Istio's mesh CA, which Strait does not have".into()));
        }
        Some(ServerTlsMode::Simple) => false,
        Some(ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual) => true,
    };
    // One credential is served: `credentialNames`/`tlsCertificates` contribute their first.
    if let Some(name) = tls.credential_name.as_deref().or(tls.credential_names.first().map(String::as_str)) {
        material = secrets.credential(namespace, name).map_err(|e| ("credentialName".to_string(), e))?;
    } else if tls.server_certificate.is_some() || tls.private_key.is_some() {
        read_field(secrets, tls.server_certificate.as_deref(), "serverCertificate", &mut material, |m| &mut m.cert)?;
        read_field(secrets, tls.private_key.as_deref(), "privateKey", &mut material, |m| &mut m.key)?;
    } else if let Some(pair) = tls.tls_certificates.first() {
        read_field(
            secrets,
            pair.server_certificate.as_deref(),
            "tlsCertificates[0].serverCertificate",
            &mut material,
            |m| &mut m.cert,
        )?;
        read_field(secrets, pair.private_key.as_deref(), "tlsCertificates[0].privateKey", &mut material, |m| {
            &mut m.key
        })?;
        read_field(
            secrets,
            pair.ca_certificates.as_deref(),
            "tlsCertificates[0].caCertificates",
            &mut material,
            |m| &mut m.ca,
        )?;
    }
    if material.ca.is_none() {
        read_field(secrets, tls.ca_certificates.as_deref(), "caCertificates", &mut material, |m| &mut m.ca)?;
    }
    if material.crl.is_none() {
        read_field(secrets, tls.ca_crl.as_deref(), "caCrl", &mut material, |m| &mut m.crl)?;
    }
    let cert =
        material.cert.as_deref().ok_or(("serverCertificate".to_string(), "a certificate is required".to_string()))?;
    check_certs(cert, "serverCertificate")?;
    let key = material.key.as_deref().ok_or(("privateKey".to_string(), "a private key is required".to_string()))?;
    check_key(key, "privateKey")?;
    match (&material.ca, mutual) {
        (Some(ca), _) => check_certs(ca, "caCertificates")?,
        (None, true) => {
            return Err(("caCertificates".into(), "client certificate verification needs a CA bundle".into()));
        }
        (None, false) => {}
    }
    if let Some(crl) = &material.crl {
        crls(crl)?;
    }
    Ok(material)
}

/// A DestinationRule `tls` block's client material (none for `DISABLE`). `namespace` is the
/// gateway's own (`--namespace`), where istiod's SDS looks up a client `credentialName`.
pub(crate) fn upstream_material(
    tls: &ClientTlsSettings,
    namespace: &str,
    secrets: &Secrets<'_>,
) -> Result<Material, TlsError> {
    match tls.mode {
        None | Some(ClientTlsMode::Disable) => return Ok(Material::default()),
        Some(ClientTlsMode::IstioMutual) => {
            return Err((
                "mode".into(),
                "ISTIO_MUTUAL needs Istio's mesh certificates, which Strait does not have".into(),
            ));
        }
        Some(ClientTlsMode::Simple | ClientTlsMode::Mutual) => {}
    }
    let mut material = Material::default();
    if let Some(name) = tls.credential_name.as_deref() {
        material = secrets.credential(namespace, name).map_err(|e| ("credentialName".to_string(), e))?;
    } else {
        read_field(secrets, tls.client_certificate.as_deref(), "clientCertificate", &mut material, |m| &mut m.cert)?;
        read_field(secrets, tls.private_key.as_deref(), "privateKey", &mut material, |m| &mut m.key)?;
    }
    if material.ca.is_none() {
        read_field(secrets, tls.ca_certificates.as_deref(), "caCertificates", &mut material, |m| &mut m.ca)?;
    }
    if material.crl.is_none() {
        read_field(secrets, tls.ca_crl.as_deref(), "caCrl", &mut material, |m| &mut m.crl)?;
    }
    if tls.mode == Some(ClientTlsMode::Mutual) {
        let cert = material
            .cert
            .as_deref()
            .ok_or(("clientCertificate".to_string(), "MUTUAL needs a client certificate".to_string()))?;
        check_certs(cert, "clientCertificate")?;
        let key =
            material.key.as_deref().ok_or(("privateKey".to_string(), "MUTUAL needs a private key".to_string()))?;
        check_key(key, "privateKey")?;
    }
    if let Some(ca) = &material.ca {
        check_certs(ca, "caCertificates")?;
    }
    if let Some(crl) = &material.crl {
        crls(crl)?;
    }
    Ok(material)
}
