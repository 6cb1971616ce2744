//! What each upstream server did, for `/metrics`: answers by status class,
//! failures by kind, the time to an answer head, the time requests waited
//! for a slot (`max_connections`) and those refused one. The counts live on
//! the server, so they last as long as a reload keeps it; `exposition.rs`
//! writes them out per scrape, with the server's state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::limit::Refused;
use crate::metrics::AtomicHistogram;

/// Failure kinds, in `errors` order.
pub(super) const KINDS: [&str; 2] = ["connect", "no_answer"];

/// Refusals of a slot, in `refused` order.
pub(super) const REFUSALS: [&str; 2] = ["full", "timeout"];

/// One server's counts.
pub struct ServerStats {
    pub(super) by_class: [AtomicU64; 5],
    pub(super) errors: [AtomicU64; 2],
    pub(super) latency: AtomicHistogram,
    /// How long requests waited for a slot (0 for a free one).
    pub(super) queue_wait: AtomicHistogram,
    pub(super) refused: [AtomicU64; 2],
}

/// Why a request to a server got no answer to pass on.
#[derive(Clone, Copy)]
pub enum Failure {
    /// The connection could not be made.
    Connect = 0,
    /// Timed out, reset, or an answer that could not be used.
    NoAnswer = 1,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            by_class: Default::default(),
            errors: Default::default(),
            // 100µs .. ~13s, as the gateway-wide proxy latency.
            latency: AtomicHistogram::exponential(0.0001, 2.0, 18),
            // 1ms .. ~33s: a queue's timeout is seconds.
            queue_wait: AtomicHistogram::exponential(0.001, 2.0, 16),
            refused: Default::default(),
        }
    }
}

impl ServerStats {
    /// An answer head with `status` after `elapsed`.
    pub fn answered(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(elapsed);
    }

    pub fn failed(&self, why: Failure) {
        self.errors[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A slot was had after `waited` (only on a server with a limit).
    pub fn waited(&self, waited: Duration) {
        self.queue_wait.observe(waited);
    }

    /// A slot was refused.
    pub fn refused(&self, why: Refused) {
        let at = match why {
            Refused::Full => 0,
            Refused::TimedOut => 1,
        };
        self.refused[at].fetch_add(1, Ordering::Relaxed);
    }
}
