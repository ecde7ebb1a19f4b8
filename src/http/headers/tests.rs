use super::Merged;
use crate::snapshot::HeaderEdits;

fn edits(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderEdits {
    let pairs = |l: &[(&str, &str)]| l.iter().map(|(n, v)| (Box::from(*n), Box::from(*v))).collect();
    HeaderEdits { set: pairs(set), add: pairs(add), remove: remove.iter().map(|n| Box::from(*n)).collect() }
}

#[test]
fn gateway_removals_pass_through_when_no_level_edits() {
    let m = Merged::new(&["expect"], &[]);
    assert!(m.add.is_empty());
    assert_eq!(m.remove, ["expect"]);
    assert_eq!(m.authority, None);
}

#[test]
fn set_replaces_and_add_appends() {
    let level = edits(&[("x-a", "1")], &[("x-b", "2")], &["x-c"]);
    let m = Merged::new(&[], &[&level]);
    assert_eq!(m.remove, ["x-c", "x-a"]);
    assert_eq!(m.add, [("x-a", "1"), ("x-b", "2")]);
}

#[test]
fn route_level_overrides_destination_level() {
    let dest = edits(&[("x-a", "dest"), ("x-keep", "dest")], &[("x-b", "dest")], &[]);
    let route = edits(&[("x-a", "route")], &[("x-b", "route")], &["x-keep"]);
    let m = Merged::new(&[], &[&dest, &route]);
    assert_eq!(m.add, [("x-b", "dest"), ("x-a", "route"), ("x-b", "route")]);
    assert_eq!(m.remove, ["x-a", "x-keep"]);
}

#[test]
fn remove_then_set_in_one_level_sets() {
    let level = edits(&[("x-a", "1")], &[], &["x-a"]);
    let m = Merged::new(&[], &[&level]);
    assert_eq!(m.add, [("x-a", "1")]);
    assert_eq!(m.remove, ["x-a"]);
}

#[test]
fn host_set_is_the_authority_and_the_route_wins() {
    let dest = edits(&[("host", "dest.example")], &[], &[]);
    let route = edits(&[("host", "route.example")], &[], &[]);
    let m = Merged::new(&[], &[&dest, &route]);
    assert_eq!(m.authority, Some("route.example"));
    assert!(m.add.is_empty() && m.remove.is_empty());
}
