//! Route and destination `headers` edits merged, in Envoy's order, into one list of removals
//! and one of appended lines, so a head is rewritten in a single pass.

use std::borrow::Cow;

use super::compress::Accept;
use super::cors::HeaderLine;
use crate::snapshot::{Compression, HeaderEdits, ResponseStage};

#[cfg(test)]
mod tests;

/// The edits one message gets: header names to drop from what arrived, and lines to append.
/// `V`: a line's value, borrowed from the configuration or (an answer's CORS lines) a `Cow`.
#[derive(Debug, Default, PartialEq)]
pub struct Merged<'s, V = &'s str> {
    pub remove: Vec<&'s str>,
    pub add: Vec<(&'s str, V)>,
    /// Requests only: the authority a `set` of `host` asks for (the last level's wins).
    pub authority: Option<&'s str>,
    /// Forwarded responses only: the route's compressors, and what the request accepts.
    pub compress: Option<(&'s Compression, Accept)>,
}

impl<'s> Merged<'s> {
    /// Starts from the gateway's own removals (`remove`), then applies `levels` in order.
    ///
    /// Envoy applies a weighted cluster's (destination's) edits before the route's, so pass
    /// them in that order: a later `set` or `remove` of a name also drops the lines earlier
    /// levels appended. Within one level removals go first, then `set`, then `add`, as
    /// Envoy's `HeaderParser::evaluateHeaders` does.
    pub fn new(remove: &[&'s str], levels: &[&'s HeaderEdits]) -> Self {
        Merged { remove: remove.to_vec(), add: Vec::new(), authority: None, compress: None }.then(levels)
    }

    /// These edits, then `levels` in order (see [`Merged::new`]).
    pub fn then(mut self, levels: &[&'s HeaderEdits]) -> Self {
        for level in levels {
            self.apply(level);
        }
        self
    }
}

impl<'s, V: From<&'s str>> Merged<'s, V> {
    /// Applies one more level after those already merged.
    fn apply(&mut self, level: &'s HeaderEdits) {
        let replaced = level.set.iter().map(|(n, _)| &**n).filter(|n| *n != "host");
        for name in level.remove.iter().map(|n| &**n).chain(replaced) {
            self.add.retain(|(n, _)| *n != name);
            if !self.remove.contains(&name) {
                self.remove.push(name);
            }
        }
        for (name, value) in &level.set {
            if &**name == "host" {
                self.authority = Some(value);
            } else {
                self.add.push((name, V::from(&**value)));
            }
        }
        self.add.extend(level.add.iter().map(|(n, v)| (&**n, V::from(&**v))));
    }
}

/// The response stages of a forwarded response, run after the destination's own edits
/// (`dest`). `cors`: the lines the CORS request stage allowed; they replace the backend's
/// lines of the same name. `accept`: the request's `accept-encoding`, for the compressors.
pub fn response<'s, V: AsRef<str>>(
    dest: &'s HeaderEdits,
    stages: &'s [ResponseStage],
    cors: &'s [(&'static str, V)],
    accept: Accept,
) -> Merged<'s> {
    let mut out = Merged::new(&[], &[dest]);
    for stage in stages {
        match stage {
            ResponseStage::Headers(edits) => out.apply(edits),
            ResponseStage::Cors => {
                out.remove.extend(cors.iter().map(|(n, _)| *n));
                out.add.extend(cors.iter().map(|(n, v)| (*n, v.as_ref())));
            }
            ResponseStage::Compress(c) => out.compress = Some((c, accept)),
        }
    }
    out
}

/// The response stages of one of the gateway's own answers: its lines, in order. `cors`: the
/// lines the CORS request stage allowed; they replace the route's own edits of that name.
pub fn local<'a>(stages: &'a [ResponseStage], cors: &[HeaderLine<'a>]) -> Vec<(&'a str, Cow<'a, str>)> {
    let mut out = Merged::<Cow<'a, str>> { remove: Vec::new(), add: Vec::new(), authority: None, compress: None };
    for stage in stages {
        match stage {
            ResponseStage::Headers(edits) => out.apply(edits),
            ResponseStage::Cors => {
                out.add.retain(|(n, _)| !cors.iter().any(|(c, _)| c == n));
                out.add.extend(cors.iter().cloned());
            }
            // The gateway's own answers go out whole and uncompressed.
            ResponseStage::Compress(_) => {}
        }
    }
    out.add
}
