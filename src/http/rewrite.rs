//! `rewrite.uri` and `rewrite.uriRegexRewrite`, with Envoy's exact semantics.

use crate::snapshot::{MatchBlock, RequestInfo, Rewrite, StringMatcher};

/// The path (with the query kept) to send upstream, or `None` to send the original target.
///
/// After a prefix match the matched prefix is replaced literally (`/strip` → `/` turns
/// `/strip/foo` into `//foo`); with no uri match the implicit prefix is `/`; after an exact or
/// regex match the whole path is replaced.
pub fn path(rewrite: &Rewrite, block: Option<&MatchBlock>, req: &RequestInfo<'_>) -> Option<String> {
    let new_path = if let Some((re, with)) = &rewrite.uri_regex {
        re.replace_all(req.path, &**with).into_owned()
    } else {
        let uri = rewrite.uri.as_deref()?;
        match block.and_then(|b| b.uri.as_ref()) {
            Some(StringMatcher::Prefix(p)) => format!("{uri}{}", &req.path[p.len().min(req.path.len())..]),
            Some(_) => uri.to_string(),
            None => format!("{uri}{}", req.path.strip_prefix('/').unwrap_or(req.path)),
        }
    };
    Some(match req.query {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    })
}
