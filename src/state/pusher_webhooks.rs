//! Where the Pusher webhook sender (`pusher::webhook`) meets the gateway:
//! it starts once, when some app first has a `webhook:` (at start or after
//! the reload that adds it), and it reads the apps and upstreams of the
//! settings in force each time it needs them, so it never pins a
//! configuration. The subscription count task (`pusher_counts.rs`) is
//! started from here too, at start and after each reload.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, StatusCode};

use super::AppState;
use crate::config::DEFAULT_UPSTREAM;
use crate::pusher::App;
use crate::pusher::webhook::{Destination, Terms, post_through, run};

impl AppState {
    /// Starts the one webhook sender if some app has a webhook and it is not
    /// running yet. It runs until the drain is over, so the leaves that
    /// closing sockets report are still sent while connections drain.
    pub fn start_pusher_webhooks(&self) {
        self.start_pusher_counts();
        let wanted = self
            .settings()
            .pusher
            .iter()
            .any(|app| app.config.webhook.is_some());
        if !wanted {
            return;
        }
        let Some(events) = self.app_events.take_receiver() else {
            return;
        };
        self.lifecycle.spawn_until_stopped(run(
            events,
            Webhooks(self.clone()),
            self.metrics.pusher_webhook.clone(),
            Terms::default(),
        ));
    }
}

/// The apps and upstreams of the settings in force, for the sender.
struct Webhooks(AppState);

impl Destination for Webhooks {
    fn app(&self, id: &str) -> Option<Arc<App>> {
        self.0
            .settings()
            .pusher
            .by_id(id)
            .filter(|app| app.config.webhook.is_some())
            .cloned()
    }

    fn post(
        &self,
        app: &App,
        headers: HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, Result<StatusCode, String>> {
        let hook = app.config.webhook.as_ref();
        let url = hook.map(|h| h.url.clone()).unwrap_or_default();
        let name = hook
            .and_then(|h| h.upstream.clone())
            .unwrap_or_else(|| DEFAULT_UPSTREAM.to_owned());
        let upstream = self.0.settings().upstreams.get(&name).cloned();
        Box::pin(async move {
            match upstream {
                Some(upstream) => post_through(upstream, url, headers, body).await,
                None => Err(format!("no upstream named {name:?}")),
            }
        })
    }

    fn unqueued(&self) -> u64 {
        self.0.app_events.dropped()
    }
}
