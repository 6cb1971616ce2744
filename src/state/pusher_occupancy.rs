//! Which Pusher channels this instance's Pusher sockets occupy, counted per
//! app and hub channel, for the `channel_occupied` / `channel_vacated`
//! webhooks.
//!
//! The transitions are decided here, on one entry-locked count per channel,
//! and nowhere else: two sockets subscribing at once cannot both see the
//! channel empty, and pushgate's own subscribers (SSE, WebSocket, poll) on
//! the same hub channel neither hold a Pusher channel occupied nor hide its
//! vacancy. The count is this instance's: with the Redis broker every
//! instance reports its own occupied and vacated. It lives in the live
//! state, so a reload never resets it.
//!
//! The same counts are this instance's part of the `subscription_count` an
//! app may ask for: the channels whose count changed are kept (a bounded
//! set) for the one task that shares them with the other instances and
//! reports them to the webhook, coalesced (`pusher_counts.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::Mutex;

/// The most channels whose count change waits to be reported; past it a
/// change is not kept (its channel's next change is).
const MAX_CHANGED: usize = 100_000;

/// An app id and a hub channel.
pub type AppChannel = (Arc<str>, Arc<str>);

/// Pusher subscriptions per (app id, hub channel) on this instance.
#[derive(Default)]
pub struct Occupancy {
    counts: DashMap<AppChannel, usize>,
    changed: Mutex<HashSet<AppChannel>>,
}

impl Occupancy {
    /// One more subscription of app `app` to `hub`; true when it is the
    /// first (the channel became occupied).
    pub fn enter(&self, app: &Arc<str>, hub: &Arc<str>) -> bool {
        let mut count = self.counts.entry((app.clone(), hub.clone())).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// One subscription fewer; true when it was the last (the channel is
    /// vacated). A leave without an enter changes nothing.
    pub fn leave(&self, app: &Arc<str>, hub: &Arc<str>) -> bool {
        match self.counts.entry((app.clone(), hub.clone())) {
            Entry::Occupied(mut e) if *e.get() > 1 => {
                *e.get_mut() -= 1;
                false
            }
            Entry::Occupied(e) => {
                e.remove();
                true
            }
            Entry::Vacant(_) => false,
        }
    }

    /// Pusher subscriptions of app `app` to `hub` on this instance.
    pub fn count(&self, app: &Arc<str>, hub: &Arc<str>) -> usize {
        self.counts
            .get(&(app.clone(), hub.clone()))
            .map_or(0, |c| *c)
    }

    /// Every channel with Pusher subscriptions here, with its count.
    pub fn entries(&self) -> Vec<(AppChannel, usize)> {
        self.counts
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect()
    }

    /// Note that the count of `hub` changed, for [`Occupancy::take_changed`].
    pub fn mark_changed(&self, app: &Arc<str>, hub: &Arc<str>) {
        let mut changed = self.changed.lock();
        if changed.len() < MAX_CHANGED {
            changed.insert((app.clone(), hub.clone()));
        }
    }

    /// The channels whose count changed since the last call, with their
    /// count now.
    pub fn take_changed(&self) -> Vec<(AppChannel, usize)> {
        let changed = std::mem::take(&mut *self.changed.lock());
        changed
            .into_iter()
            .map(|key| {
                let n = self.counts.get(&key).map_or(0, |c| *c);
                (key, n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_enter_and_the_last_leave_are_transitions() {
        let o = Occupancy::default();
        let (a, b): (Arc<str>, Arc<str>) = ("1".into(), "2".into());
        let hub: Arc<str> = "presence-x".into();
        assert!(o.enter(&a, &hub));
        assert!(!o.enter(&a, &hub));
        assert!(o.enter(&b, &hub), "each app has its own count");
        assert!(!o.leave(&a, &hub));
        assert!(o.leave(&a, &hub));
        assert!(!o.leave(&a, &hub), "no leave past empty");
        assert!(o.enter(&a, &hub), "occupied again");
    }

    #[test]
    fn counts_and_their_changes_are_read_once() {
        let o = Occupancy::default();
        let (a, hub): (Arc<str>, Arc<str>) = ("1".into(), "c".into());
        o.enter(&a, &hub);
        o.enter(&a, &hub);
        o.mark_changed(&a, &hub);
        o.mark_changed(&a, &hub);
        assert_eq!(o.count(&a, &hub), 2);
        assert_eq!(o.take_changed(), vec![((a.clone(), hub.clone()), 2)]);
        assert!(o.take_changed().is_empty(), "coalesced and taken");
        o.leave(&a, &hub);
        o.leave(&a, &hub);
        o.mark_changed(&a, &hub);
        assert_eq!(o.take_changed(), vec![((a, hub), 0)]);
    }

    #[test]
    fn racing_enters_make_one_transition() {
        let o = Arc::new(Occupancy::default());
        let (app, hub): (Arc<str>, Arc<str>) = ("1".into(), "c".into());
        let firsts: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..1000).filter(|_| o.enter(&app, &hub)).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(firsts, 1);
        let lasts = (0..8000).filter(|_| o.leave(&app, &hub)).count();
        assert_eq!(lasts, 1);
    }
}
