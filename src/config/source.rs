//! The text side of loading: splitting a file into YAML documents, and mapping a field path
//! such as `spec.http[0].route` back to the file line it was written on.
//!
//! serde_yaml builds values without positions, so positions come from a second, on-demand walk
//! of the document with yaml-rust2's event parser (whose events carry line marks). That walk
//! only happens when something is being reported, never on the load path of a good config.

use std::collections::HashMap;
use std::sync::Arc;

use yaml_rust2::parser::{Event, Parser};

/// One `---` section of a file.
#[derive(Debug)]
pub(crate) struct RawDocument {
    /// 1-based, counting every `---` section (and a leading section without `---` if it holds
    /// anything but comments).
    pub index: usize,
    /// 1-based file line of `text`'s first line.
    pub line: usize,
    /// The document from its first content line on (leading blank/comment lines and a bare
    /// `---` marker dropped, so that `line` is where the content starts). Empty for an empty
    /// document.
    pub text: Arc<str>,
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Splits a multi-document file on its `---` / `...` marker lines. Textual splitting is exact
/// for YAML: a marker at column 0 ends any block scalar, and inside a quoted scalar it is a
/// syntax error that the parser then reports within the document.
pub(crate) fn split_documents(file_text: &str) -> Vec<RawDocument> {
    /// Lines of one section; `explicit` when it was opened by `---` (and so is a document
    /// even if empty).
    struct Chunk<'a> {
        explicit: bool,
        first_line: usize,
        lines: Vec<&'a str>,
    }
    fn finish(chunk: Chunk<'_>, docs: &mut Vec<RawDocument>) {
        let skip = chunk.lines.iter().take_while(|l| is_blank_or_comment(l)).count();
        if !chunk.explicit && skip == chunk.lines.len() {
            return; // comments or directives outside any document
        }
        let mut text = chunk.lines[skip..].join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        docs.push(RawDocument { index: docs.len() + 1, line: chunk.first_line + skip, text: text.into() });
    }
    let mut docs = Vec::new();
    let text = file_text.strip_prefix('\u{feff}').unwrap_or(file_text);
    let mut chunk = Chunk { explicit: false, first_line: 1, lines: Vec::new() };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if is_marker(line, "---") {
            let next = Chunk { explicit: true, first_line: n, lines: Vec::new() };
            finish(std::mem::replace(&mut chunk, next), &mut docs);
            // `--- # note` is a bare marker; `--- {a: 1}` or `--- !tag` carries content.
            if is_blank_or_comment(&line[3..]) {
                chunk.first_line = n + 1;
            } else {
                chunk.lines.push(line);
            }
        } else if is_marker(line, "...") {
            // What follows `...` is a new document only if it has content.
            let next = Chunk { explicit: false, first_line: n + 1, lines: Vec::new() };
            finish(std::mem::replace(&mut chunk, next), &mut docs);
        } else if line.starts_with('%') && chunk.lines.iter().all(|l| is_blank_or_comment(l)) {
            // A directive (`%YAML 1.2`) only affects details serde_yaml ignores anyway; kept as
            // a blank line so that line numbers hold.
            chunk.lines.push("");
        } else {
            chunk.lines.push(line);
        }
    }
    finish(chunk, &mut docs);
    docs
}

/// The shape of a document with the line of every node and mapping key.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Scalar {
        line: usize,
    },
    Seq {
        line: usize,
        items: Vec<Node>,
    },
    /// Entries in document order; a non-scalar key is recorded as `None`.
    Map {
        line: usize,
        entries: Vec<Entry>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: Option<String>,
    pub key_line: usize,
    pub value: Node,
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Scalar { line } | Node::Seq { line, .. } | Node::Map { line, .. } => *line,
        }
    }

    /// Parses `text` (one document) into its line tree; `None` if it is not valid YAML.
    pub fn parse(text: &str) -> Option<Node> {
        let mut parser = Parser::new_from_str(text);
        let mut anchors = HashMap::new();
        loop {
            match parser.next_token().ok()? {
                (Event::StreamEnd, _) => return None,
                (Event::StreamStart | Event::DocumentStart, _) => continue,
                (event, mark) => return build(&mut parser, &mut anchors, event, mark.line(), 0),
            }
        }
    }

    /// The first mapping key that appears twice in one mapping, in document order:
    /// `(path of the mapping, key, line of the first, line of the second)`.
    pub fn find_duplicate_key(&self) -> Option<(String, String, usize, usize)> {
        match self {
            Node::Scalar { .. } => None,
            Node::Seq { items, .. } => items.iter().enumerate().find_map(|(i, item)| {
                item.find_duplicate_key().map(|(p, k, a, b)| (join_path(&format!("[{i}]"), &p), k, a, b))
            }),
            Node::Map { entries, .. } => {
                let mut seen: HashMap<&str, usize> = HashMap::new();
                // Keys inside a value come before the next key of this mapping.
                for e in entries {
                    if let Some(key) = e.key.as_deref().filter(|k| *k != "<<") {
                        if let Some(first) = seen.insert(key, e.key_line) {
                            return Some((String::new(), key.to_owned(), first, e.key_line));
                        }
                    }
                    if let Some((p, k, a, b)) = e.value.find_duplicate_key() {
                        let segment = render_key(e.key.as_deref().unwrap_or("?"));
                        return Some((join_path(&segment, &p), k, a, b));
                    }
                }
                None
            }
        }
    }

    /// The line of the deepest node along `path` (see [`locate`]).
    pub fn locate(&self, path: &str) -> usize {
        let mut node = self;
        let mut line = node.line();
        for segment in parse_path(path) {
            let next = match (&segment, node) {
                (Segment::Index(i), Node::Seq { items, .. }) => items.get(*i).map(|n| (n.line(), n)),
                (Segment::Key(k), Node::Map { .. }) => node.entry(k).map(|e| (e.key_line, &e.value)),
                _ => None,
            };
            match next {
                Some((l, n)) => (line, node) = (l, n),
                None => break,
            }
        }
        line
    }

    /// The entry for `key`, looking through YAML merge keys (`<<: *base`) as serde_yaml does.
    fn entry(&self, key: &str) -> Option<&Entry> {
        let Node::Map { entries, .. } = self else {
            return None;
        };
        entries.iter().rev().find(|e| e.key.as_deref() == Some(key)).or_else(|| {
            entries.iter().filter(|e| e.key.as_deref() == Some("<<")).find_map(|e| match &e.value {
                Node::Seq { items, .. } => items.iter().find_map(|n| n.entry(key)),
                merged => merged.entry(key),
            })
        })
    }
}

/// Nesting beyond this is refused rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 256;

fn build<T: Iterator<Item = char>>(
    parser: &mut Parser<T>,
    anchors: &mut HashMap<usize, Node>,
    event: Event,
    line: usize,
    depth: usize,
) -> Option<Node> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (node, anchor) = match event {
        Event::Scalar(_, _, anchor, _) => (Node::Scalar { line }, anchor),
        Event::Alias(id) => (anchors.get(&id)?.clone(), 0),
        Event::SequenceStart(anchor, _) => {
            let mut items = Vec::new();
            loop {
                match parser.next_token().ok()? {
                    (Event::SequenceEnd, _) => break,
                    (e, m) => items.push(build(parser, anchors, e, m.line(), depth + 1)?),
                }
            }
            (Node::Seq { line, items }, anchor)
        }
        Event::MappingStart(anchor, _) => {
            let mut entries = Vec::new();
            loop {
                let (key_event, key_mark) = parser.next_token().ok()?;
                if matches!(key_event, Event::MappingEnd) {
                    break;
                }
                let key = match &key_event {
                    Event::Scalar(s, ..) => Some(s.clone()),
                    _ => None,
                };
                // Parse (and discard) a complex key so the stream stays aligned.
                build(parser, anchors, key_event, key_mark.line(), depth + 1)?;
                let (e, m) = parser.next_token().ok()?;
                let value = build(parser, anchors, e, m.line(), depth + 1)?;
                entries.push(Entry { key, key_line: key_mark.line(), value });
            }
            (Node::Map { line, entries }, anchor)
        }
        _ => return None,
    };
    if anchor != 0 {
        anchors.insert(anchor, node.clone());
    }
    Some(node)
}

/// Field path → file line, for a document whose text starts at file line `first_line`.
///
/// `path` is written as diagnostics print it: `spec.http[0].route[1].destination.host`, with
/// `["…"]` for keys that are not plain identifiers (`metadata.labels["app.kubernetes.io/name"]`).
/// The answer is the line of the deepest node of the path that exists: a mapping entry's key
/// line, a sequence item's first line. So a path to a field that is missing still lands on its
/// parent. `None` only if the text is not valid YAML.
pub fn locate(source: &str, first_line: usize, path: &str) -> Option<usize> {
    // libyaml may mark a node that ends the input (an empty tagged scalar) on the line after
    // the last: keep to the lines the text has.
    let last = source.lines().count().max(1);
    Node::parse(source).map(|root| first_line + root.locate(path).clamp(1, last) - 1)
}

enum Segment {
    Key(String),
    Index(usize),
}

/// Parses a path as [`render_key`] / [`join_path`] write it. Malformed trailing parts are
/// ignored: `locate` then answers for the well-formed prefix.
fn parse_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[\"") {
            let mut key = String::new();
            let mut chars = r.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => key.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => key.push(c),
                }
            }
            let Some(end) = end else { break };
            segments.push(Segment::Key(key));
            rest = r[end + 1..].strip_prefix(']').unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            let Ok(i) = r[..end].parse() else { break };
            segments.push(Segment::Index(i));
            rest = &r[end + 1..];
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            segments.push(Segment::Key(r[..end].to_owned()));
            rest = &r[end..];
        }
    }
    segments
}

/// A mapping key as a path segment: bare when it is an identifier-like word, else quoted.
pub(crate) fn render_key(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        key.to_owned()
    } else {
        format!("[{key:?}]")
    }
}

/// `parent` + `child` where each is a rendered path (`a.b[0]`, `["x.y"]`, `[3]`, or empty).
pub(crate) fn join_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else if child.is_empty() || child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}
