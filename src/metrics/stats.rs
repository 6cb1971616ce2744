//! The gateway's live counters: connections per transport, messages
//! published and delivered, evictions. Plain atomics that the hot paths bump
//! and `/stats`, `/readyz`, the dashboard and `/metrics` read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Live counters, read by `/stats`, `/readyz` and tests.
#[derive(Default, Debug)]
pub struct Stats {
    pub connections: AtomicUsize,
    /// Accepted client connections handed to a serving loop and not yet
    /// taken on by it (neither counted in `connections` yet nor refused).
    pub queued: AtomicUsize,
    pub ws: AtomicUsize,
    pub sse: AtomicUsize,
    pub poll: AtomicUsize,
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub evicted: AtomicU64,
    /// Bytes of proxied bodies held in memory and in temporary files
    /// (request and answer buffering), gateway-wide.
    pub buffered_memory: AtomicUsize,
    pub buffered_disk: AtomicUsize,
    /// The last reload attempt was refused (shown by `/readyz`).
    pub reload_failed: std::sync::atomic::AtomicBool,
    pub next_conn_id: AtomicU64,
    /// The public listener's serving loops, set by its accept loop: how
    /// many run, are stalled or are dead (`/metrics`).
    pub(crate) serving_loops: std::sync::OnceLock<crate::loops::Health>,
}

impl Stats {
    pub fn conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let l = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        let q = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "connections": l(&self.connections),
            "transports": { "ws": l(&self.ws), "sse": l(&self.sse), "poll": l(&self.poll) },
            "messages": { "published": q(&self.published), "delivered": q(&self.delivered) },
            "evicted": q(&self.evicted),
        })
    }
}

/// Increments one of the [`Stats`] gauges for as long as it lives.
pub struct Gauge {
    stats: Arc<Stats>,
    pick: fn(&Stats) -> &AtomicUsize,
}

impl Gauge {
    pub fn enter(stats: &Arc<Stats>, pick: fn(&Stats) -> &AtomicUsize) -> Gauge {
        pick(stats).fetch_add(1, Ordering::Relaxed);
        Gauge {
            stats: stats.clone(),
            pick,
        }
    }
}

impl Gauge {
    /// Take one of at most `max` places on the gauge, or `None` when all are
    /// taken. One compare-and-swap: two callers racing for the last place
    /// cannot both have it, as a load followed by an increment would allow.
    pub fn reserve(
        stats: &Arc<Stats>,
        pick: fn(&Stats) -> &AtomicUsize,
        max: usize,
    ) -> Option<Gauge> {
        pick(stats)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Gauge {
            stats: stats.clone(),
            pick,
        })
    }
}

/// A place under `max_connections` (`stats.connections`), shared by what
/// one connection's life passes through: an HTTP/1.1 connection's place is
/// on each of its requests, so the WebSocket or tunnel an upgrade makes of it
/// keeps the same place (never given back and taken again, a gap another
/// accept could slip through); a WebSocket or tunnel on an HTTP/2 stream
/// gets a place of its own, reserved before it is answered. Released when
/// the last holder drops.
#[derive(Clone)]
pub struct Seat(#[allow(dead_code)] Arc<Gauge>);

impl Seat {
    /// One of at most `max` places, or `None` when the gateway is full.
    pub fn reserve(stats: &Arc<Stats>, max: usize) -> Option<Seat> {
        Gauge::reserve(stats, |s| &s.connections, max).map(|g| Seat(Arc::new(g)))
    }

    /// A place taken whatever the count: for a socket that reached its
    /// session without one on its request (not served by a listener).
    pub fn enter(stats: &Arc<Stats>) -> Seat {
        Seat(Arc::new(Gauge::enter(stats, |s| &s.connections)))
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.pick)(&self.stats).fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_is_reserved_up_to_the_cap_and_given_back_by_its_last_holder() {
        let stats = Arc::new(Stats::default());
        let a = Seat::reserve(&stats, 2).unwrap();
        let b = Seat::reserve(&stats, 2).unwrap();
        assert!(Seat::reserve(&stats, 2).is_none(), "the cap is full");
        assert_eq!(stats.connections.load(Ordering::Relaxed), 2);
        // A clone is the same place: the upgrade keeps its request's.
        let kept = a.clone();
        drop(a);
        assert!(Seat::reserve(&stats, 2).is_none());
        drop(kept);
        let c = Seat::reserve(&stats, 2).unwrap();
        assert_eq!(stats.connections.load(Ordering::Relaxed), 2);
        drop((b, c));
        assert_eq!(stats.connections.load(Ordering::Relaxed), 0);
    }
}
