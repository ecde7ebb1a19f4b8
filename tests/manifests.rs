//! The deployment artefacts: every document under `deploy/kubernetes/` parses as the Kubernetes
//! type its `apiVersion` and `kind` claim (k8s-openapi's, the types kube-rs and `kubectl` agree
//! on) and says nothing that type lacks; the objects fit together (selectors, probes on the
//! admin port, a grace period longer than preStop and drain); and the image recipe builds with
//! README's command. Docker and a cluster are not available where the tests run: the image is
//! not built and nothing is applied here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The objects read, by kind.
#[derive(Default)]
struct Objects {
    deployments: Vec<Deployment>,
    services: Vec<(PathBuf, Service)>,
    hpas: Vec<HorizontalPodAutoscaler>,
    pdbs: Vec<PodDisruptionBudget>,
    config_maps: Vec<ConfigMap>,
    service_accounts: Vec<ServiceAccount>,
    others: usize,
}

/// Parses `value` as `T`, and refuses a field `T` does not have: k8s-openapi skips unknown
/// fields, so the object is written back and must come out as it went in.
fn typed<T: DeserializeOwned + Serialize>(file: &Path, doc: usize, value: serde_yaml::Value) -> T {
    let what = format!("{} document {doc}", file.display());
    let object: T = serde_yaml::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let written = serde_json::to_value(&object).unwrap();
    let read = serde_json::to_value(&value).unwrap();
    assert_eq!(written, read, "{what}: a field its type does not have, or a value it reads otherwise");
    object
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(path);
        }
    }
}

fn read_all() -> Objects {
    let mut files = Vec::new();
    yaml_files(&Path::new(ROOT).join("deploy/kubernetes"), &mut files);
    files.sort();
    assert!(!files.is_empty());
    let mut objects = Objects::default();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (doc, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = serde_yaml::Value::deserialize(de).unwrap();
            if value.is_null() {
                continue;
            }
            let field = |k: &str| value.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let (api_version, kind) = (field("apiVersion"), field("kind"));
            match (api_version.as_str(), kind.as_str()) {
                ("apps/v1", "Deployment") => objects.deployments.push(typed(file, doc, value)),
                ("v1", "Service") => objects.services.push((file.clone(), typed(file, doc, value))),
                ("autoscaling/v2", "HorizontalPodAutoscaler") => objects.hpas.push(typed(file, doc, value)),
                ("policy/v1", "PodDisruptionBudget") => objects.pdbs.push(typed(file, doc, value)),
                ("v1", "ConfigMap") => objects.config_maps.push(typed(file, doc, value)),
                ("v1", "ServiceAccount") => objects.service_accounts.push(typed(file, doc, value)),
                ("v1", "Namespace") => count::<Namespace>(&mut objects, file, doc, value),
                ("v1", "Secret") => count::<Secret>(&mut objects, file, doc, value),
                ("networking.k8s.io/v1", "NetworkPolicy") => count::<NetworkPolicy>(&mut objects, file, doc, value),
                ("rbac.authorization.k8s.io/v1", "Role") => count::<Role>(&mut objects, file, doc, value),
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => count::<RoleBinding>(&mut objects, file, doc, value),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => count::<ClusterRole>(&mut objects, file, doc, value),
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    count::<ClusterRoleBinding>(&mut objects, file, doc, value)
                }
                other => panic!("{} document {doc}: {other:?} is not a kind this test knows", file.display()),
            }
        }
    }
    objects
}

fn count<T: DeserializeOwned + Serialize>(objects: &mut Objects, file: &Path, doc: usize, value: serde_yaml::Value) {
    typed::<T>(file, doc, value);
    objects.others += 1;
}

/// `--flag=value` among `args`.
fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
}

/// A duration flag's seconds (`20s`).
fn seconds(value: &str) -> i64 {
    value.strip_suffix('s').and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{value}: expected whole seconds"))
}

#[test]
fn every_manifest_parses_as_its_kubernetes_type_and_they_fit_together() {
    let objects = read_all();
    let [deployment] = objects.deployments.as_slice() else { panic!("one Deployment") };
    let spec = &deployment.spec;
    let selector = spec.selector.match_labels.clone().unwrap();
    let template = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    assert!(selector.iter().all(|(k, v)| template.get(k) == Some(v)), "the selector picks the pods");
    let pod = spec.template.spec.as_ref().unwrap();
    let [container] = pod.containers.as_slice() else { panic!("one container") };
    let args = container.args.clone().unwrap();

    // Readiness on /ready, at the admin port the gateway listens on beyond loopback.
    let probe = container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!(probe.path.as_deref(), Some("/ready"));
    let admin = arg(&args, "--admin").expect("--admin");
    let admin_port: i32 = admin.rsplit(':').next().unwrap().parse().unwrap();
    assert!(!admin.starts_with("127."), "the kubelet probes the pod's address");
    let named = container.ports.as_ref().unwrap().iter().find(|p| p.name.as_deref() == Some("admin")).unwrap();
    assert_eq!(named.container_port, admin_port);

    // The grace period outlasts the preStop sleep and the drain together.
    let sleep = container.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap().sleep.as_ref().unwrap().seconds;
    let drain = seconds(arg(&args, "--drain-timeout").expect("--drain-timeout"));
    let grace = pod.termination_grace_period_seconds.unwrap();
    assert!(grace > sleep + drain, "terminationGracePeriodSeconds {grace} <= preStop {sleep} + drain {drain}");

    // Spread over nodes, non-root, config reloaded from its ConfigMap by --watch.
    let anti = pod.affinity.as_ref().unwrap().pod_anti_affinity.as_ref().unwrap();
    let term = &anti.preferred_during_scheduling_ignored_during_execution.as_ref().unwrap()[0].pod_affinity_term;
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
    assert!(args.iter().any(|a| a == "--watch"));
    let mounted: BTreeMap<String, String> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| Some((v.name.clone(), v.config_map.as_ref()?.name.clone())))
        .collect();
    for cm in &objects.config_maps {
        let name = cm.metadata.name.clone().unwrap();
        assert!(mounted.values().any(|m| *m == name), "ConfigMap {name} is mounted");
    }
    let sa = pod.service_account_name.as_deref().unwrap();
    assert!(objects.service_accounts.iter().any(|s| s.metadata.name.as_deref() == Some(sa)));

    // Every Service, the PROXY-protocol variant included, is a LoadBalancer keeping the client's
    // address and selecting the pods; the budget and the autoscaler aim at the same.
    assert_eq!(objects.services.len(), 2, "the Service and its PROXY-protocol variant");
    for (file, service) in &objects.services {
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"), "{}", file.display());
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"), "{}", file.display());
        assert_eq!(spec.selector.as_ref(), Some(&selector), "{}", file.display());
    }
    let [pdb] = objects.pdbs.as_slice() else { panic!("one PodDisruptionBudget") };
    assert_eq!(pdb.spec.as_ref().unwrap().selector.as_ref().unwrap().match_labels.as_ref(), Some(&selector));
    let [hpa] = objects.hpas.as_slice() else { panic!("one HorizontalPodAutoscaler") };
    let target = &hpa.spec.scale_target_ref;
    assert_eq!((target.kind.as_str(), Some(target.name.as_str())), ("Deployment", deployment.metadata.name.as_deref()));
    assert!(objects.others >= 1, "the Namespace");
}

#[test]
fn the_image_recipe_builds_with_the_command_readme_gives() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let build = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("RUN "))
        .and_then(|run| run.split("&&").map(str::trim).find(|c| c.starts_with("cargo build")))
        .expect("a RUN line building with cargo");
    assert!(readme.contains(&format!("`{build}`")), "README gives `{build}`");
    assert!(dockerfile.lines().any(|l| l.starts_with("USER ") && !l.contains("root") && !l.contains(" 0")));
}
