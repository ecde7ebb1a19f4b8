use super::shadow_host;

#[test]
fn shadow_suffix_goes_before_the_port() {
    assert_eq!(shadow_host("app.test"), "app.test-shadow");
    assert_eq!(shadow_host("app.test:8080"), "app.test-shadow:8080");
    assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
}
