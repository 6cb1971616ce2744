//! `buffering:` of an upstream and a route, and `limits.buffers`: `on`/`off`
//! read as nginx writes them, and one test per refusal, each naming file,
//! line and key.

use std::time::Duration;

use super::parse_str;
use super::rejections::rejects;
use crate::config::{Buffering, RouteBuffering};

#[test]
fn on_and_off_as_nginx_writes_them_and_defaults_as_nginx_has_them() {
    let c = parse_str("backend:\n  url: http://127.0.0.1:8080\n").unwrap();
    assert_eq!(c.backend.buffering, Buffering::default());
    assert!(c.backend.buffering.request && c.backend.buffering.response);
    assert_eq!(c.backend.buffering.memory, 1024 * 1024);
    assert_eq!(c.backend.buffering.max_body, 100 * 1024 * 1024);
    let c = parse_str(
        "backend:\n  buffering: { request: off, response: On, memory: 64KiB, max_body: 2MiB, body_timeout: 5s }\n\
         upstreams:\n  api: { url: \"http://10.0.0.7:80\", buffering: { request: false, response: true } }\n\
         routes:\n  - { path: /live/, upstream: api, buffering: { response: off } }\n\
         limits:\n  buffers: { memory: 8MiB, temp_dir: /tmp }\n",
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
        "backend:\n  buffering:\n    request: maybe\n",
        3,
        "backend.buffering.request",
        "expected on, off, true or false",
    );
    rejects(
        "routes:\n  - { path: /a/, upstream: default, buffering: { response: 1 } }\n",
        2,
        "routes[0].buffering.response",
        "on, off, true or false",
    );
}

#[test]
fn an_unknown_buffering_key() {
    rejects(
        "backend:\n  buffering:\n    proxy_buffers: 8\n",
        3,
        "backend.buffering.proxy_buffers",
        "unknown field",
    );
}

#[test]
fn a_max_body_of_nothing_and_a_body_timeout_of_zero() {
    rejects(
        "upstreams:\n  api:\n    url: http://10.0.0.7:80\n    buffering: { max_body: 0 }\n",
        4,
        "upstreams.api.buffering.max_body",
        "at least 1 byte",
    );
    rejects(
        "backend:\n  buffering:\n    body_timeout: 0s\n",
        3,
        "backend.buffering.body_timeout",
        "greater than 0",
    );
}

#[test]
fn a_temp_dir_that_is_not_a_directory() {
    rejects(
        "limits:\n  buffers: { temp_dir: /nonexistent/pushgate }\n",
        2,
        "limits.buffers.temp_dir",
        "/nonexistent/pushgate must be an existing directory",
    );
    // Empty is unset: the system's.
    let c = parse_str("limits:\n  buffers: { temp_dir: \"\" }\n").unwrap();
    assert_eq!(c.limits.buffers.temp_dir, None);
}
