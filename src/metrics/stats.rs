//! The gateway's live counters: connections per transport, messages
//! published and delivered, evictions. Plain atomics that the hot paths bump
//! and `/stats`, `/readyz`, the dashboard and `/metrics` read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Live counters, read by `/stats`, `/readyz` and tests.
#[derive(Default, Debug)]
pub struct Stats {
    pub connections: AtomicUsize,
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

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.pick)(&self.stats).fetch_sub(1, Ordering::Relaxed);
    }
}
