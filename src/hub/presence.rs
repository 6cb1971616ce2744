//! Presence: who is in a channel whose rule says `presence: true`.
//!
//! A member is a token subject with at least one connection subscribed to
//! the channel. Joining (first connection) and leaving (last connection gone,
//! after `realtime.presence_grace`) are published into the channel as
//! `presence` events, `{"action":"join"|"leave","subject":…}`, through the
//! broker like any message. The grace period means a reconnect does not make
//! a member flap, and a vanished client is gone once it expires: no ghosts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::broker::{Broker, HistoryPolicy, Publish};

#[derive(Default)]
struct Member {
    connections: u32,
    /// Bumped on every change, so a stale leave timer knows it lost the race.
    generation: u64,
}

pub struct Presence {
    broker: Arc<dyn Broker>,
    members: Mutex<HashMap<Arc<str>, HashMap<String, Member>>>,
}

impl Presence {
    pub fn new(broker: Arc<dyn Broker>) -> Arc<Presence> {
        Arc::new(Presence {
            broker,
            members: Mutex::new(HashMap::new()),
        })
    }

    /// A connection of `subject` joined `channel`.
    pub fn join(self: &Arc<Self>, channel: &Arc<str>, subject: &str, history: HistoryPolicy) {
        let fresh = {
            let Ok(mut all) = self.members.lock() else {
                return;
            };
            let member = all
                .entry(channel.clone())
                .or_default()
                .entry(subject.to_string())
                .or_default();
            member.connections += 1;
            member.generation += 1;
            // A member still in its grace period (connections 0, kept) is not new.
            member.connections == 1 && member.generation == 1
        };
        if fresh {
            self.announce(channel, subject, "join", history);
        }
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
        let generation = {
            let Ok(mut all) = self.members.lock() else {
                return;
            };
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
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let gone = {
                let Ok(mut all) = this.members.lock() else {
                    return;
                };
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
                this.announce(&channel, &subject, "leave", history);
            }
        });
    }

    /// Current members of `channel`, sorted.
    pub fn list(&self, channel: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .members
            .lock()
            .ok()
            .and_then(|all| all.get(channel).map(|m| m.keys().cloned().collect()))
            .unwrap_or_default();
        out.sort();
        out
    }

    fn announce(&self, channel: &Arc<str>, subject: &str, action: &str, history: HistoryPolicy) {
        let data = serde_json::json!({"action": action, "subject": subject});
        let Ok(data) = serde_json::value::to_raw_value(&data) else {
            return;
        };
        let publish = Publish {
            channel: channel.clone(),
            event: "presence".into(),
            data,
            key: None,
            history,
        };
        let broker = self.broker.clone();
        tokio::spawn(async move {
            if let Err(error) = broker.publish(publish).await {
                tracing::warn!(%error, "presence event not published");
            }
        });
    }
}
