//! The Prometheus text of every upstream server, written per scrape under
//! the labels `upstream` and `server`: its counts (`stats.rs`) and its state
//! (health, up, requests in flight and queued, idle connections).
//!
//! It is hand-written text inserted into the registry's exposition rather
//! than a prometheus-client collector: the servers are policy (the set in
//! force changes with every reload) while the registry is built once, below
//! the upstreams, and a collector would also change the text scrapers see
//! today (the families' order and number formats). It has a file of its own
//! so that the counts, which a server holds, do not depend on the server.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::server::Server;
use super::stats::{KINDS, REFUSALS};
use crate::metrics::AtomicHistogram;

/// Prometheus text for the servers of every upstream: `(name, servers)`.
pub fn encode<'a>(upstreams: impl Iterator<Item = (&'a str, &'a [Arc<Server>])> + Clone) -> String {
    let mut out = String::new();
    let out = &mut out;
    family(
        out,
        "upstream_requests",
        "counter",
        "Answers from upstream servers by status class",
    );
    each_server(upstreams.clone(), out, |out, l, s| {
        for (i, c) in s.stats.by_class.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "pushgate_upstream_requests_total{{{l},class=\"{}xx\"}} {n}",
                i + 1
            );
        }
    });
    family(
        out,
        "upstream_errors",
        "counter",
        "Requests to upstream servers that got no answer, by kind",
    );
    each_server(upstreams.clone(), out, |out, l, s| {
        for (kind, c) in KINDS.iter().zip(&s.stats.errors) {
            let n = c.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "pushgate_upstream_errors_total{{{l},kind=\"{kind}\"}} {n}"
            );
        }
    });
    family(
        out,
        "upstream_latency_seconds",
        "histogram",
        "Time from sending a request to an upstream server to its answer head",
    );
    each_server(upstreams.clone(), out, |out, l, s| {
        histogram(out, "upstream_latency_seconds", l, &s.stats.latency);
    });
    family(
        out,
        "upstream_queue_seconds",
        "histogram",
        "Time requests waited for a free connection to a server with max_connections (0 when one was free)",
    );
    each_server(upstreams.clone(), out, |out, l, s| {
        histogram(out, "upstream_queue_seconds", l, &s.stats.queue_wait);
    });
    family(
        out,
        "upstream_queue_refused",
        "counter",
        "Requests refused a connection to a server (503): its queue full, or no connection free within queue.timeout",
    );
    each_server(upstreams.clone(), out, |out, l, s| {
        for (reason, c) in REFUSALS.iter().zip(&s.stats.refused) {
            let n = c.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "pushgate_upstream_queue_refused_total{{{l},reason=\"{reason}\"}} {n}"
            );
        }
    });
    for (name, help, value) in GAUGES {
        family(out, name, "gauge", help);
        each_server(upstreams.clone(), out, |out, l, s| {
            let _ = writeln!(out, "pushgate_{name}{{{l}}} {}", value(s));
        });
    }
    std::mem::take(out)
}

/// The gauges of a server's state, read at scrape time.
const GAUGES: [Gauge; 5] = [
    (
        "upstream_server_healthy",
        "1 while the server passes its health checks (always without checks)",
        |s| usize::from(s.health.is_healthy()),
    ),
    (
        "upstream_server_up",
        "1 while the server is in the rotation (healthy, no failed connect lately)",
        |s| usize::from(!s.is_down()),
    ),
    (
        "upstream_in_flight",
        "Requests in flight on the server from this gateway",
        Server::in_flight,
    ),
    (
        "upstream_queued",
        "Requests waiting for a free connection to the server (max_connections)",
        |s| s.limit.queued(),
    ),
    (
        "upstream_pool_idle",
        "Idle connections to the server in its pool (shared by both engines)",
        |s| s.pool.idle_count(),
    ),
];

/// The `# HELP` and `# TYPE` lines of one family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP pushgate_{name} {help}");
    let _ = writeln!(out, "# TYPE pushgate_{name} {kind}");
}

/// Calls `write` for every server with its labels, formatted once per server.
fn each_server<'a>(
    upstreams: impl Iterator<Item = (&'a str, &'a [Arc<Server>])>,
    out: &mut String,
    mut write: impl FnMut(&mut String, &str, &Server),
) {
    for (u, servers) in upstreams {
        for s in servers {
            let labels = format!("upstream=\"{}\",server=\"{}\"", escape(u), escape(&s.name));
            write(out, &labels, s);
        }
    }
}

/// The lines of one server's histogram `name`.
fn histogram(out: &mut String, name: &str, l: &str, h: &AtomicHistogram) {
    let (buckets, sum) = h.cumulative();
    for (bound, n) in &buckets {
        let le = if bound.is_infinite() {
            "+Inf".to_string()
        } else {
            bound.to_string()
        };
        let _ = writeln!(out, "pushgate_{name}_bucket{{{l},le=\"{le}\"}} {n}");
    }
    let count = buckets.last().map_or(0, |b| b.1);
    let _ = writeln!(out, "pushgate_{name}_sum{{{l}}} {sum}");
    let _ = writeln!(out, "pushgate_{name}_count{{{l}}} {count}");
}

/// A gauge written per server: name, help, and its value.
type Gauge = (&'static str, &'static str, fn(&Server) -> usize);

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
