//! Token buckets whose quota is read at check time (GCRA-style, never
//! waiting), so that a reload can change a quota without refunding what a
//! client has already spent.
//!
//! Each key keeps only how much of a bucket is in use and when that was last
//! worked out, in fixed-point tokens. A check first drains the bucket at the
//! rate in force now, then asks whether `n` more fit under the burst in force
//! now: a raised burst lets the client spend the difference, a lowered one
//! holds it off until it has drained below, and a reload alone changes
//! nothing. Time is passed in (nanoseconds on the caller's clock), which keeps
//! the arithmetic pure and testable without waiting.
//!
//! Keys live in a few mutex-guarded shards so that unrelated clients rarely
//! meet on one lock; a key whose bucket has drained holds nothing a client
//! could lose and is evicted by [`Buckets::evict_idle`].

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::RateLimit;

/// One token in bucket units (fixed point: partial tokens drain smoothly).
const TOKEN: u128 = 1_000_000_000;
const SHARDS: usize = 16;

/// What a check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Allowed,
    /// Refused; `n` fit again after this long at the current rate.
    Wait(Duration),
    /// More than the burst at once: never allowed under this quota.
    Never,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    /// Tokens in use, in `TOKEN` units.
    used: u128,
    /// When `used` was worked out, in nanoseconds.
    at: u64,
}

impl Level {
    /// `used` after draining at `quota`'s rate until `now`.
    fn drained(self, quota: &RateLimit, now: u64) -> u128 {
        let elapsed = u128::from(now.saturating_sub(self.at));
        let per = quota.rate.per.as_nanos().max(1);
        let freed = elapsed.saturating_mul(u128::from(quota.rate.count.get())) * TOKEN / per;
        self.used.saturating_sub(freed)
    }
}

/// Check `n` tokens against `level` at `now`, updating it when allowed.
fn take(level: &mut Level, n: u32, quota: &RateLimit, now: u64) -> Verdict {
    let cap = u128::from(quota.burst.get()) * TOKEN;
    let need = u128::from(n) * TOKEN;
    level.used = level.drained(quota, now);
    level.at = now.max(level.at);
    if need > cap {
        return Verdict::Never;
    }
    if level.used + need <= cap {
        level.used += need;
        return Verdict::Allowed;
    }
    let excess = level.used + need - cap;
    let per = quota.rate.per.as_nanos().max(1);
    let count = u128::from(quota.rate.count.get()) * TOKEN;
    // Rounded up: retrying after this long succeeds, not one tick before.
    let nanos = excess.saturating_mul(per).div_ceil(count);
    Verdict::Wait(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

/// Per-key buckets of one kind (messages, subscribes, connects, publishes).
pub(super) struct Buckets<K> {
    shards: Box<[Mutex<HashMap<K, Level>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub(super) fn new() -> Self {
        Buckets {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, Level>> {
        // `SHARDS` is small: the modulo fits any usize.
        let i = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        &self.shards[i]
    }

    /// Charge `n` tokens to `key` under `quota` at `now` (nanoseconds).
    pub(super) fn check(&self, key: &K, n: u32, quota: &RateLimit, now: u64) -> Verdict {
        // The map holds plain numbers: a panic elsewhere cannot leave them torn.
        let mut map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(level) = map.get_mut(key) {
            return take(level, n, quota, now);
        }
        let mut level = Level { used: 0, at: now };
        let verdict = take(&mut level, n, quota, now);
        if verdict == Verdict::Allowed {
            map.insert(key.clone(), level);
        }
        verdict
    }

    /// Forget keys whose bucket has drained by `now` under their quota.
    pub(super) fn evict_idle(&self, quota: impl Fn(&K) -> RateLimit, now: u64) {
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|key, level| level.drained(&quota(key), now) > 0);
            map.shrink_to_fit();
        }
    }

    /// Number of keys held.
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    fn rl(count: u32, per: Duration, burst: u32) -> RateLimit {
        RateLimit::new(count, per, burst)
    }

    #[test]
    fn burst_then_steady_rate_with_exact_retry_after() {
        let b = Buckets::new();
        let q = rl(10, Duration::from_secs(1), 3);
        for _ in 0..3 {
            assert_eq!(b.check(&"a", 1, &q, 0), Verdict::Allowed);
        }
        // One token comes back every 100ms.
        assert_eq!(
            b.check(&"a", 1, &q, 0),
            Verdict::Wait(Duration::from_millis(100))
        );
        assert_eq!(
            b.check(&"a", 1, &q, 40 * MS),
            Verdict::Wait(Duration::from_millis(60))
        );
        assert_eq!(b.check(&"a", 1, &q, 100 * MS), Verdict::Allowed);
        assert!(matches!(b.check(&"a", 1, &q, 100 * MS), Verdict::Wait(_)));
        assert_eq!(b.check(&"b", 1, &q, 0), Verdict::Allowed, "own bucket");
        assert_eq!(b.check(&"c", 4, &q, 0), Verdict::Never);
        // Two tokens at once wait for two to drain.
        assert_eq!(
            b.check(&"a", 2, &q, 100 * MS),
            Verdict::Wait(Duration::from_millis(200))
        );
    }

    #[test]
    fn a_changed_quota_keeps_what_was_spent() {
        let b = Buckets::new();
        let old = rl(1, Duration::from_secs(60), 3);
        for _ in 0..3 {
            assert_eq!(b.check(&"a", 1, &old, 0), Verdict::Allowed);
        }
        // Same burst, slower rate: still empty, and the wait is the new rate's.
        let slower = rl(1, Duration::from_secs(3600), 3);
        assert_eq!(
            b.check(&"a", 1, &slower, 0),
            Verdict::Wait(Duration::from_secs(3600))
        );
        // A larger burst gives exactly the difference.
        let bigger = rl(1, Duration::from_secs(3600), 5);
        assert_eq!(b.check(&"a", 1, &bigger, 0), Verdict::Allowed);
        assert_eq!(b.check(&"a", 1, &bigger, 0), Verdict::Allowed);
        assert!(matches!(b.check(&"a", 1, &bigger, 0), Verdict::Wait(_)));
        // A smaller one holds the client off until it drains below it.
        let smaller = rl(1, Duration::from_secs(1), 2);
        assert_eq!(
            b.check(&"a", 1, &smaller, 2 * SEC),
            Verdict::Wait(Duration::from_secs(2))
        );
        assert_eq!(b.check(&"a", 1, &smaller, 4 * SEC), Verdict::Allowed);
    }

    #[test]
    fn drained_keys_are_evicted_and_refusals_store_nothing_new() {
        let b = Buckets::new();
        let q = rl(1000, Duration::from_secs(1), 1);
        for i in 0..1000 {
            assert_eq!(b.check(&i, 1, &q, 0), Verdict::Allowed);
        }
        assert_eq!(b.check(&5000, 2, &q, 0), Verdict::Never);
        assert_eq!(b.len(), 1000);
        b.evict_idle(|_| q, 0);
        assert_eq!(b.len(), 1000, "still in use");
        b.evict_idle(|_| q, MS);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn extreme_quotas_do_not_overflow() {
        let b = Buckets::new();
        let q = rl(u32::MAX, Duration::from_nanos(1), u32::MAX);
        assert_eq!(b.check(&1, u32::MAX, &q, u64::MAX), Verdict::Allowed);
        let slow = rl(1, Duration::from_secs(u64::MAX / 4), 1);
        assert_eq!(b.check(&2, 1, &slow, 0), Verdict::Allowed);
        assert!(matches!(b.check(&2, 1, &slow, u64::MAX), Verdict::Wait(_)));
    }
}
