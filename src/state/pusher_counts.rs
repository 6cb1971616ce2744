//! Subscription counts across instances, for apps with
//! `subscription_count: true`: one task per instance that, every
//! `SUBSCRIPTION_COUNT_EVERY`, writes this instance's count of each counted
//! channel where every instance reads it, reads the other instances'
//! counts, and reports the channels whose count changed here to the app's
//! webhook.
//!
//! The shared place is the broker's shared presence (Redis): the count
//! channel of a hub channel has one member per instance, the instance's id,
//! showing its count; entries expire after [`ENTRY_TTL`] unless written
//! again, so a crashed instance's sockets stop counting by themselves. A
//! socket reads the other instances' sum ([`ClusterCounts::others`]) plus
//! this instance's own count at that moment, so its own subscribe is
//! counted at once; the first subscriber of a channel here has the others'
//! counts read for it ([`AppState::read_pusher_counts_of`]). Without shared presence (the memory broker) the others
//! are none.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use super::AppState;
use super::pusher_occupancy::AppChannel;
use crate::pusher::{AppEvent, ChannelKind, SUBSCRIPTION_COUNT_EVERY};

/// How long an instance's written count stands without being written again.
const ENTRY_TTL: Duration = Duration::from_secs(10);

/// What the count channel of a hub channel is called in shared presence:
/// `#` is in no channel name, so no presence channel of pushgate's own
/// clients is ever one (its members would add to the count).
const COUNT_CHANNEL: &str = "pusher-count#";

/// The shared presence channel of `app`'s hub channel `hub`.
fn count_channel(app: &str, hub: &str) -> String {
    format!("{COUNT_CHANNEL}{app}:{hub}")
}

/// The other instances' counts of the channels counted here.
pub struct ClusterCounts {
    /// This instance, as a member of each count channel.
    node: String,
    others: DashMap<AppChannel, usize>,
    started: AtomicBool,
}

impl Default for ClusterCounts {
    fn default() -> Self {
        ClusterCounts {
            node: format!("{:016x}", rand::random::<u64>()),
            others: DashMap::new(),
            started: AtomicBool::new(false),
        }
    }
}

impl ClusterCounts {
    /// The sum of the other instances' counts of `hub` (0 when unknown).
    pub fn others(&self, app: &Arc<str>, hub: &Arc<str>) -> usize {
        self.others
            .get(&(app.clone(), hub.clone()))
            .map_or(0, |n| *n)
    }
}

impl ClusterCounts {
    /// The sum of the counts other instances show in a count channel.
    fn sum_of_others(&self, members: &[crate::broker::presence::MemberInfo]) -> usize {
        members
            .iter()
            .filter(|(node, _)| *node != self.node)
            .filter_map(|(_, info)| info.as_deref()?.parse::<usize>().ok())
            .sum()
    }
}

impl AppState {
    /// Read the other instances' counts of `hub` now, unless known: a
    /// channel with no subscriber here is not among those the count task
    /// reads, so without this the first subscriber here would be told this
    /// instance's count alone until the next period. Once per channel
    /// while it has subscribers here; the task keeps it current after.
    pub async fn read_pusher_counts_of(&self, app: &Arc<str>, hub: &Arc<str>) {
        let key = (app.clone(), hub.clone());
        if self.pusher_counts.others.contains_key(&key) {
            return;
        }
        let Some(shared) = self.broker.shared_presence() else {
            return;
        };
        if let Ok(members) = shared.members(&count_channel(app, hub)).await {
            let others = self.pusher_counts.sum_of_others(&members);
            self.pusher_counts.others.insert(key, others);
        }
    }

    /// Starts the one count task once some app counts subscriptions.
    pub(super) fn start_pusher_counts(&self) {
        let wanted = self
            .settings()
            .pusher
            .iter()
            .any(|app| app.config.subscription_count);
        if !wanted || self.pusher_counts.started.swap(true, Ordering::AcqRel) {
            return;
        }
        self.lifecycle.spawn_until_stopped(run(self.clone()));
    }
}

async fn run(state: AppState) {
    let mut every = tokio::time::interval(SUBSCRIPTION_COUNT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let changed = state.pusher_occupancy.take_changed();
        let counted = counted_channels(&state, &changed);
        share(&state, &counted).await;
        report(&state, &changed);
    }
}

/// This instance's counted channels with their local counts: those with
/// subscribers here, and those that changed (to 0, maybe) since last time.
fn counted_channels(state: &AppState, changed: &[(AppChannel, usize)]) -> Vec<(AppChannel, usize)> {
    let settings = state.settings();
    let counts = |app: &str, hub: &str| {
        settings.pusher.by_id(app).is_some_and(|a| {
            a.config.subscription_count
                && a.pusher_channel(hub)
                    .is_some_and(|name| ChannelKind::of(name) != ChannelKind::Presence)
        })
    };
    let mut seen: HashSet<AppChannel> = HashSet::new();
    let mut out = Vec::new();
    for (key, n) in changed
        .iter()
        .cloned()
        .chain(state.pusher_occupancy.entries())
    {
        if counts(&key.0, &key.1) && seen.insert(key.clone()) {
            out.push((key, n));
        }
    }
    out
}

/// Write this instance's counts and read the others'.
async fn share(state: &AppState, counted: &[(AppChannel, usize)]) {
    let counts = &state.pusher_counts;
    let Some(shared) = state.broker.shared_presence() else {
        counts.others.clear();
        return;
    };
    // Entries added while this runs (a first subscriber's read) are not
    // among these, and are kept.
    let before: Vec<AppChannel> = counts.others.iter().map(|e| e.key().clone()).collect();
    let mut keep = HashSet::new();
    for ((app, hub), n) in counted {
        let channel = count_channel(app, hub);
        let written = shared
            .join(&channel, &counts.node, Some(&n.to_string()), ENTRY_TTL)
            .await;
        if let Err(error) = written {
            tracing::debug!(%error, "subscription count not shared");
            continue;
        }
        let Ok(members) = shared.members(&channel).await else {
            continue;
        };
        let others = counts.sum_of_others(&members);
        let key = (app.clone(), hub.clone());
        counts.others.insert(key.clone(), others);
        keep.insert(key);
    }
    forget_stale(&counts.others, &before, &keep);
}

/// Remove the entries of `before` not in `keep`: channels no longer
/// counted here. Only those: an entry added by
/// [`AppState::read_pusher_counts_of`] during the Redis round-trips must
/// survive, or its first subscriber's count loses the other instances.
fn forget_stale(
    others: &DashMap<AppChannel, usize>,
    before: &[AppChannel],
    keep: &HashSet<AppChannel>,
) {
    for key in before.iter().filter(|key| !keep.contains(*key)) {
        others.remove(key);
    }
}

/// Report the channels whose count changed here, with the count across
/// instances, to the apps whose webhook takes `subscription_count`.
fn report(state: &AppState, changed: &[(AppChannel, usize)]) {
    let settings = state.settings();
    for ((app_id, hub), n) in changed {
        let Some(app) = settings.pusher.by_id(app_id) else {
            continue;
        };
        let wants = app
            .config
            .webhook
            .as_ref()
            .is_some_and(|hook| hook.events.iter().any(|e| e == "subscription_count"));
        if !app.config.subscription_count || !wants {
            continue;
        }
        if let Some(channel) = app.pusher_channel(hub) {
            let event = AppEvent::SubscriptionCount {
                channel: channel.to_owned(),
                subscription_count: n + state.pusher_counts.others(app_id, hub),
            };
            state.app_events.send(&app.id, event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_channel_of_pushgates_own_clients_is_a_count_channel() {
        let name = count_channel("1001", "news");
        assert!(!crate::model::valid_channel(&name), "{name}");
    }

    #[test]
    fn a_share_forgets_only_stale_entries_it_started_with() {
        let key = |hub: &str| -> AppChannel { (Arc::from("1001"), Arc::from(hub)) };
        let others = DashMap::new();
        others.insert(key("kept"), 1);
        others.insert(key("stale"), 2);
        let before = vec![key("kept"), key("stale")];
        // Read for a first subscriber while the share was under way.
        others.insert(key("new"), 3);
        let keep = HashSet::from([key("kept")]);
        forget_stale(&others, &before, &keep);
        assert_eq!(others.get(&key("kept")).map(|n| *n), Some(1));
        assert!(others.get(&key("stale")).is_none(), "no longer counted");
        assert_eq!(others.get(&key("new")).map(|n| *n), Some(3), "kept");
    }
}
