//! One test per refusal of an upstream's `https://`, `tls:` and `unix:`
//! settings, each naming file, line and key. The files they read are made
//! in a temp directory; "the system has no roots" is told to the parser
//! rather than read from this host's store.

use super::rejections::rejects;
use super::{env, parse_str};
use crate::config::{ConfigErrors, parse_with_roots};

/// A fresh directory with a self-signed certificate (`cert.pem`, its key
/// `key.pem`), another key (`other.key`) and a file of no PEM (`junk.pem`).
fn files(tag: &str) -> tempfile::TempDir {
    let guard = tempfile::Builder::new()
        .prefix(&format!("pushgate-upstream-tls-{tag}-"))
        .tempdir()
        .unwrap();
    let dir = guard.path();
    let pair = rcgen::generate_simple_self_signed(vec!["api.internal".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), pair.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), pair.signing_key.serialize_pem()).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
    std::fs::write(dir.join("junk.pem"), "not a certificate\n").unwrap();
    guard
}

/// A backend over TLS with the files of `dir` ([`files`]) as its CA
/// and the client pair `cert`, `key`: `client_cert` on line 5, `client_key`
/// on line 6.
fn client_pair(dir: &std::path::Path, cert: &str, key: &str) -> String {
    format!(
        r#"backend:
  url: https://app.internal
  tls:
    ca: {d}/cert.pem
    client_cert: {d}/{cert}
    client_key: {d}/{key}
"#,
        d = dir.display()
    )
}

fn parse_without_roots(text: &str) -> Result<crate::config::Config, ConfigErrors> {
    parse_with_roots(text, std::path::Path::new("gateway.yaml"), &env, &|| false)
}

#[test]
fn https_without_ca_on_a_system_without_roots() {
    let errors = parse_without_roots(
        r#"backend:
  url: https://app.internal:8443
"#,
    )
    .unwrap_err();
    let rendered = errors.to_string();
    assert!(
        rendered.starts_with("gateway.yaml:2: backend.url: ") && rendered.contains("needs tls.ca"),
        "{rendered}"
    );
    // With a CA of its own, no system roots are needed.
    let guard = files("roots");
    let dir = guard.path();
    let text = format!(
        r#"backend:
  url: https://app.internal:8443
  tls: {{ ca: {}/cert.pem }}
"#,
        dir.display()
    );
    parse_without_roots(&text).unwrap();
}

#[test]
fn ca_that_cannot_be_read() {
    rejects(
        r#"backend:
  url: https://app.internal
  tls:
    ca: /nonexistent/ca.pem
"#,
        4,
        "backend.tls.ca",
        "cannot read /nonexistent/ca.pem",
    );
}

#[test]
fn ca_without_a_certificate() {
    let guard = files("junk");
    let dir = guard.path();
    rejects(
        &format!(
            r#"backend:
  url: https://app.internal
  tls:
    ca: {}/junk.pem
"#,
            dir.display()
        ),
        4,
        "backend.tls.ca",
        "contains no certificate",
    );
}

#[test]
fn client_cert_without_client_key() {
    let guard = files("nokey");
    let dir = guard.path();
    rejects(
        &format!(
            r#"upstreams:
  api:
    url: https://app.internal
    tls:
      ca: {d}/cert.pem
      client_cert: {d}/cert.pem
"#,
            d = dir.display()
        ),
        4,
        "upstreams.api.tls.client_key",
        "client_cert needs client_key",
    );
}

#[test]
fn client_key_without_client_cert() {
    let guard = files("nocert");
    let dir = guard.path();
    rejects(
        &format!(
            r#"backend:
  url: https://app.internal
  tls:
    ca: {d}/cert.pem
    client_key: {d}/key.pem
"#,
            d = dir.display()
        ),
        3,
        "backend.tls.client_cert",
        "client_key needs client_cert",
    );
}

#[test]
fn client_cert_that_cannot_be_read() {
    rejects(
        &client_pair(files("certgone").path(), "gone.pem", "key.pem"),
        5,
        "backend.tls.client_cert",
        "cannot read",
    );
}

#[test]
fn client_key_that_is_no_key() {
    rejects(
        &client_pair(files("keyjunk").path(), "cert.pem", "junk.pem"),
        6,
        "backend.tls.client_key",
        "no usable private key",
    );
}

#[test]
fn client_key_of_another_certificate() {
    rejects(
        &client_pair(files("mismatch").path(), "cert.pem", "other.key"),
        6,
        "backend.tls.client_key",
        "does not match client_cert",
    );
}

#[test]
fn a_usable_client_pair_is_accepted() {
    let guard = files("pair");
    let dir = guard.path();
    let text = format!(
        r#"backend:
  url: https://app.internal
  tls:
    ca: {d}/cert.pem
    server_name: api.internal
    client_cert: {d}/cert.pem
    client_key: {d}/key.pem
"#,
        d = dir.display()
    );
    let c = parse_str(&text).unwrap();
    let tls = c.backend.tls.unwrap();
    assert_eq!(tls.server_name.as_deref(), Some("api.internal"));
    assert_eq!(tls.client_key, Some(dir.join("key.pem")));
}

#[test]
fn tls_on_an_upstream_without_https_servers() {
    rejects(
        r#"upstreams:
  api:
    url: http://10.0.0.7:8080
    tls: { server_name: api.internal }
"#,
        4,
        "upstreams.api.tls",
        "has none",
    );
}

#[test]
fn server_name_that_is_no_name() {
    let guard = files("badname");
    let dir = guard.path();
    rejects(
        &format!(
            r#"backend:
  url: https://app.internal
  tls:
    ca: {}/cert.pem
    server_name: "not a name"
"#,
            dir.display()
        ),
        5,
        "backend.tls.server_name",
        "not a DNS name",
    );
}

#[test]
fn servers_of_different_schemes() {
    rejects(
        r#"backend:
  urls:
    - http://10.0.0.5:8080
    - https://10.0.0.6:8443
"#,
        4,
        "backend.urls[1]",
        "same scheme",
    );
}

#[test]
fn unix_path_that_is_not_a_socket() {
    let guard = files("notsock");
    let dir = guard.path();
    rejects(
        &format!(
            r#"backend:
  url: unix:{}/cert.pem
"#,
            dir.display()
        ),
        2,
        "backend.url",
        "is not a socket",
    );
}

#[test]
fn unix_socket_in_a_directory_that_does_not_exist() {
    rejects(
        r#"backend:
  url: unix:/nonexistent/dir/app.sock
"#,
        2,
        "backend.url",
        "directory of /nonexistent/dir/app.sock does not exist",
    );
}

#[test]
fn unix_socket_with_a_host() {
    rejects(
        r#"backend:
  url: unix://app/run/app.sock
"#,
        2,
        "backend.url",
        "unix:/absolute/path.sock",
    );
}

#[test]
fn a_missing_socket_in_a_directory_that_exists_is_accepted() {
    let guard = files("latersock");
    let dir = guard.path();
    let text = format!(
        r#"backend:
  urls: ["unix:{d}/a.sock", "unix:{d}/b.sock"]
"#,
        d = dir.display()
    );
    let c = parse_str(&text).unwrap();
    assert_eq!(
        c.backend.urls[1].path(),
        format!("{}/b.sock", dir.display())
    );
}
