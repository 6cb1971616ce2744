//! Whether each serving loop still runs: a heartbeat per loop, the clock it
//! is read against, and the loops' states as `/metrics` shows them.
//!
//! Why: a loop held up by synchronous or CPU-bound work (a bug) looks alive
//! (its thread is there, its queue open), so it kept its turn and up to
//! [`QUEUED_PER_LOOP`](super::QUEUED_PER_LOOP) new connections waited on it,
//! their header timeouts stuck with it. A task on each loop stamps the time
//! every [`BEAT`]; the accept side skips a loop whose stamp is older than
//! [`STALE_AFTER`] for new connections (`Loops::serve`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a loop stamps its heartbeat.
pub(super) const BEAT: Duration = Duration::from_millis(250);

/// A loop whose last stamp is older than this gets no new connection. A
/// loop that runs stamps every 250 ms, late only by its run queue, which a
/// busy loop works through in milliseconds: a second is four beats missed,
/// never a loop that merely works. A loop that cannot run a ready task for
/// a second is stuck, or so far behind that a new connection would wait as
/// long for its first read; and a second is short next to the header and
/// handshake timeouts the connections already queued on it run against.
pub(super) const STALE_AFTER: Duration = Duration::from_secs(1);

/// The time the heartbeats are stamped in: milliseconds since the loops
/// started (an atomic holds it; one clock for the stamp and the look).
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock(Instant);

impl Clock {
    pub(super) fn start() -> Clock {
        Clock(Instant::now())
    }

    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One loop's heartbeat and what the accept side last said of it.
#[derive(Debug, Default)]
pub(super) struct Pulse {
    /// The loop's last stamp ([`Clock::now`]); 0, the start, until its
    /// first.
    beat: AtomicU64,
    /// The accept side logged the loop stalled and not yet running again:
    /// each change is said once.
    said_stalled: AtomicBool,
}

impl Pulse {
    pub(super) fn stale(&self, now: u64, after: Duration) -> bool {
        let after = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(self.beat.load(Ordering::Relaxed)) > after
    }

    /// Whether loop `n` ran within `after` at `now`; a change since the
    /// last look is logged.
    pub(super) fn running(&self, n: usize, now: u64, after: Duration) -> bool {
        let stale = self.stale(now, after);
        if self.said_stalled.load(Ordering::Relaxed) != stale
            && self.said_stalled.swap(stale, Ordering::Relaxed) != stale
        {
            if stale {
                tracing::warn!(
                    serving_loop = n,
                    "serving loop has not run for over {after:?}: new connections go to the \
                     other loops; those queued on it wait for it"
                );
            } else {
                tracing::info!(serving_loop = n, "serving loop runs again");
            }
        }
        !stale
    }
}

/// Runs on loop's own runtime until it ends: stamps its heartbeat every
/// [`BEAT`], which it can only do while the loop runs its tasks.
pub(super) async fn beating(shared: Arc<impl AsRef<Pulse>>, clock: Clock) {
    let mut ticks = tokio::time::interval(BEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        (*shared)
            .as_ref()
            .beat
            .store(clock.now(), Ordering::Relaxed);
    }
}
