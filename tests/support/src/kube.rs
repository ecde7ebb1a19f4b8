//! A Kubernetes API server for the tests, on 127.0.0.1. A real kube-apiserver (and the etcd
//! behind it) cannot run on these machines, so this one speaks the API's list and watch
//! protocol over HTTP/1.1 with real object JSON, kept to the protocol, not to what Strait
//! expects of it:
//! - one revision counter for every write (etcd's), each object's `metadata.resourceVersion`
//!   the revision that last wrote it, `uid` and `creationTimestamp` set on create;
//! - lists (`GET /api/v1/...`, `/apis/GROUP/VERSION/...`, cluster-wide or
//!   `namespaces/NS/...`) answer `KINDList` with the current revision; built-in kinds' items
//!   carry no `apiVersion`/`kind`, custom resources' do, as the real server answers; a custom
//!   resource is served at each of its versions (Istio's CRDs convert with `strategy: None`);
//! - `?watch=true&resourceVersion=R` streams, chunked, one JSON event a line: `ADDED`,
//!   `MODIFIED`, `DELETED` for every write after R, `BOOKMARK`s with the current revision when
//!   `allowWatchBookmarks=true` and the stream is idle, and ends after `timeoutSeconds`; an R
//!   older than the compacted revision gets an `ERROR` event with a `410 Expired` Status, a
//!   list at such an R a 410 answer;
//! - `Accept: ...;as=PartialObjectMetadata(List)` answers metadata only, as `metadata_watcher`s
//!   ask;
//! - a resource nobody registered is a 404 Status (a CRD not installed);
//! - [`KubeApi::restart`] cuts every connection, stays away while the test writes, compacts
//!   the history (as etcd compaction does) and listens again on the same port.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a watch stays idle before it is sent a bookmark (the real server's interval is
/// unspecified, about a minute; shorter here so that every test meets bookmarks).
const BOOKMARK_IDLE: Duration = Duration::from_millis(500);

/// A namespaced kind the server serves: `group` ("" for core), the versions it is served at,
/// its plural.
#[derive(Clone)]
struct Kind {
    group: String,
    versions: Vec<String>,
    kind: String,
    plural: String,
    /// Built-in kinds' list items carry no apiVersion/kind.
    builtin: bool,
}

struct Event {
    revision: u64,
    plural: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    revision: u64,
    /// Watches from a revision below this one are answered 410 Gone.
    compacted: u64,
    kinds: Vec<Kind>,
    /// (group/plural, namespace, name) → the object as last written.
    objects: BTreeMap<(String, String, String), Value>,
    events: Vec<Event>,
    /// Bumped by every restart: streams of an older epoch end.
    epoch: u64,
    /// Open connections, cut at a restart.
    connections: Vec<TcpStream>,
    /// Requests answered, as `GET path?query`.
    requests: Vec<String>,
    /// Watches answered with a 410 Expired event.
    gone: usize,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    stopped: AtomicBool,
}

/// The API server; stops when dropped.
pub struct KubeApi {
    inner: Arc<Inner>,
    addr: SocketAddr,
}

impl KubeApi {
    /// Serves the built-in kinds Strait reads (Secret, Service, Pod, EndpointSlice) and
    /// networking.istio.io's CRDs at v1alpha3, v1beta1 and v1.
    pub fn start() -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let builtin = |group: &str, kind: &str, plural: &str| Kind {
            group: group.into(),
            versions: vec!["v1".into()],
            kind: kind.into(),
            plural: plural.into(),
            builtin: true,
        };
        let mut kinds = vec![
            builtin("", "Secret", "secrets"),
            builtin("", "Service", "services"),
            builtin("", "Pod", "pods"),
            builtin("discovery.k8s.io", "EndpointSlice", "endpointslices"),
        ];
        for (kind, plural) in [
            ("Gateway", "gateways"),
            ("VirtualService", "virtualservices"),
            ("DestinationRule", "destinationrules"),
            ("ServiceEntry", "serviceentries"),
        ] {
            kinds.push(Kind {
                group: "networking.istio.io".into(),
                versions: vec!["v1alpha3".into(), "v1beta1".into(), "v1".into()],
                kind: kind.into(),
                plural: plural.into(),
                builtin: false,
            });
        }
        let state = State { revision: 1, kinds, ..State::default() };
        let inner =
            Arc::new(Inner { state: Mutex::new(state), changed: Condvar::new(), stopped: AtomicBool::new(false) });
        serve(inner.clone(), listener, 0);
        KubeApi { inner, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig naming this server into `dir`; its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: test\n  \
             user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\n\
             current-context: test\n",
            self.url()
        );
        std::fs::write(&path, config).unwrap();
        path
    }

    /// Creates or replaces an object (as `kubectl apply` leaves it), from YAML or JSON text.
    pub fn apply(&self, text: &str) {
        let mut object: Value = serde_yaml::from_str(text).unwrap();
        let mut state = self.inner.state.lock().unwrap();
        let kind = state.kind_of(&object);
        let meta = object["metadata"].as_object_mut().expect("metadata");
        let name = meta["name"].as_str().expect("metadata.name").to_string();
        let namespace = meta.entry("namespace").or_insert_with(|| json!("default")).as_str().unwrap().to_string();
        state.revision += 1;
        let revision = state.revision;
        let key = (format!("{}/{}", kind.group, kind.plural), namespace.clone(), name.clone());
        let (event, uid, created, generation) = match state.objects.get(&key) {
            Some(old) => (
                "MODIFIED",
                old["metadata"]["uid"].clone(),
                old["metadata"]["creationTimestamp"].clone(),
                old["metadata"]["generation"].as_u64().unwrap_or(1) + 1,
            ),
            None => ("ADDED", json!(format!("uid-{revision}")), json!("2026-01-01T00:00:00Z"), 1),
        };
        let meta = object["metadata"].as_object_mut().unwrap();
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
        meta.insert("uid".into(), uid);
        meta.insert("creationTimestamp".into(), created);
        meta.insert("generation".into(), json!(generation));
        state.objects.insert(key, object.clone());
        state.events.push(Event { revision, plural: kind.plural, namespace, kind: event, object });
        self.inner.changed.notify_all();
    }

    /// Deletes an object; `api_version` and `kind` as the object has them.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        let mut state = self.inner.state.lock().unwrap();
        let kind = state.kind_of(&json!({"apiVersion": api_version, "kind": kind}));
        let key = (format!("{}/{}", kind.group, kind.plural), namespace.to_string(), name.to_string());
        let mut object = state.objects.remove(&key).unwrap_or_else(|| panic!("no {key:?} to delete"));
        state.revision += 1;
        object["metadata"]["resourceVersion"] = json!(state.revision.to_string());
        let revision = state.revision;
        state.events.push(Event {
            revision,
            plural: kind.plural,
            namespace: namespace.into(),
            kind: "DELETED",
            object,
        });
        self.inner.changed.notify_all();
    }

    /// Goes away (every connection cut, the port closed), runs `while_down`, compacts the
    /// history up to the current revision and listens again on the same port: a client that
    /// resumes a watch from before a write made while down is answered 410 Gone.
    pub fn restart(&self, while_down: impl FnOnce(&KubeApi)) {
        let epoch = {
            let mut state = self.inner.state.lock().unwrap();
            state.epoch += 1;
            for c in state.connections.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
            self.inner.changed.notify_all();
            state.epoch
        };
        // The accept loop of the old epoch closes the port within its poll interval.
        std::thread::sleep(Duration::from_millis(100));
        while_down(self);
        std::thread::sleep(Duration::from_millis(300));
        {
            let mut state = self.inner.state.lock().unwrap();
            state.compacted = state.revision;
        }
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        serve(self.inner.clone(), listener, epoch);
    }

    /// Watches answered `410 Expired` so far.
    pub fn gone(&self) -> usize {
        self.inner.state.lock().unwrap().gone
    }

    /// Requests answered so far, as `GET path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.inner.state.lock().unwrap().requests.clone()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let mut state = self.inner.state.lock().unwrap();
        state.epoch += 1;
        for c in state.connections.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.inner.changed.notify_all();
    }
}

impl State {
    fn kind_of(&self, object: &Value) -> Kind {
        let api_version = object["apiVersion"].as_str().expect("apiVersion");
        let kind = object["kind"].as_str().expect("kind");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.kinds
            .iter()
            .find(|k| k.group == group && k.kind == kind && k.versions.iter().any(|v| v == version))
            .unwrap_or_else(|| panic!("the test server serves no {kind} at {api_version}"))
            .clone()
    }
}

/// Accepts on `listener` until the epoch moves on or the server stops.
fn serve(inner: Arc<Inner>, listener: TcpListener, epoch: u64) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || loop {
        if inner.stopped.load(Ordering::SeqCst) || inner.state.lock().unwrap().epoch != epoch {
            return;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                inner.state.lock().unwrap().connections.push(stream.try_clone().unwrap());
                let inner = inner.clone();
                std::thread::spawn(move || connection(&inner, stream, epoch));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    });
}

/// One connection: requests one after another (keep-alive) until it closes.
fn connection(inner: &Inner, stream: TcpStream, epoch: u64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut accept = String::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("accept") {
                    accept = value.trim().to_string();
                }
            }
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        inner.state.lock().unwrap().requests.push(format!("GET {target}"));
        let keep = answer(inner, &mut out, &target, &accept, epoch);
        if !keep {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// What a request path names: the kind, the version asked for, the namespace if any.
fn route(state: &State, path: &str) -> Option<(Kind, String, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural) = match rest {
        [plural] => (None, *plural),
        ["namespaces", ns, plural] => (Some(ns.to_string()), *plural),
        _ => return None,
    };
    let kind = state
        .kinds
        .iter()
        .find(|k| k.group == group && k.plural == plural && k.versions.iter().any(|v| v == version))?;
    Some((kind.clone(), version.to_string(), namespace))
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

fn respond(out: &mut TcpStream, code: u16, body: &Value) -> bool {
    let body = body.to_string();
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        410 => "Gone",
        _ => "Bad Request",
    };
    let head =
        format!("HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    out.write_all(head.as_bytes()).and_then(|_| out.write_all(body.as_bytes())).is_ok()
}

/// The object as served at `version`, metadata only when the client asked so.
fn present(kind: &Kind, version: &str, object: &Value, metadata_only: bool, in_list: bool) -> Value {
    if metadata_only {
        return json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]});
    }
    let mut object = object.clone();
    let map = object.as_object_mut().unwrap();
    if in_list && kind.builtin {
        map.remove("apiVersion");
        map.remove("kind");
    } else {
        map.insert("apiVersion".into(), json!(api_version(kind, version)));
    }
    object
}

fn api_version(kind: &Kind, version: &str) -> String {
    if kind.group.is_empty() {
        version.to_string()
    } else {
        format!("{}/{version}", kind.group)
    }
}

/// Answers one request; false when the connection must close.
fn answer(inner: &Inner, out: &mut TcpStream, target: &str, accept: &str, epoch: u64) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%2C", ",")))
        .collect();
    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let state = inner.state.lock().unwrap();
    let Some((kind, version, namespace)) = route(&state, path) else {
        drop(state);
        return respond(out, 404, &status(404, "NotFound", "the server could not find the requested resource"));
    };
    let asked: Option<u64> = query.get("resourceVersion").and_then(|v| v.parse().ok()).filter(|v| *v > 0);
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if !watch {
        if asked.is_some_and(|rv| rv < state.compacted) {
            drop(state);
            return respond(out, 410, &status(410, "Expired", "too old resource version"));
        }
        let group_plural = format!("{}/{}", kind.group, kind.plural);
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|((gp, ns, _), _)| *gp == group_plural && namespace.as_ref().is_none_or(|n| n == ns))
            .map(|(_, o)| present(&kind, &version, o, metadata_only, true))
            .collect();
        let (list_version, list_kind) = match metadata_only {
            true => ("meta.k8s.io/v1".to_string(), "PartialObjectMetadataList".to_string()),
            false => (api_version(&kind, &version), format!("{}List", kind.kind)),
        };
        let body = json!({"apiVersion": list_version, "kind": list_kind, "metadata": {"resourceVersion": state.revision.to_string()}, "items": items});
        drop(state);
        return respond(out, 200, &body);
    }
    drop(state);
    watch_stream(inner, out, &kind, &version, namespace.as_deref(), asked, &query, metadata_only, epoch);
    false
}

/// A watch: chunked events from `from` on, until the timeout, a restart or a failed write.
#[allow(clippy::too_many_arguments)]
fn watch_stream(
    inner: &Inner,
    out: &mut TcpStream,
    kind: &Kind,
    version: &str,
    namespace: Option<&str>,
    from: Option<u64>,
    query: &BTreeMap<String, String>,
    metadata_only: bool,
    epoch: u64,
) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let send = |out: &mut TcpStream, event: &Value| {
        let line = format!("{event}\n");
        out.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes()).is_ok()
    };
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = Duration::from_secs(query.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(1800));
    let start = Instant::now();
    let mut state = inner.state.lock().unwrap();
    let mut seen = from.unwrap_or(state.revision);
    if seen < state.compacted {
        state.gone += 1;
        let message = format!("too old resource version: {seen} ({})", state.compacted);
        drop(state);
        send(out, &json!({"type": "ERROR", "object": status(410, "Expired", &message)}));
        let _ = out.write_all(b"0\r\n\r\n");
        return;
    }
    let mut last_sent = Instant::now();
    if from.is_none() {
        // No resourceVersion: every object as ADDED first, then the changes.
        let group_plural = format!("{}/{}", kind.group, kind.plural);
        let current: Vec<Value> = state
            .objects
            .iter()
            .filter(|((gp, ns, _), _)| *gp == group_plural && namespace.is_none_or(|n| n == ns))
            .map(|(_, o)| json!({"type": "ADDED", "object": present(kind, version, o, metadata_only, false)}))
            .collect();
        drop(state);
        for event in &current {
            if !send(out, event) {
                return;
            }
        }
        state = inner.state.lock().unwrap();
    }
    loop {
        if state.epoch != epoch || inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        if start.elapsed() >= timeout {
            drop(state);
            let _ = out.write_all(b"0\r\n\r\n");
            return;
        }
        let due: Vec<Value> = state
            .events
            .iter()
            .filter(|e| e.revision > seen && e.plural == kind.plural && namespace.is_none_or(|n| n == e.namespace))
            .map(|e| json!({"type": e.kind, "object": present(kind, version, &e.object, metadata_only, false)}))
            .collect();
        seen = state.revision;
        let bookmark = (due.is_empty() && bookmarks && last_sent.elapsed() >= BOOKMARK_IDLE).then(|| {
            let (v, k) = match metadata_only {
                true => ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata".to_string()),
                false => (api_version(kind, version), kind.kind.clone()),
            };
            json!({"type": "BOOKMARK", "object": {"apiVersion": v, "kind": k, "metadata": {"resourceVersion": seen.to_string()}}})
        });
        if !due.is_empty() || bookmark.is_some() {
            drop(state);
            for event in due.iter().chain(&bookmark) {
                if !send(out, event) {
                    return;
                }
            }
            last_sent = Instant::now();
            state = inner.state.lock().unwrap();
            continue;
        }
        state = inner.changed.wait_timeout(state, Duration::from_millis(100)).unwrap().0;
    }
}

// ---------------------------------------------------------------------------------------------
// Objects as a cluster holds them (YAML for [`KubeApi::apply`]), all in namespace `default`.

/// A ClusterIP Service `name` with one TCP port `port` named `port_name`, to `target_port`.
pub fn service(name: &str, port_name: &str, port: u16, target_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: ClusterIP\n  \
         clusterIP: 10.96.0.10\n  selector: {{app: {name}}}\n  ports:\n  - {{name: {port_name}, port: {port}, \
         targetPort: {target_port}, protocol: TCP}}\n"
    )
}

/// An endpoint of a slice: its address, the pod behind it, whether it is ready.
pub struct SliceEndpoint<'a> {
    pub address: &'a str,
    pub pod: Option<&'a str>,
    pub ready: bool,
}

/// An EndpointSlice `name` of Service `service`, serving its port `port_name` on `port`.
pub fn endpoint_slice(name: &str, service: &str, port_name: &str, port: u16, endpoints: &[SliceEndpoint]) -> String {
    let endpoints: String = endpoints
        .iter()
        .map(|e| {
            let target = e
                .pod
                .map(|p| format!("\n  targetRef: {{kind: Pod, name: {p}, namespace: default}}"))
                .unwrap_or_default();
            format!("- addresses: [\"{}\"]\n  conditions: {{ready: {}}}{target}\n", e.address, e.ready)
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: default\n  \
         labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports:\n- {{name: {port_name}, port: {port}, \
         protocol: TCP}}\nendpoints:\n{endpoints}"
    )
}

/// A Pod `name` with `labels` (`k: v` pairs, a flow mapping's inside).
pub fn pod(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{{labels}}}}}\nspec:\n  \
         containers: [{{name: app, image: app}}]\n"
    )
}

/// A `kubernetes.io/tls` Secret `name` holding `leaf`.
pub fn tls_secret(name: &str, leaf: &crate::tls::Leaf) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\ndata:\n  \
         tls.crt: {}\n  tls.key: {}\n",
        b64(&leaf.cert_pem),
        b64(&leaf.key_pem)
    )
}
