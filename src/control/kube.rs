//! `--kubernetes`: the config read from the API server (in-cluster service account, or
//! `KUBECONFIG`), as istiod reads it: the Istio kinds in every namespace, the Secrets that
//! `credentialName` names in the gateway's namespace, and Services with their EndpointSlices and
//! pod labels (the service registry, `kube/services.rs`). The watches run on a thread of their
//! own in a current-thread tokio runtime (as `dns.rs` runs hickory); the workers never see it.
//!
//! kube-rs's watcher lists, then watches from the list's resourceVersion with bookmarks, relists
//! on `410 Gone` and backs off (800 ms up to 30 s) while the API server is away; a reflector
//! keeps each kind's objects. A burst of changes is debounced into one reload, asked of the
//! control thread as SIGHUP asks, which builds from [`Kube::objects`] through the same
//! load → validate → compile → publish path as files; there an object that fails is refused
//! alone (`control/load.rs`).

mod services;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::{debug, info, warn};

use crate::config::ApiObject;
use crate::publish::ControlEvent;

/// The Istio kinds watched, `(group, version, kind, plural)`: every kind the loader reads or
/// lists as not enforced, and ASM's. The version is the oldest one a supported Istio serves
/// (the API server converts; Istio's versions share one schema). A kind whose CRD is not
/// installed answers 404 and is watched as empty until it appears.
const ISTIO_KINDS: &[(&str, &str, &str, &str)] = &[
    ("networking.istio.io", "v1beta1", "Gateway", "gateways"),
    ("networking.istio.io", "v1beta1", "VirtualService", "virtualservices"),
    ("networking.istio.io", "v1beta1", "DestinationRule", "destinationrules"),
    ("networking.istio.io", "v1beta1", "ServiceEntry", "serviceentries"),
    ("networking.istio.io", "v1alpha3", "EnvoyFilter", "envoyfilters"),
    ("networking.istio.io", "v1beta1", "Sidecar", "sidecars"),
    ("networking.istio.io", "v1beta1", "WorkloadEntry", "workloadentries"),
    ("networking.istio.io", "v1beta1", "WorkloadGroup", "workloadgroups"),
    ("networking.istio.io", "v1beta1", "ProxyConfig", "proxyconfigs"),
    ("security.istio.io", "v1beta1", "AuthorizationPolicy", "authorizationpolicies"),
    ("security.istio.io", "v1beta1", "PeerAuthentication", "peerauthentications"),
    ("security.istio.io", "v1beta1", "RequestAuthentication", "requestauthentications"),
    ("telemetry.istio.io", "v1alpha1", "Telemetry", "telemetries"),
    ("extensions.istio.io", "v1alpha1", "WasmPlugin", "wasmplugins"),
    ("istio.alibabacloud.com", "v1beta1", "ASMLocalRateLimiter", "asmlocalratelimiters"),
    ("istio.alibabacloud.com", "v1beta1", "ASMGlobalRateLimiter", "asmglobalratelimiters"),
];

/// A change is acted on once the watches have been quiet this long...
const DEBOUNCE: Duration = Duration::from_millis(100);
/// ...or once it has waited this long under a steady stream of changes (istiod's
/// `PILOT_DEBOUNCE_AFTER` and `PILOT_DEBOUNCE_MAX` are 100 ms and 10 s; a gateway alone can act
/// sooner).
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("no Kubernetes client config (neither KUBECONFIG, ~/.kube/config nor in-cluster): {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("Kubernetes watch thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the Kubernetes watch thread ended before the first list")]
    Ended,
}

/// The objects read from the API server, as the control thread builds from them: replaced as a
/// whole by the watch thread after each debounced burst of changes.
pub struct Kube {
    objects: Arc<Mutex<Arc<Vec<ApiObject>>>>,
}

impl Kube {
    /// Connects and starts the watches on a thread of their own; returns once every kind has
    /// been listed (istiod serves once its informers have synced), so that the first generation
    /// is built from the whole config. Each later change asks `events` for a reload.
    pub fn start(namespace: &str, events: Sender<ControlEvent>) -> Result<Kube, KubeError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let objects = Arc::new(Mutex::new(Arc::new(Vec::new())));
        let (synced_tx, synced) = std::sync::mpsc::channel();
        let shared = objects.clone();
        let namespace = namespace.to_owned();
        std::thread::Builder::new().name("strait-kube".into()).spawn(move || {
            runtime.block_on(async move {
                let sources = match Sources::connect(&namespace).await {
                    Ok(sources) => sources,
                    Err(e) => return drop(synced_tx.send(Err(e))),
                };
                sources.run(shared, synced_tx, events).await;
            })
        })?;
        synced.recv().map_err(|_| KubeError::Ended)??;
        Ok(Kube { objects })
    }

    /// Every object as last published by the watch thread, sorted by name.
    pub fn objects(&self) -> Arc<Vec<ApiObject>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What one watch reports to the thread's coordinator.
enum Report {
    /// Watch `index` has listed once (or found its kind absent).
    Synced(usize),
    Changed,
}

/// The reflectors' stores, one per watch.
struct Sources {
    istio: Vec<(&'static str, String, Store<DynamicObject>)>,
    secrets: Store<DynamicObject>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    pods: Store<PartialObjectMeta<Pod>>,
    reports: UnboundedReceiver<Report>,
    watches: usize,
}

impl Sources {
    /// Builds the client (the rustls provider installed first: ours enables two, and kube's
    /// client config asks for the process default) and spawns every watch.
    async fn connect(namespace: &str) -> Result<Sources, KubeError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Another thread installing one first is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client_config = kube::Config::infer().await?;
        info!("Kubernetes API at {}", client_config.cluster_url);
        let client = kube::Client::try_from(client_config)?;
        let (tx, reports) = unbounded_channel();
        let mut index = 0;
        let mut next = || {
            index += 1;
            index - 1
        };
        let mut istio = Vec::new();
        for &(group, version, kind, plural) in ISTIO_KINDS {
            let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let store =
                follow(next(), kind, &tx, reflector::store::Writer::new(resource.clone()), watcher(api, config()));
            istio.push((kind, resource.api_version, store));
        }
        let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let secrets = follow(next(), "Secret", &tx, reflector::store::Writer::new(resource), watcher(api, config()));
        let services = follow(next(), "Service", &tx, Default::default(), watcher(Api::all(client.clone()), config()));
        let api = Api::all(client.clone());
        let slices = follow(next(), "EndpointSlice", &tx, Default::default(), watcher(api, config()));
        // Only the pods' metadata: their labels are all subsets read.
        let api: Api<PartialObjectMeta<Pod>> = Api::all(client);
        let pods = follow(next(), "Pod", &tx, Default::default(), watcher(api, config()));
        Ok(Sources { istio, secrets, services, slices, pods, reports, watches: index })
    }

    /// Waits for every watch's first list, publishes, reports `synced`, then publishes once per
    /// debounced burst of changes and asks for a reload when the objects differ.
    async fn run(
        mut self,
        shared: Arc<Mutex<Arc<Vec<ApiObject>>>>,
        synced_tx: std::sync::mpsc::Sender<Result<(), KubeError>>,
        events: Sender<ControlEvent>,
    ) {
        let mut pending: BTreeSet<usize> = (0..self.watches).collect();
        while !pending.is_empty() {
            match self.reports.recv().await {
                Some(Report::Synced(i)) => {
                    pending.remove(&i);
                }
                Some(Report::Changed) => {}
                None => return,
            }
        }
        let mut current = Arc::new(self.objects());
        *shared.lock().unwrap_or_else(PoisonError::into_inner) = current.clone();
        info!("Kubernetes: {} objects listed", current.len());
        if synced_tx.send(Ok(())).is_err() {
            return;
        }
        while self.reports.recv().await.is_some() {
            let start = Instant::now();
            loop {
                tokio::time::sleep(DEBOUNCE).await;
                let mut more = false;
                while self.reports.try_recv().is_ok() {
                    more = true;
                }
                if !more || start.elapsed() >= DEBOUNCE_MAX {
                    break;
                }
            }
            let next = self.objects();
            // A pod relabelled outside any Service, a resync: nothing to build.
            if next == *current {
                continue;
            }
            current = Arc::new(next);
            *shared.lock().unwrap_or_else(PoisonError::into_inner) = current.clone();
            debug!("Kubernetes objects changed: reloading");
            if events.send(ControlEvent::Reload(None)).is_err() {
                return;
            }
        }
    }

    /// The Istio objects, the Secrets some `credentialName` names (and their `-cacert`
    /// companions, as istiod's SDS reads them), and every Service as a ServiceEntry; by name.
    fn objects(&self) -> Vec<ApiObject> {
        let mut out = Vec::new();
        for (kind, api_version, store) in &self.istio {
            out.extend(store.state().iter().map(|o| api_object(&**o, api_version, kind)));
        }
        let mut named = BTreeSet::new();
        for object in &out {
            credential_names(&object.object, &mut named);
        }
        for secret in self.secrets.state() {
            let name = secret.metadata.name.as_deref().unwrap_or_default();
            if named.contains(name) || name.strip_suffix("-cacert").is_some_and(|n| named.contains(n)) {
                out.push(api_object(&*secret, "v1", "Secret"));
            }
        }
        let pods: services::PodLabels = self
            .pods
            .state()
            .iter()
            .map(|p| {
                let key =
                    (p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default());
                (key, p.metadata.labels.clone().unwrap_or_default())
            })
            .collect();
        let services = self.services.state();
        let slices = self.slices.state();
        let services: Vec<&Service> = services.iter().map(|s| &**s).collect();
        let slices: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
        out.extend(services::service_entries(&services, &slices, &pods));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The watcher's settings: bookmarks on (the default), everything else kube's.
fn config() -> watcher::Config {
    watcher::Config::default()
}

/// Spawns a watch feeding `writer`'s store, reporting its first list and every change as
/// `index`; returns the store.
fn follow<K, S>(
    index: usize,
    kind: &'static str,
    tx: &UnboundedSender<Report>,
    writer: reflector::store::Writer<K>,
    stream: S,
) -> Store<K>
where
    K: kube::Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let store = writer.as_reader();
    let tx = tx.clone();
    tokio::spawn(async move {
        let stream = stream.default_backoff().reflect(writer);
        let mut stream = std::pin::pin!(stream);
        let mut synced = false;
        while let Some(event) = stream.next().await {
            let report = match event {
                Ok(watcher::Event::InitDone) => {
                    synced = true;
                    Report::Synced(index)
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Report::Changed,
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                // A CRD not installed (404) or a kind the role may not read (403): watched as
                // empty, tried again with backoff, so that installing it later is seen.
                Err(e) if absent(&e) => {
                    debug!(kind, error = %e, "Kubernetes watch: kind not served or not allowed");
                    if synced {
                        continue;
                    }
                    synced = true;
                    Report::Synced(index)
                }
                Err(e) => {
                    warn!(kind, error = %e, "Kubernetes watch failed; retrying with backoff");
                    continue;
                }
            };
            if tx.send(report).is_err() {
                return;
            }
        }
    });
    store
}

fn absent(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(status)) => matches!(status.code, 403 | 404),
        _ => false,
    }
}

/// An object as the loader reads it: `apiVersion` and `kind` set (list items may omit them),
/// the API server's bookkeeping left out (`resourceVersion`, `generation`, `managedFields`,
/// `status`), so that a write that changes none of what Strait reads (istiod writing a
/// status) compares equal and reloads nothing.
fn api_object<K: serde::Serialize + kube::Resource>(object: &K, api_version: &str, kind: &str) -> ApiObject {
    let meta = object.meta();
    let name = format!(
        "k8s:{kind}/{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    );
    let mut object = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut object {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
        map.remove("status");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for key in ["resourceVersion", "generation", "managedFields"] {
                meta.remove(key);
            }
        }
    }
    ApiObject { name, object }
}

/// Every `credentialName` in `value` (Gateway servers, DestinationRule client TLS), as the
/// Secret name it resolves to in the gateway's namespace.
fn credential_names(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("credentialName", Value::String(name)) => {
                        let name = name.strip_prefix("kubernetes://").unwrap_or(name);
                        out.insert(name.rsplit('/').next().unwrap_or(name).to_owned());
                    }
                    _ => credential_names(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| credential_names(v, out)),
        _ => {}
    }
}
