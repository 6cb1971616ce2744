//! `pusher_internal:subscription_count` for an app that enables
//! `subscription_count`: each subscriber of a public or private channel is
//! told how many Pusher subscriptions the channel has when it subscribes,
//! and then at most once every `SUBSCRIPTION_COUNT_EVERY` when the count
//! changed, so a crowd joining at once costs each socket one frame a
//! period, not one per join. Presence channels have their member count instead, as on Pusher.
//!
//! The count is this instance's sockets (`state::Occupancy`) plus the other
//! instances' as last shared (`state::ClusterCounts`, with the Redis
//! broker), so it is the channel's count across instances within a period.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Error as WsError;

use super::socket::PusherSocket;
use crate::pusher::ChannelKind;
use crate::pusher::frames;

impl PusherSocket {
    /// Whether this app counts subscriptions of a channel of `kind`.
    fn counts(&self, kind: ChannelKind) -> bool {
        self.app.config.subscription_count && kind != ChannelKind::Presence
    }

    /// The count of `hub` changed here: remembered for the count task,
    /// which shares it with the other instances and reports it.
    pub(super) fn count_changed(&self, hub: &Arc<str>, kind: ChannelKind) {
        if self.counts(kind) {
            self.state.pusher_occupancy.mark_changed(&self.app.id, hub);
        }
    }

    /// The count frame of `hub` for a new subscriber, with the other
    /// instances' counts read first when this instance does not know them.
    pub(super) async fn first_count_frame(&mut self, hub: &Arc<str>) -> Option<String> {
        let kind = self.joined.get(hub)?.kind;
        if self.counts(kind) {
            self.state.read_pusher_counts_of(&self.app.id, hub).await;
        }
        self.count_frame(hub)
    }

    /// The count frame of `hub` if it differs from what this socket was
    /// last told (and now it has been told).
    pub(super) fn count_frame(&mut self, hub: &Arc<str>) -> Option<String> {
        let joined = self.joined.get(hub)?;
        if !self.counts(joined.kind) {
            return None;
        }
        let n = self.state.pusher_occupancy.count(&self.app.id, hub)
            + self.state.pusher_counts.others(&self.app.id, hub);
        if self.counts_sent.get(hub) == Some(&n) {
            return None;
        }
        let frame = frames::subscription_count(&joined.name, n);
        self.counts_sent.insert(hub.clone(), n);
        Some(frame)
    }

    /// Send the counts that changed since the last period.
    pub(super) async fn send_counts(&mut self) -> Result<(), WsError> {
        let joined = &self.joined;
        self.counts_sent.retain(|hub, _| joined.contains_key(hub));
        let hubs: Vec<Arc<str>> = self.joined.keys().cloned().collect();
        for hub in hubs {
            if let Some(frame) = self.count_frame(&hub) {
                self.outgoing.text(&frame);
            }
        }
        self.write().await
    }
}
