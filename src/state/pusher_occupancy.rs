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

use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

/// Pusher subscriptions per (app id, hub channel) on this instance.
#[derive(Default)]
pub struct Occupancy {
    counts: DashMap<(Arc<str>, Arc<str>), usize>,
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
