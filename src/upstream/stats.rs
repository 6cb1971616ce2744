//! What each upstream server did, for `/metrics`: answers by status class,
//! failures by kind, the time to an answer head, the time requests waited
//! for a slot (`max_connections`) and those refused one, and its state
//! (health, up, requests in flight and queued, idle connections). The counts live on the server, so
//! they last as long as a reload keeps it, and are written out per scrape
//! under the labels `upstream` and `server`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::limit::Refused;
use super::server::Server;
use crate::metrics::AtomicHistogram;

/// Failure kinds, in `errors` order.
const KINDS: [&str; 2] = ["connect", "no_answer"];

/// Refusals of a slot, in `refused` order.
const REFUSALS: [&str; 2] = ["full", "timeout"];

/// One server's counts.
pub struct ServerStats {
    by_class: [AtomicU64; 5],
    errors: [AtomicU64; 2],
    latency: AtomicHistogram,
    /// How long requests waited for a slot (0 for a free one).
    queue_wait: AtomicHistogram,
    refused: [AtomicU64; 2],
}

/// Why a request to a server got no answer to pass on.
#[derive(Clone, Copy)]
pub enum Failure {
    /// The connection could not be made.
    Connect = 0,
    /// Timed out, reset, or an answer that could not be used.
    NoAnswer = 1,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            by_class: Default::default(),
            errors: Default::default(),
            // 100µs .. ~13s, as the gateway-wide proxy latency.
            latency: AtomicHistogram::exponential(0.0001, 2.0, 18),
            // 1ms .. ~33s: a queue's timeout is seconds.
            queue_wait: AtomicHistogram::exponential(0.001, 2.0, 16),
            refused: Default::default(),
        }
    }
}

impl ServerStats {
    /// An answer head with `status` after `elapsed`.
    pub fn answered(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(elapsed);
    }

    pub fn failed(&self, why: Failure) {
        self.errors[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A slot was had after `waited` (only on a server with a limit).
    pub fn waited(&self, waited: Duration) {
        self.queue_wait.observe(waited);
    }

    /// A slot was refused.
    pub fn refused(&self, why: Refused) {
        let at = match why {
            Refused::Full => 0,
            Refused::TimedOut => 1,
        };
        self.refused[at].fetch_add(1, Ordering::Relaxed);
    }
}

/// Prometheus text for the servers of every upstream: `(name, servers)`.
pub fn encode<'a>(
    upstreams: impl Iterator<Item = (&'a str, &'a [std::sync::Arc<Server>])> + Clone,
) -> String {
    let mut out = String::new();
    let labels =
        |u: &str, s: &Server| format!("upstream=\"{}\",server=\"{}\"", escape(u), escape(&s.name));
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP pushgate_{name} {help}");
        let _ = writeln!(out, "# TYPE pushgate_{name} {kind}");
    };
    family(
        &mut out,
        "upstream_requests",
        "counter",
        "Answers from upstream servers by status class",
    );
    for (u, servers) in upstreams.clone() {
        for s in servers {
            for (i, c) in s.stats.by_class.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "pushgate_upstream_requests_total{{{},class=\"{}xx\"}} {}",
                    labels(u, s),
                    i + 1,
                    c.load(Ordering::Relaxed)
                );
            }
        }
    }
    family(
        &mut out,
        "upstream_errors",
        "counter",
        "Requests to upstream servers that got no answer, by kind",
    );
    for (u, servers) in upstreams.clone() {
        for s in servers {
            for (kind, c) in KINDS.iter().zip(&s.stats.errors) {
                let _ = writeln!(
                    out,
                    "pushgate_upstream_errors_total{{{},kind=\"{kind}\"}} {}",
                    labels(u, s),
                    c.load(Ordering::Relaxed)
                );
            }
        }
    }
    family(
        &mut out,
        "upstream_latency_seconds",
        "histogram",
        "Time from sending a request to an upstream server to its answer head",
    );
    for (u, servers) in upstreams.clone() {
        for s in servers {
            histogram(
                &mut out,
                "upstream_latency_seconds",
                &labels(u, s),
                &s.stats.latency,
            );
        }
    }
    family(
        &mut out,
        "upstream_queue_seconds",
        "histogram",
        "Time requests waited for a free connection to a server with max_connections (0 when one was free)",
    );
    for (u, servers) in upstreams.clone() {
        for s in servers {
            histogram(
                &mut out,
                "upstream_queue_seconds",
                &labels(u, s),
                &s.stats.queue_wait,
            );
        }
    }
    family(
        &mut out,
        "upstream_queue_refused",
        "counter",
        "Requests refused a connection to a server (503): its queue full, or no connection free within queue.timeout",
    );
    for (u, servers) in upstreams.clone() {
        for s in servers {
            for (reason, c) in REFUSALS.iter().zip(&s.stats.refused) {
                let _ = writeln!(
                    out,
                    "pushgate_upstream_queue_refused_total{{{},reason=\"{reason}\"}} {}",
                    labels(u, s),
                    c.load(Ordering::Relaxed)
                );
            }
        }
    }
    let gauges: [Gauge; 5] = [
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
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        for (u, servers) in upstreams.clone() {
            for s in servers {
                let _ = writeln!(out, "pushgate_{name}{{{}}} {}", labels(u, s), value(s));
            }
        }
    }
    out
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
