//! Each address's share of the application's checks.
//!
//! All checks share one `concurrency` bound, first come first served, so
//! without shares one address sending made-up cookies (each a credential
//! the cache has never seen) could fill every place and have every user's
//! login answered 503. Two bounds per address (IPv4, or IPv6 by its /64,
//! `limits::address_key`) keep it to its own share:
//! - at most `per_address.concurrency` checks in flight: the rest of the
//!   places stay free for other addresses, and a check over the share is
//!   refused at once rather than queued in front of theirs;
//! - at most `per_address.unknown` checks of credentials the cache does not
//!   hold (a GCRA bucket; rechecks of live connections are not charged):
//!   past it, nothing is sent to the application.
//!
//! Both refusals are 429 with `Retry-After`. The counts live across
//! reloads; the quotas are read at each check.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RateLimit;

/// Past this many addresses, buckets that have refilled are dropped.
const SWEEP_AT: usize = 16_384;

/// Who a check is asked for: the client's address (any form; keyed by
/// `limits::address_key` here) and whether its credential is one the cache
/// has no answer for (`fresh`: charged to the `unknown` rate).
#[derive(Clone, Copy, Debug)]
pub struct Asker {
    pub addr: IpAddr,
    pub fresh: bool,
}

impl Asker {
    /// A client asking for something now (connect, subscribe, publish).
    pub fn new(addr: IpAddr) -> Asker {
        Asker { addr, fresh: true }
    }

    /// A live connection asked again at `recheck`: what it holds was
    /// answered before, so it is not charged as unknown.
    pub fn recheck(addr: IpAddr) -> Asker {
        Asker { addr, fresh: false }
    }
}

/// What one address may take, from the configuration in force.
#[derive(Clone, Copy, Debug)]
pub struct ShareTerms {
    pub in_flight: usize,
    pub unknown: RateLimit,
}

/// Places in flight and unknown-credential buckets, per address.
#[derive(Default)]
pub struct Shares {
    in_flight: Mutex<HashMap<IpAddr, usize>>,
    /// Per address, the GCRA's theoretical arrival time.
    unknown: Mutex<HashMap<IpAddr, Instant>>,
}

/// A place among the address's checks in flight, given back on drop.
pub struct Place<'a> {
    shares: &'a Shares,
    addr: IpAddr,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut map = self.shares.in_flight.lock();
        if let Some(n) = map.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.addr);
            }
        }
    }
}

impl Shares {
    /// A place for one check of `asker`'s, or how long until one may be had.
    pub fn enter(&self, asker: Asker, terms: &ShareTerms) -> Result<Place<'_>, Duration> {
        let addr = crate::limits::address_key(asker.addr);
        {
            let mut map = self.in_flight.lock();
            let n = map.entry(addr).or_insert(0);
            if *n >= terms.in_flight {
                // Checks last up to `timeout`; a second is a fair guess.
                return Err(Duration::from_secs(1));
            }
            *n += 1;
        }
        let place = Place { shares: self, addr };
        if asker.fresh {
            self.charge_unknown(addr, &terms.unknown, Instant::now())?;
        }
        Ok(place)
    }

    /// One unknown credential against `addr`'s bucket (GCRA: each check
    /// moves the arrival time on by one interval; `burst` of them may be
    /// ahead of now).
    fn charge_unknown(
        &self,
        addr: IpAddr,
        quota: &RateLimit,
        now: Instant,
    ) -> Result<(), Duration> {
        let interval = quota.rate.per / quota.rate.count.get();
        let tolerance = interval * (quota.burst.get() - 1);
        let mut map = self.unknown.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(&addr).copied().unwrap_or(now).max(now);
        let allowed_from = tat.checked_sub(tolerance).unwrap_or(now);
        if now < allowed_from {
            return Err(allowed_from - now);
        }
        map.insert(addr, tat + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(in_flight: usize, count: u32, per: Duration, burst: u32) -> ShareTerms {
        ShareTerms {
            in_flight,
            unknown: RateLimit::new(count, per, burst),
        }
    }

    #[test]
    fn an_address_holds_its_share_and_no_more() {
        let shares = Shares::default();
        let t = terms(2, 1000, Duration::from_secs(1), 1000);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = shares.enter(Asker::new(a), &t).unwrap();
        let _second = shares.enter(Asker::new(a), &t).unwrap();
        assert!(shares.enter(Asker::new(a), &t).is_err());
        assert!(shares.enter(Asker::recheck(a), &t).is_err());
        // Another address is not held up by it.
        let _other = shares.enter(Asker::new(b), &t).unwrap();
        drop(first);
        assert!(shares.enter(Asker::new(a), &t).is_ok());
    }

    #[test]
    fn an_ipv6_host_is_one_address_by_its_64() {
        let shares = Shares::default();
        let t = terms(1, 1000, Duration::from_secs(1), 1000);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _held = shares.enter(Asker::new(one), &t).unwrap();
        assert!(shares.enter(Asker::new(same_64), &t).is_err());
        assert!(shares.enter(Asker::new(other_64), &t).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_credentials_at_a_low_rate_rechecks_free() {
        let shares = Shares::default();
        // 2 per second, 3 at once.
        let t = terms(100, 2, Duration::from_secs(1), 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(shares.enter(Asker::new(a), &t).is_ok());
        }
        let wait = shares.enter(Asker::new(a), &t).err().unwrap();
        assert_eq!(wait, Duration::from_millis(500));
        // Rechecks are not charged; another address has its own bucket.
        assert!(shares.enter(Asker::recheck(a), &t).is_ok());
        assert!(
            shares
                .enter(Asker::new("192.0.2.9".parse().unwrap()), &t)
                .is_ok()
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(shares.enter(Asker::new(a), &t).is_ok());
        assert!(shares.enter(Asker::new(a), &t).is_err());
    }
}
