//! The YAML loader: files and directories → `---` documents → a [`ConfigSet`] of typed
//! resources, or every load-level error of every file (the module's doc says what is read).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::source::{join_path, render_key, split_documents, Node, RawDocument};
use super::{
    ConfigSet, Diagnostic, Diagnostics, Kind, ObjectMeta, Origin, Resource, Secret, Severity, Unenforced, ASM_VERSIONS,
    DEFAULT_NAMESPACE, ISTIO_VERSIONS, NOT_ENFORCED_KINDS, SERVED_KINDS, SERVED_SECURITY_KINDS,
};

/// Reads every path (file, or directory of `*.yaml`/`*.yml`) into a [`ConfigSet`], or every
/// load-level error found (YAML syntax, unknown kinds, fields and versions, types, duplicate
/// names, nothing Strait reads at all), in file and document order.
pub fn load(paths: &[PathBuf]) -> Result<ConfigSet, Diagnostics> {
    let mut loader = Loader::default();
    for path in paths {
        loader.path(path);
    }
    if loader.diagnostics.is_empty() && loader.set.is_empty() {
        // Serving nothing is never what a --config meant (a wrong directory, a file of
        // Deployments): refused, so that a reload to such a set keeps the config that serves.
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let message = match loader.skipped {
            0 => "no Istio resource or v1 Secret (a directory contributes the *.yaml and *.yml files directly \
                  in it)"
                .to_owned(),
            1 => "nothing Strait reads: 1 document, not an Istio resource (*.istio.io) or a v1 Secret".to_owned(),
            n => format!("nothing Strait reads: {n} documents, none an Istio resource (*.istio.io) or a v1 Secret"),
        };
        loader.diagnostics.push(Diagnostic::error(format!("--config {}: {message}", paths.join(", "))));
    }
    if loader.diagnostics.is_empty() {
        Ok(loader.set)
    } else {
        Err(loader.diagnostics)
    }
}

/// An object read from the Kubernetes API (`--kubernetes`): its JSON as the API serves it, and
/// the name its diagnostics carry where a file name would go, `k8s:KIND/namespace/name`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiObject {
    pub name: String,
    pub object: serde_json::Value,
}

/// [`load`] for `--config` paths (none, or some) beside objects read from the API server. The
/// paths are judged as [`load`] judges them (any error fails the whole); each object is loaded
/// on its own, and one that cannot be read is left out, its errors returned beside the set, as
/// istiod goes on without a resource it cannot convert. A set with nothing in it is served (a
/// cluster may hold no config yet).
pub fn load_with_objects(paths: &[PathBuf], objects: &[ApiObject]) -> Result<(ConfigSet, Diagnostics), Diagnostics> {
    let mut loader = Loader::default();
    for path in paths {
        loader.path(path);
    }
    if !loader.diagnostics.is_empty() {
        return Err(loader.diagnostics);
    }
    for object in objects {
        let file: Arc<Path> = Arc::from(Path::new(&object.name));
        // Rendered as YAML so that a diagnostic's field has a line to point at, as in a file.
        match serde_yaml::to_string(&object.object) {
            Ok(text) => loader.document(&file, RawDocument { index: 1, line: 1, text: text.into() }),
            Err(e) => loader.file_error(&file, format!("cannot render the object: {e}")),
        }
    }
    Ok((loader.set, loader.diagnostics))
}

/// The files a config directory contributes, in the order they are read: the *.yaml and *.yml
/// files directly in it, symlinks followed (a mounted ConfigMap's keys are symlinks into its
/// `..data`), its hidden `..data` directories not entered.
pub fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[derive(Default)]
struct Loader {
    set: ConfigSet,
    diagnostics: Diagnostics,
    /// (kind, `ns/name`) → where it was first defined, to report duplicates.
    seen: HashMap<(&'static str, String), Origin>,
    /// Documents of kinds Strait does not read.
    skipped: usize,
}

/// What to do with a document, by its `apiVersion` and `kind`.
enum Class {
    Gateway,
    VirtualService,
    DestinationRule,
    ServiceEntry,
    AuthorizationPolicy,
    EnvoyFilter,
    RequestAuthentication,
    Secret,
    AsmLocalRateLimiter,
    AsmGlobalRateLimiter,
    List,
    /// An Istio kind Strait does not act on yet.
    NotEnforced,
    Skip,
    /// `at` is the top-level key whose line the error is reported on.
    Invalid {
        at: &'static str,
        message: String,
    },
}

fn classify(api_version: &str, kind: &str) -> Class {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if let Some((_, versions)) = SERVED_SECURITY_KINDS.iter().find(|(k, _)| group == "security.istio.io" && *k == kind)
    {
        if versions.contains(&version) {
            return match kind {
                "AuthorizationPolicy" => Class::AuthorizationPolicy,
                "RequestAuthentication" => Class::RequestAuthentication,
                _ => Class::Skip,
            };
        }
        let message = format!("apiVersion {api_version} is not served for {kind} (versions: {})", versions.join(", "));
        return Class::Invalid { at: "apiVersion", message };
    }
    if let Some((_, _, versions)) = NOT_ENFORCED_KINDS.iter().find(|(g, k, _)| *g == group && *k == kind) {
        if versions.contains(&version) {
            return Class::NotEnforced;
        }
        let message = format!("apiVersion {api_version} is not served for {kind} (versions: {})", versions.join(", "));
        return Class::Invalid { at: "apiVersion", message };
    }
    // Istio's kinds of the group, as a message lists them.
    let kinds = || {
        let served = SERVED_KINDS.iter().filter(|_| group == "networking.istio.io");
        let served = served.chain(
            ["ASMLocalRateLimiter", "ASMGlobalRateLimiter"].iter().filter(|_| group == "istio.alibabacloud.com"),
        );
        let security = SERVED_SECURITY_KINDS.iter().filter(|_| group == "security.istio.io").map(|(k, _)| k);
        let more = NOT_ENFORCED_KINDS.iter().filter(|(g, _, _)| *g == group).map(|(_, k, _)| k);
        served.chain(security).chain(more).copied().collect::<Vec<_>>().join(", ")
    };
    match group {
        "networking.istio.io" if !ISTIO_VERSIONS.contains(&version) => Class::Invalid {
            at: "apiVersion",
            message: format!(
                "apiVersion {api_version} is not supported (networking.istio.io versions: {})",
                ISTIO_VERSIONS.join(", ")
            ),
        },
        "networking.istio.io" => match kind {
            "Gateway" => Class::Gateway,
            "VirtualService" => Class::VirtualService,
            "DestinationRule" => Class::DestinationRule,
            "ServiceEntry" => Class::ServiceEntry,
            // Istio serves EnvoyFilter at v1alpha3 only.
            "EnvoyFilter" if version == "v1alpha3" => Class::EnvoyFilter,
            "EnvoyFilter" => Class::Invalid {
                at: "apiVersion",
                message: format!("apiVersion {api_version} is not served for EnvoyFilter (versions: v1alpha3)"),
            },
            _ => Class::Invalid { at: "kind", message: format!("kind {kind} is not a {group} kind ({})", kinds()) },
        },
        "istio.alibabacloud.com" if kind == "ASMLocalRateLimiter" || kind == "ASMGlobalRateLimiter" => {
            match ASM_VERSIONS.contains(&version) {
                true if kind == "ASMLocalRateLimiter" => Class::AsmLocalRateLimiter,
                true => Class::AsmGlobalRateLimiter,
                false => Class::Invalid {
                    at: "apiVersion",
                    message: format!(
                        "apiVersion {api_version} is not served for {kind} (versions: {})",
                        ASM_VERSIONS.join(", ")
                    ),
                },
            }
        }
        _ if NOT_ENFORCED_KINDS.iter().any(|(g, _, _)| *g == group) => {
            Class::Invalid { at: "kind", message: format!("kind {kind} is not a {group} kind ({})", kinds()) }
        }
        "" if version == "v1" && kind == "Secret" => Class::Secret,
        "" if version == "v1" && kind == "List" => Class::List,
        _ => Class::Skip,
    }
}

/// The top level of an Istio object. `status` is what a cluster wrote, ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound(deserialize = "T: Deserialize<'de> + Default"))]
struct Envelope<T> {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: T,
    #[serde(default, rename = "status")]
    _status: Option<IgnoredAny>,
}

/// The top level of a core `Secret`: its fields sit beside `metadata`, not under `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SecretEnvelope {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default, rename = "type")]
    secret_type: Option<String>,
    #[serde(default)]
    data: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    string_data: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    immutable: Option<bool>,
}

/// Renders a serde path the way diagnostics (and [`locate`]) write fields.
pub(super) fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter().fold(String::new(), |acc, segment| match segment {
        Segment::Seq { index } => format!("{acc}[{index}]"),
        Segment::Map { key } => join_path(&acc, &render_key(key)),
        Segment::Enum { variant } => join_path(&acc, &render_key(variant)),
        Segment::Unknown => acc,
    })
}

/// Deserializes `value`, or gives the field path and message of the first error.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| (render_path(e.path()), e.inner().to_string()))
}

impl Loader {
    fn file_error(&mut self, file: &Path, message: String) {
        self.diagnostics.push(Diagnostic { file: Some(Arc::from(file)), ..Diagnostic::error(message) });
    }

    fn path(&mut self, path: &Path) {
        let metadata = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return self.file_error(path, format!("cannot read: {e}")),
        };
        if !metadata.is_dir() {
            return self.file(path);
        }
        let files = match config_files(path) {
            Ok(files) => files,
            Err(e) => return self.file_error(path, format!("cannot read directory: {e}")),
        };
        for file in files {
            self.file(&file);
        }
    }

    fn file(&mut self, path: &Path) {
        let text = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
                    return self.diagnostics.push(Diagnostic {
                        file: Some(Arc::from(path)),
                        line: Some(line),
                        ..Diagnostic::error("file is not valid UTF-8")
                    });
                }
            },
            Err(e) => return self.file_error(path, format!("cannot read: {e}")),
        };
        let file: Arc<Path> = Arc::from(path);
        for doc in split_documents(&text) {
            self.document(&file, doc);
        }
    }

    fn document(&mut self, file: &Arc<Path>, doc: RawDocument) {
        if doc.text.is_empty() {
            return;
        }
        match serde_yaml::from_str::<Value>(&doc.text) {
            Ok(value) => {
                let origin = Origin {
                    file: file.clone(),
                    document: doc.index,
                    line: doc.line,
                    source: doc.text,
                    source_line: doc.line,
                    item: None,
                };
                self.object(origin, value);
            }
            Err(e) => self.diagnostics.push(parse_error(file, &doc, &e)),
        }
    }

    /// One Kubernetes object: a whole document, or an item of a `List`.
    fn object(&mut self, origin: Origin, mut value: Value) {
        if value.is_null() {
            return;
        }
        strip_nulls(&mut value);
        if let Err(e) = value.apply_merge() {
            let at = Located { origin: &origin, kind: None, resource: None };
            return self.diagnostics.push(at.error("", None, e.to_string()));
        }
        let Value::Mapping(map) = &value else {
            let at = Located { origin: &origin, kind: None, resource: None };
            let message = "expected a Kubernetes object (a mapping with apiVersion and kind)";
            return self.diagnostics.push(at.error("", None, message));
        };
        let (api_version, kind) = match (string_field(map, "apiVersion"), string_field(map, "kind")) {
            (Ok(a), Ok(k)) => (a.to_owned(), k.to_owned()),
            // The message names the key; the line is the key's, or the object's if it is absent.
            (Err(message), _) => {
                let at = Located { origin: &origin, kind: None, resource: None };
                return self.diagnostics.push(at.error("apiVersion", None, message));
            }
            (_, Err(message)) => {
                let at = Located { origin: &origin, kind: None, resource: None };
                return self.diagnostics.push(at.error("kind", None, message));
            }
        };
        // Named in messages even when the object fails to deserialize as a whole.
        let meta = map.get("metadata");
        let resource = meta.and_then(|m| m.get("name")).and_then(Value::as_str).map(|name| {
            let ns = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str);
            format!("{}/{name}", ns.unwrap_or(DEFAULT_NAMESPACE))
        });
        let at = Located { origin: &origin, kind: Some(&kind), resource: resource.as_deref() };
        let error = match classify(&api_version, &kind) {
            Class::Gateway => self.istio(&at, value, api_version, |set| &mut set.gateways),
            Class::VirtualService => self.istio(&at, value, api_version, |set| &mut set.virtual_services),
            Class::DestinationRule => self.istio(&at, value, api_version, |set| &mut set.destination_rules),
            Class::ServiceEntry => self.istio(&at, value, api_version, |set| &mut set.service_entries),
            Class::AsmLocalRateLimiter => self.istio(&at, value, api_version, |set| &mut set.asm_local_rate_limiters),
            Class::AsmGlobalRateLimiter => self.istio(&at, value, api_version, |set| &mut set.asm_global_rate_limiters),
            Class::AuthorizationPolicy => self.istio(&at, value, api_version, |set| &mut set.authorization_policies),
            Class::EnvoyFilter => self.istio(&at, value, api_version, |set| &mut set.envoy_filters),
            Class::RequestAuthentication => self.istio(&at, value, api_version, |set| &mut set.request_authentications),
            Class::Secret => match typed::<SecretEnvelope>(value) {
                Ok(s) => {
                    let spec = Secret {
                        secret_type: s.secret_type,
                        data: s.data,
                        string_data: s.string_data,
                        immutable: s.immutable,
                    };
                    self.add(&at, s.metadata, spec, api_version, |set| &mut set.secrets);
                    None
                }
                Err((field, message)) => Some(at.error(&field, Some(field.clone()), message)),
            },
            Class::List if origin.item.is_some() => {
                Some(at.error("kind", None, "a List inside a List is not supported"))
            }
            Class::List => match map.get("items") {
                None | Some(Value::Null) => None,
                Some(Value::Sequence(items)) => {
                    for (i, item) in items.clone().into_iter().enumerate() {
                        let line = origin.locate(&format!("items[{i}]"));
                        self.object(Origin { item: Some(i), line, ..origin.clone() }, item);
                    }
                    None
                }
                Some(_) => Some(at.error("items", Some("items".into()), "expected a list of objects")),
            },
            Class::NotEnforced => {
                let resource = resource.clone();
                self.set.not_enforced.push(Unenforced { kind: kind.clone(), resource, origin: origin.clone() });
                None
            }
            Class::Skip => {
                self.skipped += 1;
                tracing::debug!(
                    file = %origin.file.display(),
                    line = origin.line,
                    "skipping {kind} ({api_version}): not a kind Strait reads"
                );
                None
            }
            Class::Invalid { at: key, message } => Some(at.error(key, None, message)),
        };
        self.diagnostics.extend(error);
    }

    /// Deserializes an Istio object and adds it to its list in the set; or the error.
    fn istio<T: Kind + DeserializeOwned + Default>(
        &mut self,
        at: &Located<'_>,
        value: Value,
        api_version: String,
        list: fn(&mut ConfigSet) -> &mut Vec<Resource<T>>,
    ) -> Option<Diagnostic> {
        match typed::<Envelope<T>>(value) {
            Ok(envelope) => {
                self.add(at, envelope.metadata, envelope.spec, api_version, list);
                None
            }
            Err((field, message)) => Some(at.error(&field, Some(field.clone()), message)),
        }
    }

    /// Checks name and uniqueness, defaults the namespace, and appends the resource.
    fn add<T: Kind>(
        &mut self,
        at: &Located<'_>,
        mut meta: ObjectMeta,
        spec: T,
        api_version: String,
        list: fn(&mut ConfigSet) -> &mut Vec<Resource<T>>,
    ) {
        meta.namespace.get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
        let resource = Resource { meta, spec, origin: at.origin.clone(), api_version };
        if resource.name().is_empty() {
            let mut d = resource.diagnostic(Severity::Error, "metadata.name", "a name is required");
            d.resource = None;
            return self.diagnostics.push(d);
        }
        let key = (T::KIND, resource.key());
        if let Some(first) = self.seen.get(&key) {
            let message = format!(
                "{} {} is defined twice: first at {}:{} (document {})",
                T::KIND,
                key.1,
                first.file.display(),
                first.locate("metadata.name"),
                first.document
            );
            let d = resource.diagnostic(Severity::Error, "metadata.name", message);
            return self.diagnostics.push(d);
        }
        self.seen.insert(key, resource.origin.clone());
        list(&mut self.set).push(resource);
    }
}

/// What a diagnostic about one object says it is about.
struct Located<'a> {
    origin: &'a Origin,
    kind: Option<&'a str>,
    resource: Option<&'a str>,
}

impl Located<'_> {
    /// An error on the line of `path`, printing `field` (often `path` itself, or nothing
    /// where the message already names the key).
    fn error(&self, path: &str, field: Option<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: Some(self.origin.file.clone()),
            document: Some(self.origin.document),
            line: Some(self.origin.locate(path)),
            kind: self.kind.map(str::to_owned),
            resource: self.resource.map(str::to_owned),
            field: field.filter(|f| !f.is_empty()),
            ..Diagnostic::error(message)
        }
    }
}

/// Drops `key: null` entries everywhere: Kubernetes (proto3 JSON) reads an explicit null as
/// "unset", while serde would refuse a null where it expects a list or an object.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Sequence(items) => items.iter_mut().for_each(strip_nulls),
        Value::Tagged(tagged) => strip_nulls(&mut tagged.value),
        _ => {}
    }
}

/// `map[key]` as a string, or why not.
fn string_field<'a>(map: &'a Mapping, key: &str) -> Result<&'a str, String> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) => Err(format!("missing {key}")),
        Some(Value::String(_)) => Err(format!("{key} is empty")),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// A document serde_yaml could not parse: a duplicate key (located by our own walk, since
/// serde_yaml points at the mapping rather than the key), a tab in indentation, or another
/// syntax error with serde_yaml's own message.
fn parse_error(file: &Arc<Path>, doc: &RawDocument, e: &serde_yaml::Error) -> Diagnostic {
    let base = Diagnostic { file: Some(file.clone()), document: Some(doc.index), ..Diagnostic::error(String::new()) };
    let last = doc.text.lines().count();
    // A mark past the end of the input (libyaml's, or our walk's for an empty key at the end)
    // stands for the last line, which the file has.
    let to_file_line = |line: usize| doc.line + line.min(last.max(1)) - 1;
    let full = e.to_string();
    // Our walk compares keys as text, serde_yaml as values (`1` ≠ `"1"`): only trust it when
    // serde_yaml too saw a duplicate.
    let duplicate = full
        .contains("duplicate entry")
        .then(|| Node::parse(&doc.text).and_then(|root| root.find_duplicate_key()))
        .flatten();
    if let Some((path, key, first, second)) = duplicate {
        return Diagnostic {
            line: Some(to_file_line(second)),
            field: Some(join_path(&path, &render_key(&key))),
            message: format!("duplicate key {key:?} (first at line {})", to_file_line(first)),
            ..base
        };
    }
    let Some(location) = e.location() else {
        return Diagnostic { line: Some(doc.line), message: e.to_string(), ..base };
    };
    let (mut line, mut column) = (location.line(), location.column());
    // At the end of the input libyaml points at the line after the last (the document text
    // ends in a newline): point at the end of the last line.
    if line > last && last > 0 {
        line = last;
        column = doc.text.lines().last().map_or(0, |l| l.chars().count()) + 1;
    }
    // libyaml appends " at line L column C" (relative to the document) and sometimes
    // ", while parsing X at line …"; our own line:column replaces both.
    let mut message = full.split(" at line ").next().unwrap_or(&full).to_owned();
    let source_line = doc.text.lines().nth(line - 1).unwrap_or_default();
    let indent = &source_line[..source_line.len() - source_line.trim_start_matches([' ', '\t']).len()];
    if let Some(tab) = indent.find('\t') {
        message = "tab character in indentation (YAML indents with spaces only)".to_owned();
        column = tab + 1;
    }
    Diagnostic { line: Some(to_file_line(line)), column: Some(column), message, ..base }
}

#[cfg(test)]
mod tests;
