//! Route and destination `headers` edits merged, in Envoy's order, into one list of removals
//! and one of appended lines, so a head is rewritten in a single pass.

use crate::snapshot::HeaderEdits;

#[cfg(test)]
mod tests;

/// The edits one message gets: header names to drop from what arrived, and lines to append.
#[derive(Debug, Default, PartialEq)]
pub struct Merged<'s> {
    pub remove: Vec<&'s str>,
    pub add: Vec<(&'s str, &'s str)>,
    /// Requests only: the authority a `set` of `host` asks for (the last level's wins).
    pub authority: Option<&'s str>,
}

impl<'s> Merged<'s> {
    /// Starts from the gateway's own removals (`remove`), then applies `levels` in order.
    ///
    /// Envoy applies a weighted cluster's (destination's) edits before the route's, so pass
    /// them in that order: a later `set` or `remove` of a name also drops the lines earlier
    /// levels appended. Within one level removals go first, then `set`, then `add`, as
    /// Envoy's `HeaderParser::evaluateHeaders` does.
    pub fn new(remove: &[&'s str], levels: &[&'s HeaderEdits]) -> Self {
        let mut out = Merged { remove: remove.to_vec(), add: Vec::new(), authority: None };
        for level in levels {
            let replaced = level.set.iter().map(|(n, _)| &**n).filter(|n| *n != "host");
            for name in level.remove.iter().map(|n| &**n).chain(replaced) {
                out.add.retain(|(n, _)| *n != name);
                if !out.remove.contains(&name) {
                    out.remove.push(name);
                }
            }
            for (name, value) in &level.set {
                if &**name == "host" {
                    out.authority = Some(value);
                } else {
                    out.add.push((name, value));
                }
            }
            out.add.extend(level.add.iter().map(|(n, v)| (&**n, &**v)));
        }
        out
    }
}
