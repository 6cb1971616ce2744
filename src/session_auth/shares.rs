//! Each address's share of the application's checks.
//!
//! All checks share one `concurrency` bound, so without shares one address
//! sending made-up cookies (each a credential the cache has never seen)
//! could fill every place and have every user's login answered 503. Per
//! address (IPv4, or IPv6 by its /64, `limits::address_key`):
//! - at most `per_address.concurrency` checks in flight. A check past them
//!   waits, in its address's own line, for one of them to end, and only
//!   then for a place among all the checks: so one address holds at most
//!   its share of those places and the rest stay free for other addresses,
//!   while a user whose page names twenty checked channels at once is
//!   served in turns rather than refused. The caller bounds the wait (the
//!   check's `timeout`);
//! - for IPv6, a second line per /48 (a customer's prefix holds 65,536
//!   /64s): at most `per_address.network` checks of all its /64s in flight,
//!   so one customer cannot take every place with many /64s;
//! - at most `per_address.queue` checks waiting in a line; more are
//!   refused at once, so waiting costs bounded memory;
//! - at most `per_address.unknown` checks of credentials nobody has an
//!   answer for (a rate, governor's GCRA through `limits::AddressRate`;
//!   rechecks, and resource checks of a credential the login already
//!   answered for, are not charged): past it, nothing is sent to the
//!   application.
//!
//! Refusals are 429 with `Retry-After`. The counts live across reloads; the
//! terms are read at each check (a changed share resizes the address's
//! line as its checks end).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::RateLimit;
use crate::limits::AddressRate;

/// The `Retry-After` of a refusal for a full line: checks last up to
/// `timeout`, and a second is a fair guess.
pub(super) const FULL_RETRY: Duration = Duration::from_secs(1);

/// Who a check is asked for: the client's address (any form; keyed by
/// `limits::address_key` here) and whether its credential is one nobody
/// has an answer for (`fresh`: charged to the `unknown` rate).
#[derive(Clone, Copy, Debug)]
pub struct Asker {
    pub addr: IpAddr,
    pub fresh: bool,
}

impl Asker {
    /// A client asking for something now (connect, subscribe, publish)
    /// whose credential the application has not vouched for.
    pub fn new(addr: IpAddr) -> Asker {
        Asker { addr, fresh: true }
    }

    /// A live connection asked again at `recheck`: what it holds was
    /// answered before, so it is not charged as unknown.
    pub fn recheck(addr: IpAddr) -> Asker {
        Asker { addr, fresh: false }
    }

    /// Resource checks of a client: not charged as unknown when its
    /// identity is the login's answer for this very credential (`logged_in`),
    /// so a user's page with a hundred checked channels after the cache
    /// expired is not refused; charged otherwise (a made-up cookie asking
    /// about orders is as unknown as one asking who it is).
    pub fn for_resources(addr: IpAddr, logged_in: bool) -> Asker {
        Asker {
            addr,
            fresh: !logged_in,
        }
    }
}

/// What one address may take, from the configuration in force.
#[derive(Clone, Copy, Debug)]
pub struct ShareTerms {
    pub in_flight: usize,
    /// What one IPv6 /48 may have in flight (all its /64s together).
    pub network: usize,
    pub queue: usize,
    pub unknown: RateLimit,
}

/// Whose line: an address (IPv4, or IPv6 by /64), or an IPv6 /48 that
/// holds many of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum LineKey {
    Address(IpAddr),
    Network(Ipv6Addr),
}

impl LineKey {
    /// The /48 an IPv6 address is in; IPv4 has no second level.
    fn network_of(addr: IpAddr) -> Option<LineKey> {
        match addr.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 80) - 1);
                Some(LineKey::Network(Ipv6Addr::from(prefix)))
            }
            IpAddr::V4(_) => None,
        }
    }
}

/// One line: its places, how many there are, and how many checks hold or
/// wait for one.
struct Line {
    places: Arc<Semaphore>,
    /// Places there are (held or free), and how many there should be: a
    /// share made smaller by a reload loses its surplus as checks end.
    size: usize,
    target: usize,
    users: usize,
}

/// The lines and unknown-credential rates, per address.
pub struct Shares {
    lines: Mutex<HashMap<LineKey, Line>>,
    unknown: AddressRate,
}

impl Default for Shares {
    fn default() -> Self {
        Shares {
            lines: Mutex::new(HashMap::new()),
            unknown: AddressRate::new(&crate::config::PerAddress::default().unknown),
        }
    }
}

/// A check's place in a line (holding or waiting); leaves it on drop, and
/// the line goes when nobody is in it.
struct InLine<'a> {
    shares: &'a Shares,
    key: LineKey,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let mut lines = self.shares.lines.lock();
        if let Some(line) = lines.get_mut(&self.key) {
            line.users = line.users.saturating_sub(1);
            if line.users == 0 {
                lines.remove(&self.key);
            }
        }
    }
}

/// A place held in one line, given back on drop (or taken out, when the
/// share has shrunk since).
struct Held<'a> {
    permit: Option<OwnedSemaphorePermit>,
    in_line: InLine<'a>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut lines = self.in_line.shares.lines.lock();
        if let Some(line) = lines.get_mut(&self.in_line.key) {
            if line.size > line.target {
                if let Some(permit) = self.permit.take() {
                    permit.forget();
                    line.size -= 1;
                }
            }
        }
    }
}

/// A place among the address's checks in flight (and its /48's), given
/// back on drop.
pub struct Place<'a> {
    _network: Option<Held<'a>>,
    _address: Held<'a>,
}

impl Shares {
    /// A place for one check of `asker`'s, waiting behind the address's
    /// own checks for one, then (IPv6) behind its /48's (the caller bounds
    /// the wait); `Err` is a refusal (a full line, or over the unknown
    /// rate) with when to try again.
    pub async fn enter(&self, asker: Asker, terms: &ShareTerms) -> Result<Place<'_>, Duration> {
        let addr = crate::limits::address_key(asker.addr);
        let address = self.line_up(LineKey::Address(addr), terms.in_flight, terms.queue)?;
        let network = match LineKey::network_of(asker.addr) {
            Some(key) => Some(self.line_up(key, terms.network, terms.queue)?),
            None => None,
        };
        if asker.fresh {
            self.unknown.check(addr, &terms.unknown)?;
        }
        let address = Self::hold(address).await?;
        let network = match network {
            Some(line) => Some(Self::hold(line).await?),
            None => None,
        };
        Ok(Place {
            _network: network,
            _address: address,
        })
    }

    /// Wait in line for a place.
    async fn hold<'a>(
        (in_line, places): (InLine<'a>, Arc<Semaphore>),
    ) -> Result<Held<'a>, Duration> {
        let permit = places.acquire_owned().await.map_err(|_| FULL_RETRY)?;
        Ok(Held {
            permit: Some(permit),
            in_line,
        })
    }

    /// Join `key`'s line (of `size` places, the terms in force), unless
    /// `size + queue` checks are in it already.
    fn line_up(
        &self,
        key: LineKey,
        size: usize,
        queue: usize,
    ) -> Result<(InLine<'_>, Arc<Semaphore>), Duration> {
        let mut lines = self.lines.lock();
        let line = lines.entry(key).or_insert_with(|| Line {
            places: Arc::new(Semaphore::new(size)),
            size,
            target: size,
            users: 0,
        });
        // A reload changed the share: more places at once; fewer now as
        // far as free ones go, the rest as the held ones are given back.
        line.target = size;
        if line.size < size {
            line.places.add_permits(size - line.size);
            line.size = size;
        } else if line.size > size {
            line.size -= line.places.forget_permits(line.size - size);
        }
        if line.users >= size.saturating_add(queue) {
            if line.users == 0 {
                lines.remove(&key);
            }
            return Err(FULL_RETRY);
        }
        line.users += 1;
        let places = line.places.clone();
        Ok((InLine { shares: self, key }, places))
    }

    /// Forget addresses whose unknown-credential rate has refilled.
    pub fn evict_idle(&self) {
        self.unknown.evict_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn terms(in_flight: usize, queue: usize, count: u32, per: Duration, burst: u32) -> ShareTerms {
        ShareTerms {
            in_flight,
            network: 1000,
            queue,
            unknown: RateLimit::new(count, per, burst),
        }
    }

    fn ample(in_flight: usize, queue: usize) -> ShareTerms {
        terms(in_flight, queue, 1000, Duration::from_secs(1), 1000)
    }

    /// Whether `f` is still waiting, polled once.
    fn pending<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
        use futures_util::FutureExt;
        f.now_or_never().is_none()
    }

    /// Whether `enter` gives a place now (not waiting, not refused).
    async fn now<'a>(shares: &'a Shares, asker: Asker, t: &ShareTerms) -> Option<Place<'a>> {
        use futures_util::FutureExt;
        shares.enter(asker, t).now_or_never().and_then(Result::ok)
    }

    #[tokio::test]
    async fn past_its_share_an_address_waits_its_turn() {
        let shares = Shares::default();
        let t = ample(2, 10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = now(&shares, Asker::new(a), &t).await.unwrap();
        let _second = now(&shares, Asker::new(a), &t).await.unwrap();
        // The third waits (it is not refused) ...
        let mut third = Box::pin(shares.enter(Asker::new(a), &t));
        assert!(pending(third.as_mut()));
        // ... while another address is not held up.
        let _other = now(&shares, Asker::new(b), &t).await.unwrap();
        drop(first);
        assert!(third.await.is_ok());
    }

    #[tokio::test]
    async fn a_full_line_is_refused_and_a_waiter_gone_leaves_it() {
        let shares = Shares::default();
        let t = ample(1, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held = now(&shares, Asker::new(a), &t).await.unwrap();
        let mut waiting = Box::pin(shares.enter(Asker::recheck(a), &t));
        assert!(pending(waiting.as_mut()));
        assert_eq!(
            shares.enter(Asker::new(a), &t).await.err(),
            Some(FULL_RETRY)
        );
        drop(waiting);
        let mut again = Box::pin(shares.enter(Asker::new(a), &t));
        assert!(pending(again.as_mut()));
        drop(held);
        assert!(again.await.is_ok());
        assert!(shares.lines.lock().is_empty(), "an idle line is forgotten");
    }

    #[tokio::test]
    async fn an_ipv6_host_is_one_address_by_its_64() {
        let shares = Shares::default();
        let t = ample(1, 0);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _held = now(&shares, Asker::new(one), &t).await.unwrap();
        assert!(shares.enter(Asker::new(same_64), &t).await.is_err());
        assert!(now(&shares, Asker::new(other_64), &t).await.is_some());
    }

    #[tokio::test]
    async fn the_64s_of_one_48_share_its_places() {
        let shares = Shares::default();
        let t = ShareTerms {
            network: 3,
            ..ample(2, 10)
        };
        // Two /64s of one /48 hold its three places between them ...
        let a: IpAddr = "2001:db8:1:1::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let _a1 = now(&shares, Asker::new(a), &t).await.unwrap();
        let a2 = now(&shares, Asker::new(a), &t).await.unwrap();
        let _b1 = now(&shares, Asker::new(b), &t).await.unwrap();
        // ... so a third /64 of it waits, though its own share is free ...
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let mut waiting = Box::pin(shares.enter(Asker::new(c), &t));
        assert!(pending(waiting.as_mut()));
        // ... while another /48, and an IPv4 address, are served.
        let other: IpAddr = "2001:db8:2:1::1".parse().unwrap();
        assert!(now(&shares, Asker::new(other), &t).await.is_some());
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(now(&shares, Asker::new(v4), &t).await.is_some());
        drop(a2);
        assert!(waiting.await.is_ok());
    }

    #[tokio::test]
    async fn a_reload_resizes_the_share() {
        let shares = Shares::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let one = now(&shares, Asker::new(a), &ample(1, 5)).await.unwrap();
        // Grown: a second place at once.
        let two = now(&shares, Asker::new(a), &ample(2, 5)).await.unwrap();
        // Shrunk back to one: both held, the next waits for both to end.
        let shrunk = ample(1, 5);
        let mut next = Box::pin(shares.enter(Asker::new(a), &shrunk));
        assert!(pending(next.as_mut()));
        drop(one);
        assert!(pending(next.as_mut()));
        drop(two);
        assert!(next.await.is_ok());
    }

    #[tokio::test]
    async fn unknown_credentials_at_a_low_rate_known_ones_free() {
        let clock = FakeRelativeClock::default();
        // 2 per second, 3 at once.
        let t = terms(100, 0, 2, Duration::from_secs(1), 3);
        let shares = Shares {
            lines: Mutex::new(HashMap::new()),
            unknown: AddressRate::manual(&t.unknown, clock.clone()),
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(now(&shares, Asker::new(a), &t).await.is_some());
        }
        let wait = shares.enter(Asker::new(a), &t).await.err().unwrap();
        assert_eq!(wait, Duration::from_millis(500));
        // Rechecks and a logged-in user's resources are not charged;
        // another address has its own rate.
        assert!(now(&shares, Asker::recheck(a), &t).await.is_some());
        assert!(
            now(&shares, Asker::for_resources(a, true), &t)
                .await
                .is_some()
        );
        assert!(
            shares
                .enter(Asker::for_resources(a, false), &t)
                .await
                .is_err()
        );
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(now(&shares, Asker::new(other), &t).await.is_some());
        clock.advance(Duration::from_millis(500));
        assert!(now(&shares, Asker::new(a), &t).await.is_some());
        assert!(shares.enter(Asker::new(a), &t).await.is_err());
        // Idle addresses are forgotten once their rate has refilled.
        clock.advance(Duration::from_secs(10));
        shares.evict_idle();
        assert_eq!(shares.unknown.len(), 0);
    }
}
