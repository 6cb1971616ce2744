//! A rate per address for a part of the gateway outside the client limits:
//! the session checks' low rate of unknown credentials (`session_auth`).
//!
//! It is the same governor keyed limiter as every other rate (`keyed`), so
//! it refills by GCRA, keeps what addresses spent over a quota change (the
//! quota is read at each check from the configuration in force, and put in
//! force when it differs: a reload refunds nothing), and forgets idle
//! addresses with governor's `retain_recent` rather than a sweep on the
//! checking path.

use parking_lot::Mutex;
use std::net::IpAddr;
use std::time::Duration;

use super::address_key;
use super::clock::Time;
use super::keyed::{KeyedLimit, Refusal};
use crate::config::RateLimit;

/// One address's rate, IPv6 keyed by its /64 (`address_key`).
pub(crate) struct AddressRate {
    limit: KeyedLimit<IpAddr>,
    /// The quota the limiter was last built with.
    quota: Mutex<RateLimit>,
}

impl AddressRate {
    pub(crate) fn new(quota: &RateLimit) -> AddressRate {
        AddressRate::with_time(quota, Time::real())
    }

    /// On a clock a test moves by hand.
    #[cfg(test)]
    pub(crate) fn manual(quota: &RateLimit, clock: governor::clock::FakeRelativeClock) -> Self {
        AddressRate::with_time(quota, Time::Manual(clock))
    }

    fn with_time(quota: &RateLimit, time: Time) -> AddressRate {
        AddressRate {
            limit: KeyedLimit::new(quota, time),
            quota: Mutex::new(*quota),
        }
    }

    /// Charge one to `addr` under `quota`; `Err` is how long until one more
    /// would be allowed.
    pub(crate) fn check(&self, addr: IpAddr, quota: &RateLimit) -> Result<(), Duration> {
        {
            let mut in_force = self.quota.lock();
            if *in_force != *quota {
                self.limit.set_quota(quota);
                *in_force = *quota;
            }
        }
        match self.limit.check(&address_key(addr), 1) {
            Ok(()) => Ok(()),
            Err(Refusal::Wait(after)) => Err(after),
            // One is never more than a burst (at least 1): not reached.
            Err(Refusal::Never) => Err(Duration::from_secs(1)),
        }
    }

    /// Forget addresses whose buckets have refilled.
    pub(crate) fn evict_idle(&self) {
        self.limit.evict_idle();
    }

    /// Addresses held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.limit.len()
    }
}
