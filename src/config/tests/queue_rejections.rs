//! One test per refusal of an upstream's `max_connections` and `queue:`,
//! each naming file, line and key; and what a valid pair means.

use std::time::Duration;

use super::parse_str;
use super::rejections::rejects;
use crate::config::{ConnLimit, Queue};

#[test]
fn a_limit_of_zero() {
    rejects(
        r#"backend:
  url: http://127.0.0.1:8080
  max_connections: 0
"#,
        3,
        "backend.max_connections",
        "must be at least 1",
    );
}

#[test]
fn a_limit_that_is_no_number() {
    rejects(
        r#"backend:
  url: http://127.0.0.1:8080
  max_connections: many
"#,
        3,
        "backend.max_connections",
        "many",
    );
}

#[test]
fn a_queue_without_a_limit() {
    rejects(
        r#"upstreams:
  api:
    url: http://127.0.0.1:8081
    queue: { size: 10, timeout: 1s }
"#,
        4,
        "upstreams.api.queue",
        "needs max_connections",
    );
}

#[test]
fn a_queue_timeout_of_zero() {
    rejects(
        r#"backend:
  url: http://127.0.0.1:8080
  max_connections: 4
  queue:
    size: 10
    timeout: 0s
"#,
        6,
        "backend.queue.timeout",
        "must be greater than 0",
    );
}

#[test]
fn an_unknown_queue_key() {
    rejects(
        r#"backend:
  url: http://127.0.0.1:8080
  max_connections: 4
  queue: { size: 10, wait: 1s }
"#,
        4,
        "backend.queue.wait",
        "unknown field `wait`",
    );
}

#[test]
fn a_negative_queue_size() {
    rejects(
        r#"backend:
  url: http://127.0.0.1:8080
  max_connections: 4
  queue: { size: -1 }
"#,
        4,
        "backend.queue.size",
        "-1",
    );
}

#[test]
fn no_limit_unless_written_and_the_queue_defaults_with_one() {
    let c = parse_str(
        r#"backend:
  url: http://127.0.0.1:8080
"#,
    )
    .unwrap();
    assert_eq!(
        c.backend.conn_limit(),
        None,
        "existing configs keep no limit"
    );
    let c = parse_str(
        r#"backend:
  url: http://127.0.0.1:8080
  max_connections: 32
upstreams:
  api:
    url: http://127.0.0.1:8081
    max_connections: 2
    queue: { size: 0 }
"#,
    )
    .unwrap();
    assert_eq!(
        c.backend.conn_limit(),
        Some(ConnLimit {
            max_connections: 32,
            queue: Queue {
                size: 1000,
                timeout: Duration::from_secs(10)
            }
        })
    );
    let summary = c.summary();
    assert!(
        summary.contains("max connections 32 per server, queue 1000 for up to 10s"),
        "{summary}"
    );
    let api = c.upstreams["api"].conn_limit().unwrap();
    assert_eq!((api.max_connections, api.queue.size), (2, 0));
    assert_eq!(api.queue.timeout, Duration::from_secs(10));
}
