//! One kind of rate limit for every key (a subject's messages, an address's
//! connects, …): governor's keyed GCRA limiter with the quota in force, over
//! a store that outlives it.
//!
//! governor fixes a limiter's quota when it is built, so a reload builds a
//! new limiter over the same [`SharedStore`] and swaps it in; checks read the
//! limiter in force through an `ArcSwap`, without a lock. What keys have
//! spent is in the store, so it carries over: the same quota again refunds
//! nothing, a larger burst gives exactly the difference, a smaller one holds
//! a client off until it has drained below, and a new rate drains what is
//! left at the new rate (see `store` for how).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::{InsufficientCapacity, Quota, RateLimiter};

use super::clock::{LimiterClock, MAX_FILL, Time};
use super::store::{SharedStore, StoreView};
use crate::config::RateLimit;

/// Why a check was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Refused; allowed again after this long, if nothing else is spent.
    Wait(Duration),
    /// More than the burst at once: never allowed under this quota.
    Never,
}

type Limiter<K> = RateLimiter<K, StoreView<K>, LimiterClock, NoOpMiddleware<Nanos>>;

/// A limiter with the quota it was built from.
struct Governed<K: Hash + Eq + Clone> {
    limiter: Limiter<K>,
    burst: NonZeroU32,
    /// Nanoseconds per token.
    weight: u64,
}

impl<K: Hash + Eq + Clone> Governed<K> {
    fn build(limit: &RateLimit, store: &SharedStore<K>, time: &Time) -> Self {
        let weight = token_weight(limit);
        // `weight` is at least 1ns, so `with_period` always has a quota.
        let quota = Quota::with_period(Duration::from_nanos(weight))
            .unwrap_or(Quota::per_second(limit.burst))
            .allow_burst(limit.burst);
        let limiter = RateLimiter::new(
            quota,
            store.view(weight, time.clone()),
            LimiterClock::at_origin(time.clone()),
        );
        limiter.clock().start();
        Governed {
            limiter,
            burst: limit.burst,
            weight,
        }
    }
}

/// Nanoseconds per token of `limit`, within 1ns and [`MAX_FILL`] per burst.
fn token_weight(limit: &RateLimit) -> u64 {
    let per_token = limit.rate.per.as_nanos() / u128::from(limit.rate.count.get());
    let most = MAX_FILL / u64::from(limit.burst.get());
    u64::try_from(per_token).unwrap_or(u64::MAX).clamp(1, most)
}

/// One kind of limit, all keys (see the module doc).
pub(super) struct KeyedLimit<K: Hash + Eq + Clone> {
    store: SharedStore<K>,
    time: Time,
    governed: ArcSwap<Governed<K>>,
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    pub(super) fn new(limit: &RateLimit, time: Time) -> Self {
        let store = SharedStore::new();
        let governed = Governed::build(limit, &store, &time);
        KeyedLimit {
            store,
            time,
            governed: ArcSwap::from_pointee(governed),
        }
    }

    /// Put `limit` in force; what keys have spent stays spent.
    pub(super) fn set_quota(&self, limit: &RateLimit) {
        let at = self.time.now();
        let governed = Governed::build(limit, &self.store, &self.time);
        let weight = governed.weight;
        let old = self.governed.swap(Arc::new(governed));
        if old.weight != weight {
            self.store.reweigh(weight, at);
        }
    }

    /// Charge `n` (at least 1) to `key`.
    pub(super) fn check(&self, key: &K, n: u32) -> Result<(), Refusal> {
        let governed = self.governed.load();
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        // Refused before governor is asked: its weight of `n` cells
        // (weight × (n − 1)) stays within the bucket's bounds.
        if n > governed.burst {
            return Err(Refusal::Never);
        }
        match governed.limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let now = governor::clock::Clock::now(governed.limiter.clock());
                Err(Refusal::Wait(not_until.wait_time_from(now)))
            }
            Err(InsufficientCapacity(_)) => Err(Refusal::Never),
        }
    }

    /// Forget keys whose buckets have drained (governor's `retain_recent`).
    pub(super) fn evict_idle(&self) {
        let governed = self.governed.load();
        governed.limiter.retain_recent();
        governed.limiter.shrink_to_fit();
    }

    /// Number of keys held.
    pub(super) fn len(&self) -> usize {
        self.governed.load().limiter.len()
    }
}
