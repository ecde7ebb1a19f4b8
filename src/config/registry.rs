//! Which ServiceEntry serves a host and which DestinationRules apply to it, from a consumer
//! namespace, as istiod decides: shared by validation (dangling references) and the snapshot
//! compiler (clusters), so that what validation calls dangling is what compiles to a 503.

use std::collections::{BTreeMap, HashMap};

use super::destination_rule::Subset;
use super::index::{expand_host, exported_to, labels_subset, HostIndex, ROOT_NAMESPACE};
use super::{ConfigSet, DestinationRule, Resource, ServiceEntry};

pub(crate) struct Registry<'a> {
    set: &'a ConfigSet,
    /// Lower-case ServiceEntry host → ServiceEntries declaring it, in config order.
    services: HashMap<String, Vec<usize>>,
    /// Namespace → DestinationRule host patterns (short names expanded) → rules without a
    /// `workloadSelector`, config order.
    rules: HashMap<&'a str, HostIndex<usize>>,
    /// The rules whose `workloadSelector` selects this instance, in its own namespace: they win
    /// over the rest for their hosts (istiod's `SidecarScope.DestinationRule`).
    selected: HostIndex<usize>,
}

/// The rules that apply to a host from one namespace, consolidated as istiod merges several
/// rules for one host: the first traffic policy, subsets by first name.
pub(crate) struct Rules<'a> {
    rules: Vec<&'a Resource<DestinationRule>>,
}

impl<'a> Rules<'a> {
    pub(crate) fn policy(&self) -> Option<&'a Resource<DestinationRule>> {
        self.rules.iter().copied().find(|r| r.spec.traffic_policy.is_some())
    }

    pub(crate) fn subset(&self, name: &str) -> Option<(&'a Resource<DestinationRule>, usize, &'a Subset)> {
        self.rules
            .iter()
            .find_map(|r| r.spec.subsets.iter().enumerate().find(|(_, s)| s.name == name).map(|(i, s)| (*r, i, s)))
    }

    pub(crate) fn subset_names(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = Vec::new();
        for s in self.rules.iter().flat_map(|r| &r.spec.subsets) {
            if !names.contains(&s.name.as_str()) {
                names.push(&s.name);
            }
        }
        names
    }
}

impl<'a> Registry<'a> {
    /// `labels` and `namespace` are the instance's (`--label`, `--namespace`). A DestinationRule
    /// with a `workloadSelector` applies only where istiod applies it: in the gateway's own
    /// namespace (istiod never exports such a rule), selecting the gateway's labels; it then
    /// replaces, not merges with, the rules without a selector for its host.
    pub(crate) fn new(set: &'a ConfigSet, labels: &BTreeMap<String, String>, namespace: &str) -> Self {
        let mut services: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, se) in set.service_entries.iter().enumerate() {
            for host in &se.spec.hosts {
                let list = services.entry(host.to_ascii_lowercase()).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        let mut by_ns: HashMap<&str, Vec<(String, usize)>> = HashMap::new();
        let mut selected = Vec::new();
        for (i, dr) in set.destination_rules.iter().enumerate() {
            let host = expand_host(&dr.spec.host, dr.namespace());
            match &dr.spec.workload_selector {
                None => by_ns.entry(dr.namespace()).or_default().push((host, i)),
                Some(s) if dr.namespace() == namespace && labels_subset(&s.match_labels, labels) => {
                    selected.push((host, i));
                }
                Some(_) => {}
            }
        }
        let rules = by_ns.into_iter().map(|(ns, entries)| (ns, HostIndex::new(entries))).collect();
        Self { set, services, rules, selected: HostIndex::new(selected) }
    }

    pub(crate) fn service_entry(&self, index: usize) -> &'a Resource<ServiceEntry> {
        &self.set.service_entries[index]
    }

    /// The ServiceEntry serving the lower-case `host` to a route of a VirtualService in
    /// `vs_ns` consumed from `consumer_ns` (istiod's `buildNameToServiceMapForHTTPRoutes`): the
    /// VirtualService's namespace first, then the consumer's, then any other visible one, each
    /// in config order.
    pub(crate) fn service_for(&self, host: &str, vs_ns: &str, consumer_ns: &str) -> Option<usize> {
        let list = self.services.get(host)?;
        let ses = &self.set.service_entries;
        let visible = |i: &&usize| exported_to(&ses[**i].spec.export_to, ses[**i].namespace(), consumer_ns);
        let in_ns = |ns: &str| list.iter().filter(visible).find(|&&i| ses[i].namespace() == ns).copied();
        in_ns(vs_ns).or_else(|| in_ns(consumer_ns)).or_else(|| list.iter().find(visible).copied())
    }

    /// istiod's DestinationRule lookup for a consumer namespace: the rules whose
    /// `workloadSelector` selects this gateway, else rules in the consumer's own namespace, else
    /// rules of the service's namespace exported to it, else exported rules of the root
    /// namespace; within each the most specific host pattern wins.
    pub(crate) fn rules_for(&self, host: &str, consumer: &str, service_ns: &str) -> Rules<'a> {
        let drs: &'a [Resource<DestinationRule>] = &self.set.destination_rules;
        if let Some((_, list)) = self.selected.covering(host).next() {
            return Rules { rules: list.iter().map(|&i| &drs[i]).collect() };
        }
        let lookup = |ns: &str, exported_only: bool| -> Option<Vec<&'a Resource<DestinationRule>>> {
            let index = self.rules.get(ns)?;
            index.covering(host).find_map(|(_, list)| {
                let found: Vec<_> = list
                    .iter()
                    .map(|&i| &drs[i])
                    .filter(|r| !exported_only || exported_to(&r.spec.export_to, r.namespace(), consumer))
                    .collect();
                (!found.is_empty()).then_some(found)
            })
        };
        let rules = lookup(consumer, false)
            .or_else(|| lookup(service_ns, true))
            .or_else(|| lookup(ROOT_NAMESPACE, true))
            .unwrap_or_default();
        Rules { rules }
    }
}
