//! The pub/sub link: one Redis connection per instance that carries the topics
//! of exactly the channels local clients follow.
//!
//! One task owns the link. It connects (retrying with capped, jittered
//! backoff), adopts the shared epoch, then loops: it reconciles Redis
//! subscriptions with [`Follow`](super::Follow) counts whenever sessions
//! follow or leave a channel, and hands each arriving message to the hub.
//! When the link drops, every followed channel is marked for catch-up; after
//! reconnecting, each is replayed from the last id this instance delivered
//! before live messages are let through (duplicates are skipped by id), so a
//! short outage costs latency, not messages.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use tokio_util::sync::CancellationToken;

use super::{BrokerError, RedisBroker, unavailable};
use crate::broker::Replay;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long an instance stays subscribed to a channel nobody follows any more.
const LINGER: Duration = Duration::from_secs(2);
/// Catch-up replays take whatever history is still there, whatever its age.
const CATCH_UP_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

pub(super) async fn run(broker: Weak<RedisBroker>, shutdown: CancellationToken) {
    let mut delay = BACKOFF_MIN;
    let mut relink = false;
    loop {
        let Some(b) = broker.upgrade() else { return };
        match b.open().await {
            Ok((sink, stream)) => {
                delay = BACKOFF_MIN;
                tracing::info!(relink, "redis link up");
                b.serve(sink, stream, relink, &shutdown).await;
                b.linked.store(false, Ordering::Release);
                relink = true;
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!("redis link lost; reconnecting");
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "redis unavailable");
            }
        }
        drop(b);
        // Full jitter: many instances restarting together do not stampede.
        let pause = delay.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        delay = (delay * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

impl RedisBroker {
    async fn open(&self) -> Result<(PubSubSink, PubSubStream), BrokerError> {
        if self.commands.load().is_none() {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(super::COMMAND_TIMEOUT))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                .map_err(unavailable)?;
            self.commands.store(Some(manager.into()));
        }
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| unavailable("connect timed out"))?
            .map_err(unavailable)?;
        self.establish_epoch().await?;
        Ok(pubsub.split())
    }

    async fn serve(
        &self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        relink: bool,
        shutdown: &CancellationToken,
    ) {
        {
            let mut follows = self.follows.lock();
            for f in follows.values_mut() {
                f.subscribed = false;
                f.catch_up = relink && (f.last > 0 || f.base > 0);
            }
        }
        self.linked.store(true, Ordering::Release);
        let mut dirty = true;
        let mut tick = tokio::time::interval(LINGER / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if dirty {
                dirty = false;
                if let Err(error) = self.reconcile(&mut sink).await {
                    tracing::warn!(%error, "redis subscription update failed");
                    return;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => dirty = true,
                // Lingering subscriptions expire.
                _ = tick.tick() => dirty = true,
                msg = stream.next() => match msg {
                    Some(msg) => self.deliver(msg.get_channel_name(), msg.get_payload_bytes()),
                    None => return,
                },
            }
        }
    }

    /// Bring Redis subscriptions in line with what local sessions follow.
    async fn reconcile(&self, sink: &mut PubSubSink) -> Result<(), BrokerError> {
        let (add, remove) = {
            let mut follows = self.follows.lock();
            follows.retain(|_, f| {
                f.waiters.retain(|w| !w.is_closed());
                f.count > 0 || f.subscribed || !f.waiters.is_empty()
            });
            let mut add = Vec::new();
            let mut remove = Vec::new();
            for (name, f) in follows.iter_mut() {
                if f.count > 0 && !f.subscribed {
                    add.push(name.clone());
                } else if f.count == 0
                    && f.subscribed
                    && f.idle_since.is_none_or(|t| t.elapsed() >= LINGER)
                {
                    // Cleared before the UNSUBSCRIBE goes out, so a session
                    // following again meanwhile waits for a fresh SUBSCRIBE.
                    f.subscribed = false;
                    remove.push(name.clone());
                }
            }
            (add, remove)
        };
        if !remove.is_empty() {
            let topics: Vec<String> = remove.iter().map(|c| self.keys.topic(c)).collect();
            self.call(sink.unsubscribe(topics)).await?;
            {
                let mut follows = self.follows.lock();
                for name in &remove {
                    if let Some(f) = follows.get(name) {
                        if f.count == 0 && !f.subscribed && f.waiters.is_empty() {
                            follows.remove(name);
                        } else if f.count > 0 {
                            self.wake.notify_one();
                        }
                    }
                }
            }
        }
        if add.is_empty() {
            return Ok(());
        }
        let topics: Vec<String> = add.iter().map(|c| self.keys.topic(c)).collect();
        self.call(sink.subscribe(topics)).await?;
        let mut catch_up = Vec::new();
        {
            let mut follows = self.follows.lock();
            for name in &add {
                // A follow that failed meanwhile may have removed its entry:
                // keep one, idle, so the lingering subscription is undone.
                let f = follows.entry(name.clone()).or_default();
                f.subscribed = true;
                for w in f.waiters.drain(..) {
                    let _ = w.send(());
                }
                if std::mem::take(&mut f.catch_up) {
                    catch_up.push((name.clone(), f.last.max(f.base)));
                }
            }
        }
        for (channel, from) in catch_up {
            self.catch_up(&channel, from).await?;
        }
        Ok(())
    }

    /// Deliver what `channel` missed while the link was down, before anything
    /// newer that queued up behind it on the stream.
    async fn catch_up(&self, channel: &std::sync::Arc<str>, from: u64) -> Result<(), BrokerError> {
        match self
            .replay_checked(channel, from, CATCH_UP_TTL, usize::MAX)
            .await?
        {
            Replay::Messages(msgs) => {
                tracing::debug!(%channel, count = msgs.len(), "caught up after relink");
                for m in msgs {
                    let fresh = match self.follows.lock().get_mut(channel) {
                        Some(f) if m.seq > f.last => {
                            f.last = m.seq;
                            true
                        }
                        _ => false,
                    };
                    if fresh {
                        self.hub.fanout(&m);
                    }
                }
            }
            Replay::Gap => {
                tracing::warn!(%channel, "history no longer covers the outage: subscribers get a reset");
                self.hub.lost(channel);
            }
        }
        Ok(())
    }
}
