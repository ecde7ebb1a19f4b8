//! Which `Host` and `Origin` authorities name the admin listener.

use super::names_admin;

#[test]
fn the_admin_address_and_loopback_localhost_name_it() {
    let v4 = "127.0.0.1:15000".parse().unwrap();
    for ok in ["127.0.0.1:15000", "localhost:15000", "LocalHost:15000"] {
        assert!(names_admin(ok, v4), "{ok}");
    }
    for foreign in [
        "evil.example:15000",
        "127.0.0.1:15001",
        "127.0.0.1",
        "localhost",
        "127.0.0.2:15000",
        "127.0.0.1:15000:1",
        "127.0.0.1:x",
        "",
        "[::1]:15000",
    ] {
        assert!(!names_admin(foreign, v4), "{foreign}");
    }
    let v6 = "[::1]:8000".parse().unwrap();
    assert!(names_admin("[::1]:8000", v6));
    assert!(names_admin("localhost:8000", v6));
    assert!(!names_admin("[::1]", v6), "the port is 80 when absent");
    assert!(!names_admin("[::1]x:8000", v6));
    assert!(!names_admin("::1:8000", v6));
}

#[test]
fn localhost_only_names_a_loopback_listener() {
    let public = "10.1.2.3:15000".parse().unwrap();
    assert!(names_admin("10.1.2.3:15000", public));
    assert!(!names_admin("localhost:15000", public), "a name resolved by whoever asks");
    let port80 = "10.1.2.3:80".parse().unwrap();
    assert!(names_admin("10.1.2.3", port80), "the default port");
}
