//! Active health checks (`health: { path, interval, timeout, fails, passes }`).
//!
//! One task per server asks `GET {base}{path}` every `interval`; a server
//! that fails `fails` checks in a row (not 2xx within `timeout`, or no
//! connection) leaves the rotation, and comes back after `passes` good ones.
//! The state lives on the [`Server`](super::server::Server), which a reload
//! keeps while it lists the same server, so a reload neither forgets that a
//! server is out nor starts a second task for it; the new terms reach the
//! running task through [`Health::set_terms`]. The task ends when its
//! server is dropped (a reload removed it) or the gateway stops.
//!
//! A check is a request like any other for the application's workers: it
//! takes one of the server's slots (`max_connections`), waiting at the head
//! of its queue for at most the check's `timeout` (behind a line of
//! requests it would never reach a hung server). A check that gets no slot
//! is not counted either way: the server is busy with the gateway's
//! requests, whose own answers tell whether it works.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::Duration;

use http::{Request, Uri};
use http_body_util::BodyExt;

use super::server::Server;
use super::{exchange, reuse};
use crate::config;
use crate::lifecycle::Lifecycle;
use crate::reply;

/// The most of a check's answer read (then the connection is not reused).
const ANSWER_LIMIT: usize = 64 * 1024;

/// A server's health as its checks found it.
pub struct Health {
    healthy: AtomicBool,
    /// Failures in a row while healthy, passes in a row while not.
    streak: AtomicU32,
    terms: Mutex<Option<config::Health>>,
    /// A task checks this server.
    watched: AtomicBool,
}

impl Health {
    pub fn new(terms: Option<config::Health>) -> Health {
        Health {
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            terms: Mutex::new(terms),
            watched: AtomicBool::new(false),
        }
    }

    /// Whether it is in the rotation as far as its checks go (a server
    /// without checks always is).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn terms(&self) -> Option<config::Health> {
        self.terms.lock().clone()
    }

    /// The checks a reload put in force; none: the server is in the
    /// rotation again and its task stops.
    pub fn set_terms(&self, terms: Option<config::Health>) {
        if terms.is_none() {
            self.healthy.store(true, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
        }
        *self.terms.lock() = terms;
    }

    /// Count one check; returns the new state when it changed.
    fn record(&self, ok: bool, terms: &config::Health) -> Option<bool> {
        let healthy = self.is_healthy();
        if ok == healthy {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if healthy { terms.fails } else { terms.passes };
        if streak < needed.max(1) {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.healthy.store(ok, Ordering::Relaxed);
        Some(ok)
    }
}

/// Start checking `server` unless a task already does (or it has no
/// checks); `uri` is where its check asks, `host` the `Host` it sends when
/// the URI's authority is not one (a unix socket's made-up name).
pub fn watch(
    server: &Arc<Server>,
    uri: impl Fn(&str) -> Option<Uri> + Send + Sync + 'static,
    host: Option<http::HeaderValue>,
    upstream: String,
    lifecycle: &Lifecycle,
) {
    if server.health.terms().is_none() || server.health.watched.swap(true, Ordering::SeqCst) {
        return;
    }
    let weak = Arc::downgrade(server);
    lifecycle.spawn_until_drain(async move {
        let _watching = Watching(weak.clone());
        run(&weak, &uri, host.as_ref(), &upstream).await;
    });
}

/// The mark that a task checks the server, taken back however its task
/// ends (returned, or dropped when the gateway drains).
struct Watching(Weak<Server>);

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(s) = self.0.upgrade() {
            s.health.watched.store(false, Ordering::SeqCst);
        }
    }
}

async fn run(
    weak: &Weak<Server>,
    uri: &(impl Fn(&str) -> Option<Uri> + Sync),
    host: Option<&http::HeaderValue>,
    upstream: &str,
) {
    loop {
        // Held only for one check: a server a reload removed goes.
        let Some(server) = weak.upgrade() else { return };
        let Some(terms) = server.health.terms() else {
            return;
        };
        let ok = match uri(&terms.path) {
            Some(uri) => probe(&server, uri, host, terms.timeout).await,
            None => Some(false),
        };
        match ok.and_then(|ok| server.health.record(ok, &terms)) {
            Some(false) => tracing::warn!(
                upstream,
                server = %server.name,
                path = %terms.path,
                fails = terms.fails,
                "upstream server failed its health checks; out of the rotation"
            ),
            Some(true) => tracing::info!(
                upstream,
                server = %server.name,
                passes = terms.passes,
                "upstream server passed its health checks; back in the rotation"
            ),
            None => {}
        }
        drop(server);
        tokio::time::sleep(terms.interval).await;
    }
}

/// One check: a 2xx answer, head and body, within `timeout`, on a
/// connection of the server's pool like any request's, in one of its
/// slots. `None`: no slot came free within `timeout` (not a verdict).
async fn probe(
    server: &Arc<Server>,
    uri: Uri,
    host: Option<&http::HeaderValue>,
    timeout: Duration,
) -> Option<bool> {
    let _slot = match tokio::time::timeout(timeout, server.slot(true)).await {
        Ok(Ok(slot)) => slot,
        waited => {
            // Given up before the queue's own timeout: counted here.
            if waited.is_err() {
                server.stats.refused(super::limit::Refused::TimedOut);
            }
            tracing::debug!(server = %server.name, "health check skipped: no free connection");
            return None;
        }
    };
    let build = || {
        let mut req = Request::get(uri.clone())
            .header(http::header::USER_AGENT, "pushgate-health-check")
            .body(reply::empty())
            .ok()?;
        if let Some(host) = host {
            req.headers_mut().insert(http::header::HOST, host.clone());
        }
        Some(req)
    };
    let Some(mut req) = build() else {
        return Some(false);
    };
    let check = async {
        let conn = reuse::Connection::watch(&mut req);
        // A pooled connection the server closed meanwhile is not the
        // server failing its check: once more on a new one.
        let mut resp = exchange::send(server, req, Some(&build), &conn)
            .await
            .ok()?;
        reuse::check(&http::Method::GET, false, &mut resp, &conn).ok()?;
        let ok = resp.status().is_success();
        http_body_util::Limited::new(resp.into_body(), ANSWER_LIMIT)
            .collect()
            .await
            .ok()?;
        Some(ok)
    };
    // Its own `timeout` from the moment it has a slot: a wait for one is
    // the gateway's doing, not the server's.
    let check = tokio::time::timeout(timeout, check).await;
    Some(matches!(check, Ok(Some(true))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(fails: u32, passes: u32) -> config::Health {
        config::Health {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            fails,
            passes,
        }
    }

    #[test]
    fn out_after_fails_in_a_row_back_after_passes() {
        let t = terms(3, 2);
        let h = Health::new(Some(t.clone()));
        assert_eq!(h.record(false, &t), None);
        assert_eq!(h.record(false, &t), None);
        assert_eq!(h.record(true, &t), None, "a pass resets the count");
        assert_eq!(h.record(false, &t), None);
        assert_eq!(h.record(false, &t), None);
        assert_eq!(h.record(false, &t), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.record(true, &t), None);
        assert_eq!(h.record(false, &t), None, "a failure resets the count");
        assert_eq!(h.record(true, &t), None);
        assert_eq!(h.record(true, &t), Some(true));
        assert!(h.is_healthy());
    }

    #[test]
    fn checks_taken_out_put_the_server_back() {
        let t = terms(1, 5);
        let h = Health::new(Some(t.clone()));
        assert_eq!(h.record(false, &t), Some(false));
        h.set_terms(None);
        assert!(h.is_healthy());
    }
}
