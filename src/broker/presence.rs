//! Presence: who is in a channel whose rule says `presence: true`.
//!
//! A member is a token subject with at least one connection subscribed to
//! the channel. Joining (first connection) and leaving (last connection gone,
//! after `realtime.presence_grace`) are published into the channel as
//! `presence` events, `{"action":"join"|"leave","subject":…}` (with
//! `"info"` when the member has some: a Pusher presence member's
//! `user_info`), through the broker like any message. The grace period means a reconnect does not make
//! a member flap, and a vanished client is gone once it expires: no ghosts.
//!
//! With a broker that spans instances ([`Broker::shared_presence`], the
//! Redis broker: `broker/redis/presence.rs`), membership is shared by every
//! instance: this instance keeps its local members'
//! entries alive every third of the grace period, and the grace period is the
//! entries' expiry, so a crashed instance's members disappear within it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use crate::broker::{Broker, HistoryPolicy, Publish};
use crate::lifecycle::Lifecycle;

#[derive(Default)]
struct Member {
    connections: u32,
    /// Bumped on every change, so a stale leave timer knows it lost the race.
    generation: u64,
    /// What the member shows others (a Pusher member's `user_info` JSON).
    info: Option<Arc<str>>,
}

/// A member and what it shows others (JSON text), for protocols that list
/// members with their details (Pusher's presence channels).
pub type MemberInfo = (String, Option<String>);

/// Told of every join and leave this instance announces (`true`: joined),
/// once per member across instances: what reports members to an app's
/// webhook (`state.rs`).
pub type Observer = Box<dyn Fn(&Arc<str>, &str, bool) + Send + Sync>;

pub struct Presence {
    broker: Arc<dyn Broker>,
    observer: std::sync::OnceLock<Observer>,
    /// Whether the broker shares membership across instances (fixed for
    /// the broker's life, so asked once).
    shared: bool,
    members: Mutex<HashMap<Arc<str>, HashMap<String, Member>>>,
    /// Joins, leave timers and announcements run in its last stage: the
    /// connections that drain still join and leave.
    lifecycle: Lifecycle,
}

impl Presence {
    pub fn new(broker: Arc<dyn Broker>, lifecycle: Lifecycle) -> Arc<Presence> {
        Arc::new(Presence {
            observer: std::sync::OnceLock::new(),
            shared: broker.shared_presence().is_some(),
            broker,
            members: Mutex::new(HashMap::new()),
            lifecycle,
        })
    }

    /// Set the one observer of announced joins and leaves (later calls are
    /// ignored).
    pub fn observe(&self, observer: Observer) {
        let _ = self.observer.set(observer);
    }

    /// A connection of `subject` joined `channel`, showing `info` (JSON
    /// text) to the other members.
    pub fn join(
        self: &Arc<Self>,
        channel: &Arc<str>,
        subject: &str,
        info: Option<&Arc<str>>,
        history: HistoryPolicy,
        grace: Duration,
    ) {
        let Some((connections, generation)) = self.count_in(channel, subject, info) else {
            return;
        };
        let info = info.cloned();
        if self.shared {
            if connections == 1 {
                let this = self.clone();
                let (channel, subject) = (channel.clone(), subject.to_string());
                self.lifecycle.spawn_until_stopped(async move {
                    let Some(shared) = this.broker.shared_presence() else {
                        return;
                    };
                    match shared
                        .join(&channel, &subject, info.as_deref(), grace)
                        .await
                    {
                        Ok(true) => {
                            this.announce(&channel, &subject, info.as_deref(), "join", history)
                        }
                        Ok(false) => {}
                        Err(error) => tracing::warn!(%error, "presence join not shared"),
                    }
                });
            }
            return;
        }
        // A member still in its grace period (connections 0, kept) is not new.
        if connections == 1 && generation == 1 {
            self.announce(channel, subject, info.as_deref(), "join", history);
        }
    }

    /// Count one more local connection of `subject` in `channel`; returns the
    /// member's connections and generation after the change.
    fn count_in(
        &self,
        channel: &Arc<str>,
        subject: &str,
        info: Option<&Arc<str>>,
    ) -> Option<(u32, u64)> {
        let mut all = self.members.lock();
        let member = all
            .entry(channel.clone())
            .or_default()
            .entry(subject.to_string())
            .or_default();
        member.connections += 1;
        member.generation += 1;
        if info.is_some() {
            member.info = info.cloned();
        }
        Some((member.connections, member.generation))
    }

    /// A connection of `subject` left `channel`; the member leaves after `grace`
    /// unless it comes back.
    pub fn leave(
        self: &Arc<Self>,
        channel: &Arc<str>,
        subject: &str,
        grace: Duration,
        history: HistoryPolicy,
    ) {
        if self.shared {
            // Stop refreshing: the shared entry expires after `grace` unless
            // this or another instance still holds the subject.
            {
                let mut all = self.members.lock();
                if let Some(members) = all.get_mut(channel) {
                    if let Some(m) = members.get_mut(subject) {
                        m.connections = m.connections.saturating_sub(1);
                        if m.connections == 0 {
                            members.remove(subject);
                        }
                    }
                    if members.is_empty() {
                        all.remove(channel);
                    }
                }
            }
            return;
        }
        let generation = {
            let mut all = self.members.lock();
            let Some(member) = all.get_mut(channel).and_then(|m| m.get_mut(subject)) else {
                return;
            };
            member.connections = member.connections.saturating_sub(1);
            member.generation += 1;
            if member.connections > 0 {
                return;
            }
            member.generation
        };
        let this = self.clone();
        let channel = channel.clone();
        let subject = subject.to_string();
        self.lifecycle.spawn_until_stopped(async move {
            tokio::time::sleep(grace).await;
            let gone = {
                let mut all = this.members.lock();
                let Some(members) = all.get_mut(&channel) else {
                    return;
                };
                let still_gone = members
                    .get(&subject)
                    .is_some_and(|m| m.connections == 0 && m.generation == generation);
                if still_gone {
                    members.remove(&subject);
                    if members.is_empty() {
                        all.remove(&channel);
                    }
                }
                still_gone
            };
            if gone {
                this.announce(&channel, &subject, None, "leave", history);
            }
        });
    }

    /// Current members of `channel`, sorted (on every instance when shared).
    pub async fn list(&self, channel: &str) -> Vec<String> {
        if let Some(shared) = self.broker.shared_presence() {
            return shared.list(channel).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "presence list unavailable");
                Vec::new()
            });
        }
        self.list_local(channel)
    }

    /// Keep shared entries alive and announce the leaves that expired, every
    /// third of `grace()` until the gateway stops; `history` gives a channel's policy for
    /// the leave events. Does nothing when membership is local.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        grace: impl Fn() -> Duration + Send + 'static,
        history: impl Fn(&str) -> HistoryPolicy + Send + 'static,
    ) {
        if !self.shared {
            return;
        }
        let this = self.clone();
        self.lifecycle.spawn_until_stopped(async move {
            loop {
                let grace = grace();
                let every = (grace / 3).max(Duration::from_millis(50));
                tokio::time::sleep(every).await;
                let local: Vec<(String, String)> = this
                    .members
                    .lock()
                    .iter()
                    .flat_map(|(c, m)| m.keys().map(move |s| (c.to_string(), s.clone())))
                    .collect();
                let Some(shared) = this.broker.shared_presence() else {
                    return;
                };
                match shared.refresh(&local, grace).await {
                    Ok(found) => {
                        for (channel, subject) in found.gone {
                            let channel: Arc<str> = channel.into();
                            let policy = history(&channel);
                            this.announce(&channel, &subject, None, "leave", policy);
                        }
                        // Swept while this instance could not refresh them
                        // (Redis away): joined again as on a first
                        // connection, with what they show and a join.
                        for (channel, subject) in found.missing {
                            let channel: Arc<str> = channel.into();
                            let info = this.local_info(&channel, &subject);
                            match shared
                                .join(&channel, &subject, info.as_deref(), grace)
                                .await
                            {
                                Ok(true) => {
                                    let policy = history(&channel);
                                    this.announce(
                                        &channel,
                                        &subject,
                                        info.as_deref(),
                                        "join",
                                        policy,
                                    );
                                }
                                Ok(false) => {}
                                Err(error) => tracing::debug!(%error, "presence rejoin failed"),
                            }
                        }
                    }
                    Err(error) => tracing::debug!(%error, "presence refresh failed"),
                }
            }
        });
    }

    /// Current members of `channel` with what each shows (on every
    /// instance when shared), sorted by subject.
    pub async fn members(&self, channel: &str) -> Vec<MemberInfo> {
        if let Some(shared) = self.broker.shared_presence() {
            return shared.members(channel).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "presence members unavailable");
                Vec::new()
            });
        }
        let mut out: Vec<MemberInfo> = self
            .members
            .lock()
            .get(channel)
            .map(|m| {
                m.iter()
                    .map(|(s, m)| (s.clone(), m.info.as_deref().map(str::to_owned)))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// What local member `subject` of `channel` shows.
    fn local_info(&self, channel: &str, subject: &str) -> Option<Arc<str>> {
        self.members
            .lock()
            .get(channel)
            .and_then(|m| m.get(subject))
            .and_then(|m| m.info.clone())
    }

    fn list_local(&self, channel: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .members
            .lock()
            .get(channel)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    fn announce(
        &self,
        channel: &Arc<str>,
        subject: &str,
        info: Option<&str>,
        action: &str,
        history: HistoryPolicy,
    ) {
        if let Some(observer) = self.observer.get() {
            observer(channel, subject, action == "join");
        }
        let mut data = serde_json::json!({"action": action, "subject": subject});
        if let Some(info) = info.and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok()) {
            data["info"] = info;
        }
        let Ok(data) = serde_json::value::to_raw_value(&data) else {
            return;
        };
        let publish = Publish {
            channel: channel.clone(),
            event: "presence".into(),
            data,
            key: None,
            history,
            origin: None,
            binary: false,
        };
        let broker = self.broker.clone();
        self.lifecycle.spawn_until_stopped(async move {
            if let Err(error) = broker.publish(publish).await {
                tracing::warn!(%error, "presence event not published");
            }
        });
    }
}
