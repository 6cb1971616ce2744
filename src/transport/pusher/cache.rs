//! Cache channels (`cache-`, `private-cache-`, `private-encrypted-cache-`,
//! `presence-cache-`): a new subscriber gets the channel's last event
//! first, read from the hub's history (the channel's `history` rule, in
//! memory or Redis, so every instance sees the same last event), no older
//! than [`CACHE_TTL`]. The subscription starts before that read, so an
//! event published in between is both read and queued: the live copy of
//! the event sent, or of any older cacheable one, is skipped
//! (`deliver.rs`). Client events and presence announcements are not
//! cached, as on Pusher. With nothing to send, the subscriber gets
//! `pusher:cache_miss` and the app's webhook a `cache_miss`, at most once
//! per channel per window (`state::CacheMisses`).

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Replay;
use crate::hub::Message;
use crate::pusher::frames;
use crate::pusher::{AppEvent, is_cache_channel};

use super::socket::PusherSocket;

/// Pusher keeps a cached event up to 30 minutes.
const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

impl PusherSocket {
    /// The frame a new subscriber of cache channel `hub` gets first: its
    /// last event, or `pusher:cache_miss`; None on other channels.
    pub(super) async fn cache_frame(&mut self, hub: &Arc<str>) -> Option<String> {
        let name = self.joined.get(hub)?.name.clone();
        if !is_cache_channel(&name) {
            return None;
        }
        if let Some(frame) = self.last_event(hub, &name).await {
            return Some(frame);
        }
        if self.state.pusher_cache_misses.report(&self.app.id, hub) {
            self.report(AppEvent::CacheMiss {
                channel: name.clone(),
            });
        }
        Some(frames::cache_miss(&name))
    }

    /// The last cacheable event of `hub` in its history, rendered.
    async fn last_event(&mut self, hub: &Arc<str>, name: &str) -> Option<String> {
        let policy = self.settings.rules.history_for(hub);
        let ttl = policy.ttl.min(CACHE_TTL);
        let (len, oldest) = self.state.broker.history_info(hub).await;
        let oldest = oldest.filter(|_| len > 0)?;
        let replay = self
            .state
            .broker
            .replay(hub, oldest.saturating_sub(1), ttl, len)
            .await;
        let Ok(Replay::Messages(messages)) = replay else {
            return None;
        };
        let last = messages
            .iter()
            .rev()
            .find(|m| is_cacheable(m) && m.published_at.elapsed() <= ttl)?;
        let data = serde_json::from_str(last.data_text()).ok()?;
        let frame = frames::channel_event(&last.event, name, data, None);
        // Subscribed before this read: the same event may be queued live.
        if let Some(joined) = self.joined.get_mut(hub) {
            joined.cached = Some((last.epoch, last.seq));
        }
        Some(frame)
    }
}

/// Whether `m` may be a cache channel's last event: client events and
/// presence announcements never are, as on Pusher.
pub(super) fn is_cacheable(m: &Message) -> bool {
    &*m.event != "presence" && !m.event.starts_with("client-")
}
