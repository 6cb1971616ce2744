//! A server's health as its active checks (`health: { path, interval,
//! timeout, fails, passes }`) found it: in the rotation or out of it, the
//! streak that moves it, and the terms in force.
//!
//! A server that fails `fails` checks in a row (not 2xx within `timeout`, or
//! no connection) leaves the rotation, and comes back after `passes` good
//! ones. The state lives on the [`Server`](super::server::Server), which a
//! reload keeps while it lists the same server, so a reload neither forgets
//! that a server is out nor starts a second task for it; the new terms reach
//! the running task through [`Health::set_terms`]. The task that asks is in
//! `health_check.rs`: this file is the passive state the server holds, so
//! the server does not depend on the code that sends requests to it.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::config;

/// A server's health as its checks found it.
pub struct Health {
    healthy: AtomicBool,
    /// Failures in a row while healthy, passes in a row while not.
    streak: AtomicU32,
    terms: Mutex<Option<config::Health>>,
    /// A task checks this server.
    watched: AtomicBool,
}

impl Health {
    pub fn new(terms: Option<config::Health>) -> Health {
        Health {
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            terms: Mutex::new(terms),
            watched: AtomicBool::new(false),
        }
    }

    /// Whether it is in the rotation as far as its checks go (a server
    /// without checks always is).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(super) fn terms(&self) -> Option<config::Health> {
        self.terms.lock().clone()
    }

    /// The checks a reload put in force; none: the server is in the
    /// rotation again and its task stops.
    pub fn set_terms(&self, terms: Option<config::Health>) {
        if terms.is_none() {
            self.healthy.store(true, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
        }
        *self.terms.lock() = terms;
    }

    /// Count one check; returns the new state when it changed.
    pub(super) fn record(&self, ok: bool, terms: &config::Health) -> Option<bool> {
        let healthy = self.is_healthy();
        if ok == healthy {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if healthy { terms.fails } else { terms.passes };
        if streak < needed.max(1) {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.healthy.store(ok, Ordering::Relaxed);
        Some(ok)
    }

    /// Whether a task was already checking this server; from now on one
    /// is.
    pub(super) fn claim_watch(&self) -> bool {
        self.watched.swap(true, Ordering::SeqCst)
    }

    /// The task checking this server ended.
    pub(super) fn release_watch(&self) {
        self.watched.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn terms(fails: u32, passes: u32) -> config::Health {
        config::Health {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            fails,
            passes,
        }
    }

    #[test]
    fn out_after_fails_in_a_row_back_after_passes() {
        let t = terms(3, 2);
        let h = Health::new(Some(t.clone()));
        assert_eq!(h.record(false, &t), None);
        assert_eq!(h.record(false, &t), None);
        assert_eq!(h.record(true, &t), None, "a pass resets the count");
        assert_eq!(h.record(false, &t), None);
        assert_eq!(h.record(false, &t), None);
        assert_eq!(h.record(false, &t), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.record(true, &t), None);
        assert_eq!(h.record(false, &t), None, "a failure resets the count");
        assert_eq!(h.record(true, &t), None);
        assert_eq!(h.record(true, &t), Some(true));
        assert!(h.is_healthy());
    }

    #[test]
    fn checks_taken_out_put_the_server_back() {
        let t = terms(1, 5);
        let h = Health::new(Some(t.clone()));
        assert_eq!(h.record(false, &t), Some(false));
        h.set_terms(None);
        assert!(h.is_healthy());
    }
}
