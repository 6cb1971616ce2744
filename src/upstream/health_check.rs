//! Active health checks (`health: { path, interval, timeout, fails, passes }`):
//! the task that asks each server and hands the verdicts to its
//! [`Health`](super::health::Health).
//!
//! One task per server asks `GET {base}{path}` every `interval`. The task
//! ends when its server is dropped (a reload removed it) or the gateway
//! stops; a server a reload keeps keeps its task, which reads the terms in
//! force before each check.
//!
//! A check is a request like any other for the application's workers: it
//! takes one of the server's slots (`max_connections`), waiting at the head
//! of its queue for at most the check's `timeout` (behind a line of
//! requests it would never reach a hung server). A check that gets no slot
//! is not counted either way: the server is busy with the gateway's
//! requests, whose own answers tell whether it works.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Request, Uri};
use http_body_util::BodyExt;

use super::limit::Refused;
use super::server::Server;
use super::{exchange, reuse};
use crate::lifecycle::Lifecycle;
use crate::reply;

/// The most of a check's answer read (then the connection is not reused).
const ANSWER_LIMIT: usize = 64 * 1024;

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
    if server.health.terms().is_none() || server.health.claim_watch() {
        return;
    }
    let weak = Arc::downgrade(server);
    lifecycle.spawn_until_drain(async move {
        let _watching = Watching(weak.clone());
        run(&weak, &uri, host.as_ref(), &upstream).await;
    });
}

/// Gives the server's watch back however its task ends (the server gone,
/// its checks turned off, or the drain cancelling the task), so a server a
/// reload keeps can be watched again.
struct Watching(Weak<Server>);

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(s) = self.0.upgrade() {
            s.health.release_watch();
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
                server.stats.refused(Refused::TimedOut);
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
