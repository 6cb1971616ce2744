//! When each cache channel last reported a `cache_miss` to its app's
//! webhook, so an empty cache is one webhook per channel per
//! [`CACHE_MISS_WINDOW`] on this instance, however many sockets subscribe
//! to it meanwhile (the application refills the cache once, not once per
//! browser). Bounded: at [`MAX_TRACKED`] channels the oldest report is
//! forgotten for the new one (that channel may report once more early),
//! and every step is O(1): the reports are kept in the order they were
//! made, so the expired ones are taken off the front, never searched for.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// At most one `cache_miss` webhook per channel this often.
pub const CACHE_MISS_WINDOW: Duration = Duration::from_secs(30);

/// The most channels tracked at once.
const MAX_TRACKED: usize = 10_000;

type Key = (Arc<str>, Arc<str>);

/// The last reported miss per (app id, hub channel).
pub struct CacheMisses {
    cap: usize,
    inner: Mutex<Tracked>,
}

#[derive(Default)]
struct Tracked {
    last: HashMap<Key, Instant>,
    /// Every report in the order made; one whose key was reported again
    /// since is stale (its time is not the key's in `last`).
    order: VecDeque<(Key, Instant)>,
}

impl Default for CacheMisses {
    fn default() -> Self {
        CacheMisses::with_cap(MAX_TRACKED)
    }
}

impl Tracked {
    /// Forget the report at the front; whether it was the key's last.
    fn pop_front(&mut self) -> bool {
        let Some((key, at)) = self.order.pop_front() else {
            return false;
        };
        if self.last.get(&key) == Some(&at) {
            self.last.remove(&key);
            return true;
        }
        false
    }
}

impl CacheMisses {
    fn with_cap(cap: usize) -> Self {
        CacheMisses {
            cap: cap.max(1),
            inner: Mutex::default(),
        }
    }

    /// Whether a miss of `hub` now is to be reported (none was within the
    /// window); it is then the last one.
    pub fn report(&self, app: &Arc<str>, hub: &Arc<str>) -> bool {
        let now = Instant::now();
        let mut t = self.inner.lock();
        while t
            .order
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) >= CACHE_MISS_WINDOW)
        {
            t.pop_front();
        }
        let key = (app.clone(), hub.clone());
        if t.last.contains_key(&key) {
            return false;
        }
        while t.last.len() >= self.cap && !t.order.is_empty() {
            t.pop_front();
        }
        t.last.insert(key.clone(), now);
        t.order.push_back((key, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_report_per_channel_per_window() {
        let m = CacheMisses::default();
        let (app, a, b): (Arc<str>, Arc<str>, Arc<str>) = ("1".into(), "a".into(), "b".into());
        assert!(m.report(&app, &a));
        assert!(!m.report(&app, &a));
        assert!(m.report(&app, &b), "each channel its own");
        tokio::time::advance(CACHE_MISS_WINDOW).await;
        assert!(m.report(&app, &a), "again after the window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_forgets_the_oldest_and_still_tracks_the_new() {
        let m = CacheMisses::with_cap(3);
        let app: Arc<str> = "1".into();
        let ch: Vec<Arc<str>> = ["a", "b", "c", "d"].map(Arc::from).to_vec();
        for c in &ch {
            assert!(m.report(&app, c));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // `d` is tracked: no second webhook within the window.
        assert!(!m.report(&app, &ch[3]), "the new channel is tracked");
        assert!(!m.report(&app, &ch[2]) && !m.report(&app, &ch[1]));
        assert!(m.report(&app, &ch[0]), "the oldest was forgotten");
        assert_eq!(m.inner.lock().last.len(), 3);
        // A key reported again leaves a stale entry that expires in order.
        tokio::time::advance(CACHE_MISS_WINDOW).await;
        assert!(m.report(&app, &ch[1]));
        let t = m.inner.lock();
        assert_eq!((t.last.len(), t.order.len()), (1, 1));
    }
}
