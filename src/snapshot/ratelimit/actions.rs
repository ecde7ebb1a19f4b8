//! Envoy's route `rate_limits` (`config.route.v3.RateLimit`), compiled: each entry's actions
//! write one descriptor per request ([`RateLimitPolicy::descriptors`]), as Envoy's
//! `RateLimitPolicyEntryImpl::populateDescriptors` does. Pure: the request, the client address
//! and the route's cluster in, descriptors out.

use super::descriptor::RateLimitDescriptor;
use crate::snapshot::{MatchBlock, RequestInfo};

/// One action of an entry.
#[derive(Debug, Clone)]
pub enum Action {
    /// `source_cluster`: the gateway's own service cluster.
    SourceCluster,
    /// `destination_cluster`: the cluster the route sends the request to.
    DestinationCluster,
    /// `request_headers`: the header's first value under `key`; an absent header drops the
    /// descriptor unless `skip_if_absent`, which drops only this entry.
    RequestHeaders { header: Box<str>, key: Box<str>, skip_if_absent: bool },
    /// `remote_address`: the client's address as the gateway derives it.
    RemoteAddress,
    /// `generic_key`: a constant entry.
    GenericKey { key: Box<str>, value: Box<str> },
    /// `header_value_match`: `(key, value)` when the headers match as `expect_match` says,
    /// else no descriptor.
    HeaderValueMatch { key: Box<str>, value: Box<str>, expect_match: bool, headers: Box<MatchBlock> },
    /// `query_parameters`: the parameter's value under `key`, as `request_headers`.
    QueryParameters { name: Box<str>, key: Box<str>, skip_if_absent: bool },
}

/// A route's (or its virtual host's) `rate_limits` of stage 0, in order; entries with an
/// action Strait does not produce are left out (`validate` lists them).
#[derive(Debug, Clone, Default)]
pub struct RateLimitPolicy {
    pub entries: Box<[Box<[Action]>]>,
}

/// What the actions read besides the request.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The client's address, as `remote_address` writes it.
    pub remote: &'a str,
    /// The route's cluster (`outbound|PORT|SUBSET|HOST`); `None` drops `destination_cluster`
    /// descriptors.
    pub destination_cluster: Option<&'a str>,
    /// The gateway's service cluster (`WORKLOAD.NAMESPACE`, as istiod names a gateway's node).
    pub source_cluster: &'a str,
}

impl RateLimitPolicy {
    /// The request's descriptors, one per entry whose actions all wrote (or skipped) their
    /// entry; an entry that wrote none gives no descriptor. Allocates: only routes with
    /// `rate_limits` and a filter that reads them call it.
    pub fn descriptors(&self, info: &RequestInfo<'_>, cx: &Context<'_>) -> Vec<RateLimitDescriptor> {
        self.entries.iter().filter_map(|actions| descriptor(actions, info, cx)).collect()
    }
}

fn descriptor(actions: &[Action], info: &RequestInfo<'_>, cx: &Context<'_>) -> Option<RateLimitDescriptor> {
    let mut entries = Vec::with_capacity(actions.len());
    for action in actions {
        let entry = match action {
            Action::SourceCluster => Some(("source_cluster".to_owned(), cx.source_cluster.to_owned())),
            Action::DestinationCluster => Some(("destination_cluster".to_owned(), cx.destination_cluster?.to_owned())),
            Action::RequestHeaders { header, key, skip_if_absent } => match header_value(info, header) {
                Some(v) => Some((key.to_string(), v)),
                None if *skip_if_absent => None,
                None => return None,
            },
            Action::RemoteAddress => Some(("remote_address".to_owned(), cx.remote.to_owned())),
            Action::GenericKey { key, value } => Some((key.to_string(), value.to_string())),
            Action::HeaderValueMatch { key, value, expect_match, headers } => {
                if headers.matches(info) != *expect_match {
                    return None;
                }
                Some((key.to_string(), value.to_string()))
            }
            Action::QueryParameters { name, key, skip_if_absent } => match info.query_param(name) {
                Some(v) => Some((key.to_string(), v.to_owned())),
                None if *skip_if_absent => None,
                None => return None,
            },
        };
        entries.extend(entry);
    }
    (!entries.is_empty()).then_some(RateLimitDescriptor { entries })
}

/// A header's first value; Envoy's pseudo-headers are the request's: `:path` with its query.
fn header_value(info: &RequestInfo<'_>, name: &str) -> Option<String> {
    Some(match name {
        ":path" => match info.query {
            Some(q) => format!("{}?{q}", info.path),
            None => info.path.to_owned(),
        },
        ":authority" => info.host.to_owned(),
        ":method" => info.method.to_owned(),
        ":scheme" => info.scheme.to_owned(),
        _ => String::from_utf8_lossy(info.header(name)?).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{HeaderMatcher, StringMatcher, ValueMatcher};

    fn info<'a>(path: &'a str, query: Option<&'a str>, headers: &'a [httparse::Header<'a>]) -> RequestInfo<'a> {
        RequestInfo { host: "app.test", method: "GET", path, query, scheme: "http", headers }
    }

    const CX: Context<'static> = Context {
        remote: "10.0.0.7",
        destination_cluster: Some("outbound|80||app.local"),
        source_cluster: "istio-ingressgateway.istio-system",
    };

    fn d(entries: &[(&str, &str)]) -> RateLimitDescriptor {
        RateLimitDescriptor { entries: entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    fn headers(key: &str, skip_if_absent: bool) -> Action {
        Action::RequestHeaders { header: "x-user".into(), key: key.into(), skip_if_absent }
    }

    #[test]
    fn each_entry_gives_one_descriptor_of_its_actions_entries_in_order() {
        let policy = RateLimitPolicy {
            entries: [
                [Action::GenericKey { key: "generic_key".into(), value: "gw".into() }, Action::RemoteAddress].into(),
                [Action::RequestHeaders { header: ":path".into(), key: "PATH".into(), skip_if_absent: false }].into(),
                [Action::DestinationCluster, Action::SourceCluster].into(),
            ]
            .into(),
        };
        let got = policy.descriptors(&info("/productpage", Some("a=1"), &[]), &CX);
        assert_eq!(
            got,
            [
                d(&[("generic_key", "gw"), ("remote_address", "10.0.0.7")]),
                d(&[("PATH", "/productpage?a=1")]),
                d(&[
                    ("destination_cluster", "outbound|80||app.local"),
                    ("source_cluster", "istio-ingressgateway.istio-system")
                ]),
            ]
        );
    }

    #[test]
    fn an_absent_header_drops_the_descriptor_unless_skip_if_absent_drops_its_entry() {
        let policy = RateLimitPolicy {
            entries: [
                [headers("user", false), Action::RemoteAddress].into(),
                [headers("user", true), Action::RemoteAddress].into(),
                [headers("user", true)].into(),
            ]
            .into(),
        };
        let none = policy.descriptors(&info("/", None, &[]), &CX);
        assert_eq!(none, [d(&[("remote_address", "10.0.0.7")])], "an entry that wrote nothing gives nothing");
        let h = [httparse::Header { name: "X-User", value: b"alice" }];
        let all = policy.descriptors(&info("/", None, &h), &CX);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], d(&[("user", "alice"), ("remote_address", "10.0.0.7")]));
    }

    #[test]
    fn header_value_match_writes_its_value_when_the_match_is_as_expected() {
        let block = MatchBlock {
            headers: vec![HeaderMatcher {
                name: "x-tier".into(),
                value: ValueMatcher::Value(StringMatcher::Exact("gold".into())),
                invert: false,
            }],
            ..MatchBlock::default()
        };
        let action = |expect_match| Action::HeaderValueMatch {
            key: "header_match".into(),
            value: "gold".into(),
            expect_match,
            headers: Box::new(block.clone()),
        };
        let policy = RateLimitPolicy { entries: [[action(true)].into(), [action(false)].into()].into() };
        let gold = [httparse::Header { name: "x-tier", value: b"gold" }];
        assert_eq!(policy.descriptors(&info("/", None, &gold), &CX), [d(&[("header_match", "gold")])]);
        assert_eq!(policy.descriptors(&info("/", None, &[]), &CX), [d(&[("header_match", "gold")])]);
    }

    #[test]
    fn query_parameters_and_a_missing_cluster() {
        let policy = RateLimitPolicy {
            entries: [
                [Action::QueryParameters { name: "key".into(), key: "api_key".into(), skip_if_absent: false }].into(),
                [Action::DestinationCluster].into(),
            ]
            .into(),
        };
        let cx = Context { destination_cluster: None, ..CX };
        assert_eq!(policy.descriptors(&info("/", Some("x=1&key=k1"), &[]), &cx), [d(&[("api_key", "k1")])]);
        assert!(policy.descriptors(&info("/", Some("x=1"), &[]), &cx).is_empty());
    }
}
