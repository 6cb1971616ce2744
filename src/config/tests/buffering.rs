//! `buffering:` of an upstream and a route, and `limits.buffers`: `on`/`off`
//! read as nginx writes them, and one test per refusal, each naming file,
//! line and key.

use std::time::Duration;

use super::parse_str;
use super::rejections::rejects;
use crate::config::{Buffering, RouteBuffering};

#[test]
fn on_and_off_as_nginx_writes_them_and_defaults_as_nginx_has_them() {
    let c = parse_str(
        r#"backend:
  url: http://127.0.0.1:8080
"#,
    )
    .unwrap();
    assert_eq!(c.backend.buffering, Buffering::default());
    assert!(c.backend.buffering.request && c.backend.buffering.response);
    assert_eq!(c.backend.buffering.memory, 1024 * 1024);
    assert_eq!(c.backend.buffering.max_body, 100 * 1024 * 1024);
    let c = parse_str(
        r#"backend:
  buffering: { request: off, response: On, memory: 64KiB, max_body: 2MiB, body_timeout: 5s }
upstreams:
  api: { url: "http://10.0.0.7:80", buffering: { request: false, response: true } }
routes:
  - { path: /live/, upstream: api, buffering: { response: off } }
limits:
  buffers: { memory: 8MiB, temp_dir: /tmp }
"#,
    )
    .unwrap();
    let b = c.backend.buffering;
    assert!(!b.request && b.response);
    assert_eq!((b.memory, b.max_body), (64 * 1024, 2 * 1024 * 1024));
    assert_eq!(b.body_timeout, Duration::from_secs(5));
    assert!(!c.upstreams["api"].buffering.request);
    let route = c.routes[0].buffering;
    assert_eq!(
        route,
        RouteBuffering {
            request: None,
            response: Some(false)
        }
    );
    let summary = c.summary();
    assert!(
        summary.contains("path /live/ -> api (response buffering off)")
            && summary.contains("backend buffering request off, response on, 64KiB in memory per body, bodies up to 2MiB"),
        "{summary}"
    );
    let api = c.upstreams["api"].buffering.with(route);
    assert!(
        !api.request && !api.response,
        "the route's switch over the upstream's"
    );
    assert_eq!(c.limits.buffers.memory, 8 * 1024 * 1024);
    assert_eq!(
        c.limits.buffers.temp_dir.as_deref(),
        Some(std::path::Path::new("/tmp"))
    );
}

#[test]
fn a_switch_that_is_neither_on_nor_off() {
    rejects(
        r#"backend:
  buffering:
    request: maybe
"#,
        3,
        "backend.buffering.request",
        "expected on, off, true or false",
    );
    rejects(
        r#"routes:
  - { path: /a/, upstream: default, buffering: { response: 1 } }
"#,
        2,
        "routes[0].buffering.response",
        "on, off, true or false",
    );
}

#[test]
fn an_unknown_buffering_key() {
    rejects(
        r#"backend:
  buffering:
    proxy_buffers: 8
"#,
        3,
        "backend.buffering.proxy_buffers",
        "unknown field",
    );
}

#[test]
fn a_max_body_of_nothing_and_a_body_timeout_of_zero() {
    rejects(
        r#"upstreams:
  api:
    url: http://10.0.0.7:80
    buffering: { max_body: 0 }
"#,
        4,
        "upstreams.api.buffering.max_body",
        "at least 1 byte",
    );
    rejects(
        r#"backend:
  buffering:
    body_timeout: 0s
"#,
        3,
        "backend.buffering.body_timeout",
        "greater than 0",
    );
}

#[test]
fn a_temp_dir_that_is_not_a_directory() {
    rejects(
        r#"limits:
  buffers: { temp_dir: /nonexistent/pushgate }
"#,
        2,
        "limits.buffers.temp_dir",
        "/nonexistent/pushgate must be an existing directory",
    );
    // Empty is unset: the system's.
    let c = parse_str(
        r#"limits:
  buffers: { temp_dir: "" }
"#,
    )
    .unwrap();
    assert_eq!(c.limits.buffers.temp_dir, None);
}
