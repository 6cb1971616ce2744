//! When each cache channel last reported a `cache_miss` to its app's
//! webhook, so an empty cache is one webhook per channel per
//! [`CACHE_MISS_WINDOW`] on this instance, however many sockets subscribe
//! to it meanwhile (the application refills the cache once, not once per
//! browser). Bounded: past [`MAX_TRACKED`] channels the expired entries are
//! dropped, and if none are, the miss is reported without being tracked.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

/// At most one `cache_miss` webhook per channel this often.
pub const CACHE_MISS_WINDOW: Duration = Duration::from_secs(30);

/// The most channels tracked at once.
const MAX_TRACKED: usize = 10_000;

/// The last reported miss per (app id, hub channel).
#[derive(Default)]
pub struct CacheMisses {
    last: DashMap<(Arc<str>, Arc<str>), Instant>,
}

impl CacheMisses {
    /// Whether a miss of `hub` now is to be reported (none was within the
    /// window); it is then the last one.
    pub fn report(&self, app: &Arc<str>, hub: &Arc<str>) -> bool {
        let now = Instant::now();
        if self.last.len() >= MAX_TRACKED {
            self.last
                .retain(|_, at| now.duration_since(*at) < CACHE_MISS_WINDOW);
        }
        let key = (app.clone(), hub.clone());
        if let Some(at) = self.last.get(&key) {
            if now.duration_since(*at) < CACHE_MISS_WINDOW {
                return false;
            }
        }
        if self.last.len() < MAX_TRACKED {
            self.last.insert(key, now);
        }
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
}
