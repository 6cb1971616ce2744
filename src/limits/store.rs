//! The keyed state of one kind of rate limit (messages, connects, …): one map
//! that lives as long as the gateway, read and written by governor's GCRA
//! through its `StateStore` trait by every limiter a reload builds.
//!
//! What governor keeps per key is the GCRA's theoretical arrival time (TAT):
//! the moment the key's bucket is empty again. A TAT is a time, and what it
//! is worth in tokens depends on the weight of one token (`per / count`) of
//! the quota that wrote it: carried unchanged to a limiter with a slower
//! rate, a drained bucket would come back nearly full (a refund); to a faster
//! one, a client would wait out the old rate's debt. governor's own
//! `DashMapStateStore` keeps nothing but the TAT, so each entry here also
//! keeps the token weight it was written under, and a limiter with another
//! weight first converts it: what was left to drain stays the same number of
//! tokens, draining at the new rate from the conversion on.
//! [`SharedStore::reweigh`] converts every entry at the reload's instant; a
//! check that reaches an entry before it does converts it at its own instant,
//! and the weight kept with each entry keeps any entry from being converted
//! twice. The burst needs no conversion: it is read from the limiter in force
//! at each check.

use std::hash::Hash;
use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;

use super::clock::{MAX_FILL, Time};

/// The most a converted debt may come to, in nanoseconds: what the largest
/// bucket a quota may have takes to drain (see `clock::MAX_FILL`), so that
/// governor's sums of times stay far from `u64` overflow.
pub(super) const MAX_DEBT: u64 = MAX_FILL;

/// One key's state: governor's TAT, and the token weight it was written under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    /// Nanoseconds since the limiters' origin.
    tat: u64,
    /// Nanoseconds per token of the quota that wrote `tat`.
    weight: u64,
}

impl Slot {
    /// `tat` worth the same tokens at `weight`, converted at instant `at`:
    /// what is left to drain after `at` keeps its number of tokens.
    fn reweighed(self, weight: u64, at: u64) -> u64 {
        if self.weight == weight || self.tat <= at {
            // Same weight, or already empty at `at`: worth the same.
            return self.tat;
        }
        let left = u128::from(self.tat - at);
        // Rounded up: a conversion never gives a token back.
        let scaled = (left * u128::from(weight)).div_ceil(u128::from(self.weight.max(1)));
        let scaled = u64::try_from(scaled).unwrap_or(u64::MAX).min(MAX_DEBT);
        at.saturating_add(scaled)
    }
}

/// The map all the limiters of one kind share; cheap to clone.
pub(super) struct SharedStore<K> {
    map: Arc<DashMap<K, Slot>>,
}

impl<K: Hash + Eq + Clone> SharedStore<K> {
    pub(super) fn new() -> Self {
        SharedStore {
            map: Arc::new(DashMap::new()),
        }
    }

    /// The store as a limiter whose tokens weigh `weight` sees it.
    pub(super) fn view(&self, weight: u64, time: Time) -> StoreView<K> {
        StoreView {
            map: self.map.clone(),
            weight,
            time,
        }
    }

    /// Convert every entry to `weight` at instant `at` (a reload's quota).
    pub(super) fn reweigh(&self, weight: u64, at: u64) {
        for mut entry in self.map.iter_mut() {
            let slot = entry.value_mut();
            *slot = Slot {
                tat: slot.reweighed(weight, at),
                weight,
            };
        }
    }

    #[cfg(test)]
    pub(super) fn slot(&self, key: &K) -> Option<Slot> {
        self.map.get(key).map(|s| *s)
    }
}

/// One limiter's handle on a [`SharedStore`]: governor's `StateStore` by
/// delegation to the shared map, converting entries to this limiter's weight.
pub(super) struct StoreView<K> {
    map: Arc<DashMap<K, Slot>>,
    weight: u64,
    time: Time,
}

impl<K> StoreView<K> {
    /// Run governor's decision `f` on `slot`, first converted to this
    /// view's weight (kept even when `f` refuses: the conversion is due).
    fn measure<T, F, E>(&self, slot: &mut Slot, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if slot.weight != self.weight {
            *slot = Slot {
                tat: slot.reweighed(self.weight, self.time.now()),
                weight: self.weight,
            };
        }
        let (outcome, next) = f(Some(Nanos::from(slot.tat)))?;
        slot.tat = next.as_u64();
        Ok(outcome)
    }
}

impl<K: Hash + Eq + Clone> StateStore for StoreView<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // The key's shard stays locked for the GCRA's few operations, so the
        // TAT and its weight change together.
        if let Some(mut slot) = self.map.get_mut(key) {
            return self.measure(slot.value_mut(), f);
        }
        match self.map.entry(key.clone()) {
            Entry::Occupied(mut slot) => self.measure(slot.get_mut(), f),
            Entry::Vacant(vacant) => {
                // A refusal stores nothing: a key appears when it spends.
                let (outcome, tat) = f(None)?;
                vacant.insert(Slot {
                    tat: tat.as_u64(),
                    weight: self.weight,
                });
                Ok(outcome)
            }
        }
    }
}

/// Eviction through governor's `RateLimiter::retain_recent`.
impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for StoreView<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        // A TAT at or before `drop_below` (which is before now) is an empty
        // bucket whatever its weight: the key is like one never seen.
        let drop_below = drop_below.as_u64();
        self.map.retain(|_, slot| slot.tat > drop_below);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
impl Slot {
    pub(super) fn new(tat: u64, weight: u64) -> Slot {
        Slot { tat, weight }
    }
}
