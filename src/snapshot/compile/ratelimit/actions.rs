//! A route's `rate_limits`, as EnvoyFilter `HTTP_ROUTE` and `VIRTUAL_HOST` `MERGE` patches write
//! them, compiled into the actions that write its descriptors.

use crate::config::envoy_filter::{RateLimit, RateLimitAction, RouteHeaderMatcher};
use crate::snapshot::{Action, MatchBlock, RateLimitPolicy};

/// The entries of `rate_limits` for a filter of `stage`, in order, those with an action Strait
/// does not produce left out (`validate` lists them). `None` when no entry is left.
pub(super) fn policy<'a>(rate_limits: impl Iterator<Item = &'a RateLimit>, stage: u32) -> Option<RateLimitPolicy> {
    let entries: Vec<Box<[Action]>> = rate_limits
        .filter(|r| r.stage == stage && r.disable_key.is_empty())
        .filter_map(|r| r.actions.iter().map(action).collect::<Option<Box<[Action]>>>())
        .collect();
    (!entries.is_empty()).then(|| RateLimitPolicy { entries: entries.into() })
}

/// One action, or `None` for a kind Strait does not produce (or a matcher it cannot compile,
/// which the patch's check refused already).
fn action(a: &RateLimitAction) -> Option<Action> {
    Some(match a {
        RateLimitAction { source_cluster: Some(_), .. } => Action::SourceCluster,
        RateLimitAction { destination_cluster: Some(_), .. } => Action::DestinationCluster,
        RateLimitAction { remote_address: Some(_), .. } => Action::RemoteAddress,
        RateLimitAction { request_headers: Some(h), .. } => Action::RequestHeaders {
            header: h.header_name.to_ascii_lowercase().into(),
            key: h.descriptor_key.as_str().into(),
            skip_if_absent: h.skip_if_absent,
        },
        RateLimitAction { generic_key: Some(g), .. } => Action::GenericKey {
            key: g.descriptor_key.as_deref().filter(|k| !k.is_empty()).unwrap_or("generic_key").into(),
            value: g.descriptor_value.as_str().into(),
        },
        RateLimitAction { header_value_match: Some(h), .. } => {
            let mut headers = MatchBlock::default();
            for m in &h.headers {
                header(m, &mut headers).ok()?;
            }
            Action::HeaderValueMatch {
                key: h.descriptor_key.as_deref().filter(|k| !k.is_empty()).unwrap_or("header_match").into(),
                value: h.descriptor_value.as_str().into(),
                expect_match: h.expect_match.unwrap_or(true),
                headers: Box::new(headers),
            }
        }
        RateLimitAction { query_parameters: Some(q), .. } => Action::QueryParameters {
            name: q.query_parameter_name.as_str().into(),
            key: q.descriptor_key.as_str().into(),
            skip_if_absent: q.skip_if_absent,
        },
        _ => return None,
    })
}

/// Envoy's `HeaderMatcher` onto the block: its deprecated direct matchers or `string_match`.
pub(super) fn header(m: &RouteHeaderMatcher, block: &mut MatchBlock) -> Result<(), String> {
    let s = m.string_match.as_ref();
    let value = super::value(
        m.exact_match.as_deref().or(s.and_then(|s| s.exact.as_deref())),
        m.prefix_match.as_deref().or(s.and_then(|s| s.prefix.as_deref())),
        m.suffix_match.as_deref().or(s.and_then(|s| s.suffix.as_deref())),
        m.safe_regex_match.as_ref().or(s.and_then(|s| s.safe_regex.as_ref())).map(|r| r.regex.as_str()),
        m.present_match,
    )?;
    super::matcher(&m.name, value, m.invert_match, block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_limits(yaml: &str) -> Vec<RateLimit> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn istios_path_action_and_envoys_defaults_compile() {
        let list = rate_limits(
            "- actions:
  - request_headers: {header_name: \":path\", descriptor_key: PATH}
- actions:
  - generic_key: {descriptor_value: gw}
  - header_value_match: {descriptor_value: gold, headers: [{name: x-tier, exact_match: gold}]}
- stage: 1
  actions: [{remote_address: {}}]
- actions: [{metadata: {descriptor_key: k}}]",
        );
        let p = policy(list.iter(), 0).unwrap();
        assert_eq!(p.entries.len(), 2, "stage 1 and an unproduced action are left out");
        assert_eq!(policy(list.iter(), 1).unwrap().entries.len(), 1, "a stage-1 filter reads stage 1's");
        assert!(matches!(&p.entries[0][0], Action::RequestHeaders { header, key, skip_if_absent: false }
            if &**header == ":path" && &**key == "PATH"));
        assert!(
            matches!(&p.entries[1][0], Action::GenericKey { key, value } if &**key == "generic_key" && &**value == "gw")
        );
        assert!(matches!(&p.entries[1][1], Action::HeaderValueMatch { key, expect_match: true, headers, .. }
            if &**key == "header_match" && headers.headers.len() == 1));
        assert!(policy(list[3..].iter(), 0).is_none());
    }
}
