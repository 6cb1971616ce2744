//! The gateway's life from start to stop, in one object: every task it
//! spawns belongs to one of its stages, and [`Lifecycle::drain`] is the one
//! place that knows the order in which they end.
//!
//! Why one object: shutdown used to be three signals (a token for
//! background tasks, an alarm for connections, a token for the broker
//! link) whose order only the entry point knew, and tasks spawned bare ran
//! outside any tracker, so nothing proved they ended with the gateway.
//!
//! The stages, in the order they end:
//! - **until the drain** ([`Lifecycle::spawn_until_drain`]): background
//!   jobs that only serve new work (health checks, sweepers, reload
//!   watches); they are dropped when the drain starts.
//! - **drained** ([`Lifecycle::spawn`], [`Lifecycle::tasks`]): connections,
//!   sessions and the jobs a request leaves behind (taps, the driver of a
//!   backend connection); the drain waits for them, up to its grace.
//! - **until stopped** ([`Lifecycle::spawn_until_stopped`]): what the
//!   draining connections still need, such as the broker link that carries
//!   their publishes and presence; they are dropped after the drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alarm::Alarm;

/// One gateway's stages and their tasks; cheap to clone (each part is a
/// shared handle), so the broker and the upstreams keep one of their own.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// Cancelled when the drain starts (for background tasks and
    /// long-polls, which wait once).
    draining: CancellationToken,
    /// Rung at the same moment: what the SSE, WebSocket and hyper
    /// connection loops listen to, since polling a token locks on every
    /// wake-up (see `alarm.rs`).
    stopping: Arc<Alarm>,
    /// The drained stage: connections, sessions, request jobs.
    tasks: TaskTracker,
    /// The two background stages; empty once the gateway has stopped.
    background: TaskTracker,
    /// Cancelled after the drain: the last stage ends.
    stopped: CancellationToken,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle::new()
    }
}

impl Lifecycle {
    pub fn new() -> Lifecycle {
        Lifecycle {
            draining: CancellationToken::new(),
            stopping: Alarm::new(),
            tasks: TaskTracker::new(),
            background: TaskTracker::new(),
            stopped: CancellationToken::new(),
        }
    }

    /// Cancelled when the drain starts.
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// Rung when the drain starts: the cheap signal for connection loops.
    pub fn stopping(&self) -> &Arc<Alarm> {
        &self.stopping
    }

    /// The drained stage's tracker, for futures spawned elsewhere (on an
    /// event loop, `loops.rs`) that the drain must wait for.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Cancelled once the drain is over.
    pub fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }

    /// Spawn a task the drain waits for (a connection, a session, what a
    /// request leaves behind) on the current runtime.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Spawn a background job that ends when the drain starts: it is
    /// dropped at its next wake-up if it has not returned by then.
    pub fn spawn_until_drain<F>(&self, job: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.background.spawn(until(self.draining.clone(), job));
    }

    /// Spawn a background job the draining connections still need; it is
    /// dropped once the drain is over.
    pub fn spawn_until_stopped<F>(&self, job: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.background.spawn(until(self.stopped.clone(), job));
    }

    /// End the stages in order: stop taking new work and tell realtime
    /// clients to go, wait up to `grace` for the drained stage, then stop
    /// the last stage and wait for the background jobs to be dropped.
    /// Whether every drained task ended within `grace`.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.begin_drain();
        let clean = tokio::time::timeout(grace, self.tasks.wait()).await.is_ok();
        if !clean {
            tracing::warn!(
                ?grace,
                "grace period over; closing the remaining connections"
            );
        }
        self.stopped.cancel();
        self.background.close();
        // Each background job is dropped at its next poll, which the
        // cancellation has just scheduled.
        self.background.wait().await;
        clean
    }

    /// End every stage without waiting (a gateway dropped without a
    /// drain): each task is told as in a drain, and the background jobs
    /// are dropped at their next wake-up.
    pub fn stop_now(&self) {
        if self.stopped.is_cancelled() {
            return;
        }
        self.begin_drain();
        self.stopped.cancel();
        self.background.close();
    }

    /// Stop taking new work and tell every drained task to end.
    fn begin_drain(&self) {
        self.draining.cancel();
        self.stopping.ring();
        self.tasks.close();
    }

    /// Whether the last stage has ended.
    pub fn has_stopped(&self) -> bool {
        self.stopped.is_cancelled() && self.background.is_empty()
    }
}

/// Run `job` until `stop` is cancelled, whichever comes first.
async fn until(stop: CancellationToken, job: impl Future<Output = ()>) {
    tokio::select! {
        biased;
        _ = stop.cancelled() => {}
        _ = job => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stages_end_in_order() {
        let life = Lifecycle::new();
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let forever = std::future::pending::<()>;
        struct Said(
            &'static str,
            tokio::sync::mpsc::UnboundedSender<&'static str>,
        );
        impl Drop for Said {
            fn drop(&mut self) {
                let _ = self.1.send(self.0);
            }
        }
        let said = Said("until drain", tx.clone());
        life.spawn_until_drain(async move {
            let _said = said;
            forever().await
        });
        let said = Said("until stopped", tx.clone());
        life.spawn_until_stopped(async move {
            let _said = said;
            forever().await
        });
        let said = Said("drained", tx.clone());
        let draining = life.draining().clone();
        life.spawn(async move {
            let _said = said;
            draining.cancelled().await;
            tokio::task::yield_now().await;
        });
        drop(tx);
        assert!(life.drain(Duration::from_secs(5)).await);
        assert!(life.has_stopped());
        let mut seen = Vec::new();
        while let Some(s) = order.recv().await {
            seen.push(s);
        }
        assert_eq!(seen, ["until drain", "drained", "until stopped"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_outlives_the_grace_makes_the_drain_unclean() {
        let life = Lifecycle::new();
        life.spawn(std::future::pending::<()>());
        assert!(!life.drain(Duration::from_secs(1)).await);
        assert!(life.stopped().is_cancelled());
    }
}
