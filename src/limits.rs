//! Rate and connection limits: what clients have spent and hold, kept for the
//! gateway's whole life, checked against the quotas in force now.
//!
//! The state (buckets, connection counts) outlives every reload; a reload only
//! hands in new quotas ([`Limits::set_policy`]), which the next check reads.
//! So a reload changes quotas, never what was spent: a client at its
//! connection cap stays refused, a drained bucket stays drained.
//!
//! The rates are governor's keyed GCRA limiters (`keyed`), one per kind of
//! limit, each rebuilt with the new quota at a reload over a store that
//! outlives it (`store`), on one time line (`clock`).
//!
//! Who is counted where ([`ClientKey`]):
//! - an authenticated subject under `per_client` (`connections`, `messages`,
//!   `subscribes`), wherever it connects from;
//! - an anonymous client by its address under `per_ip` (`connections`,
//!   `subscribes`), sized for an office behind one NAT address. The frames
//!   and requests an anonymous client sends are charged to the
//!   `per_client.messages` quota per TCP connection: the address may be a
//!   whole office, and what one address can send in all is already bounded
//!   by `per_ip.connections` and `per_ip.connects`.
//!
//! New TCP connections per address (`per_ip.connects`; past it, requests
//! that resume with their cursor under `per_ip.resumes`), admin publishes per
//! admin key (`publish`) and the gateway's total (`max_connections`) complete
//! the set. Checks never wait: over a limit is an immediate refusal with the
//! time after which a retry can succeed.

mod address_rate;
mod app_rate;
mod clock;
mod keyed;
mod store;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config;
pub(crate) use address_rate::AddressRate;
use clock::Time;
use keyed::{KeyedLimit, Refusal};

/// Which limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Messages,
    Subscribes,
    Connects,
    Publish,
    Connections,
    MaxConnections,
    Resumes,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Messages => "messages",
            Kind::Subscribes => "subscribes",
            Kind::Connects => "connects",
            Kind::Publish => "publish",
            Kind::Connections => "connections",
            Kind::MaxConnections => "max_connections",
            Kind::Resumes => "resumes",
        }
    }
}

/// A refusal: which limit, and when a retry may succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub kind: Kind,
    pub retry_after: Duration,
}

/// Whom a realtime request is charged to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A token or session subject: `per_client`.
    Subject(Arc<str>),
    /// No subject: `per_ip` by address; messages per connection.
    Anonymous { addr: IpAddr, conn: u64 },
}

/// A key in the message limit or the connection counts; the variants keep a
/// subject that looks like an address apart from the address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Subject(Arc<str>),
    Addr(IpAddr),
    Conn(u64),
}

impl ClientKey {
    /// Whose message bucket.
    fn sender(&self) -> Key {
        match self {
            ClientKey::Subject(s) => Key::Subject(s.clone()),
            ClientKey::Anonymous { conn, .. } => Key::Conn(*conn),
        }
    }

    /// Whose connection count.
    fn holder(&self) -> Key {
        match self {
            ClientKey::Subject(s) => Key::Subject(s.clone()),
            ClientKey::Anonymous { addr, .. } => Key::Addr(address_key(*addr)),
        }
    }
}

/// The address an anonymous client is counted under: IPv4 as it is (also
/// when it arrives IPv4-mapped on an IPv6 listener), IPv6 by its /64, the
/// block one host or one customer line is given, so a host cannot present
/// a fresh address for every connection.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

pub struct Limits {
    policy: ArcSwap<config::Limits>,
    messages: KeyedLimit<Key>,
    /// Subscribes of subjects (`per_client`) and of anonymous addresses
    /// (`per_ip`): two quotas, so two limiters, each over its own store.
    subject_subscribes: KeyedLimit<Arc<str>>,
    address_subscribes: KeyedLimit<IpAddr>,
    connects: KeyedLimit<IpAddr>,
    /// Resumes past `connects` (`per_ip.resumes`; `transport::resume`).
    resumes: KeyedLimit<IpAddr>,
    publish: KeyedLimit<String>,
    /// Signed Pusher API requests per app id, on the `publish` quota.
    pusher_api: KeyedLimit<Arc<str>>,
    /// Mercure publishes per token subject, else per address, on the
    /// `publish` quota.
    mercure_publish: KeyedLimit<Key>,
    /// … or on the app's own `api_rate`.
    app_api: app_rate::AppRates,
    open: Mutex<HashMap<Key, u32>>,
}

impl Limits {
    pub fn new(policy: &config::Limits) -> Arc<Limits> {
        Arc::new(Self::with_time(policy, Time::real()))
    }

    fn with_time(policy: &config::Limits, time: Time) -> Limits {
        Limits {
            policy: ArcSwap::from_pointee(policy.clone()),
            messages: KeyedLimit::new(&policy.per_client.messages, time.clone()),
            subject_subscribes: KeyedLimit::new(&policy.per_client.subscribes, time.clone()),
            address_subscribes: KeyedLimit::new(&policy.per_ip.subscribes, time.clone()),
            connects: KeyedLimit::new(&policy.per_ip.connects, time.clone()),
            resumes: KeyedLimit::new(&policy.per_ip.resumes, time.clone()),
            publish: KeyedLimit::new(&policy.publish, time.clone()),
            pusher_api: KeyedLimit::new(&policy.publish, time.clone()),
            mercure_publish: KeyedLimit::new(&policy.publish, time.clone()),
            app_api: app_rate::AppRates::new(time),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Put new quotas in force (on reload); what was spent stays spent.
    pub fn set_policy(&self, policy: &config::Limits) {
        self.policy.store(Arc::new(policy.clone()));
        self.messages.set_quota(&policy.per_client.messages);
        self.subject_subscribes
            .set_quota(&policy.per_client.subscribes);
        self.address_subscribes.set_quota(&policy.per_ip.subscribes);
        self.connects.set_quota(&policy.per_ip.connects);
        self.resumes.set_quota(&policy.per_ip.resumes);
        self.publish.set_quota(&policy.publish);
        self.pusher_api.set_quota(&policy.publish);
        self.mercure_publish.set_quota(&policy.publish);
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        limit: &KeyedLimit<K>,
        key: &K,
        n: usize,
        kind: Kind,
    ) -> Result<(), Limited> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        match limit.check(key, n) {
            Ok(()) => Ok(()),
            Err(Refusal::Wait(retry_after)) => Err(Limited { kind, retry_after }),
            // More than the burst can ever allow at once.
            Err(Refusal::Never) => Err(Limited {
                kind,
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// One frame or request from `client`.
    pub fn message(&self, client: &ClientKey) -> Result<(), Limited> {
        Self::check(&self.messages, &client.sender(), 1, Kind::Messages)
    }

    /// `n` channel subscribes by `client`.
    pub fn subscribe(&self, client: &ClientKey, n: usize) -> Result<(), Limited> {
        match client {
            ClientKey::Subject(s) => Self::check(&self.subject_subscribes, s, n, Kind::Subscribes),
            ClientKey::Anonymous { addr, .. } => Self::check(
                &self.address_subscribes,
                &address_key(*addr),
                n,
                Kind::Subscribes,
            ),
        }
    }

    /// A new TCP connection from `ip`.
    pub fn connect(&self, ip: IpAddr) -> Result<(), Limited> {
        Self::check(&self.connects, &address_key(ip), 1, Kind::Connects)
    }

    /// A connection from `ip` over `per_ip.connects` that resumes: charged
    /// to the address's allowance for returning clients instead.
    pub fn resume(&self, ip: IpAddr) -> Result<(), Limited> {
        Self::check(&self.resumes, &address_key(ip), 1, Kind::Resumes)
    }

    /// `n` messages published with admin key `key`.
    pub fn publish(&self, key: &str, n: usize) -> Result<(), Limited> {
        Self::check(&self.publish, &key.to_string(), n, Kind::Publish)
    }

    /// One Mercure update from `client`: its subject's, else its
    /// address's, share of the `publish` quota (a publisher is usually a
    /// backend on one address, not a browser).
    pub fn mercure_publish(&self, client: &ClientKey) -> Result<(), Limited> {
        Self::check(&self.mercure_publish, &client.holder(), 1, Kind::Publish)
    }

    /// `n` messages (or one query) of Pusher app `app`'s HTTP API: its own
    /// `quota` (`api_rate`) when it has one, else the `publish` quota, per
    /// app instead of per admin key.
    pub fn pusher_api(
        &self,
        app: &Arc<str>,
        quota: Option<&config::RateLimit>,
        n: usize,
    ) -> Result<(), Limited> {
        let Some(quota) = quota else {
            return Self::check(&self.pusher_api, app, n.max(1), Kind::Publish);
        };
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        self.app_api.check(app, quota, n).map_err(|r| Limited {
            kind: Kind::Publish,
            retry_after: match r {
                Refusal::Wait(after) => after,
                Refusal::Never => Duration::from_secs(1),
            },
        })
    }

    /// `max_connections` in force.
    pub fn max_connections(&self) -> usize {
        self.policy.load().max_connections
    }

    /// Whether the gateway is over `max_connections` with `current` open.
    pub fn at_capacity(&self, current: usize) -> bool {
        current > self.policy.load().max_connections
    }

    /// Take one of `client`'s realtime connection slots, released on drop.
    pub fn open_connection(
        self: &Arc<Self>,
        client: &ClientKey,
    ) -> Result<ConnectionSlot, Limited> {
        let max = {
            let policy = self.policy.load();
            match client {
                ClientKey::Subject(_) => policy.per_client.connections,
                ClientKey::Anonymous { .. } => policy.per_ip.connections,
            }
        };
        let key = client.holder();
        // Plain counts: a panic elsewhere cannot leave them torn.
        let mut open = self.open.lock();
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= max {
            if *n == 0 {
                open.remove(&key);
            }
            return Err(Limited {
                kind: Kind::Connections,
                retry_after: Duration::from_secs(1),
            });
        }
        *n += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            key,
        })
    }

    /// Forget keys whose buckets have drained (bounded state).
    pub fn evict_idle(&self) {
        self.messages.evict_idle();
        self.subject_subscribes.evict_idle();
        self.address_subscribes.evict_idle();
        self.connects.evict_idle();
        self.resumes.evict_idle();
        self.publish.evict_idle();
        self.mercure_publish.evict_idle();
        self.pusher_api.evict_idle();
    }

    /// Number of keys held across rate limits (for tests and stats).
    pub fn tracked_keys(&self) -> usize {
        self.messages.len()
            + self.subject_subscribes.len()
            + self.address_subscribes.len()
            + self.connects.len()
            + self.resumes.len()
            + self.publish.len()
            + self.mercure_publish.len()
            + self.pusher_api.len()
    }
}

/// A held realtime connection slot; gives it back to the same count on drop,
/// whatever reloads came in between.
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    key: Key,
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSlot").finish_non_exhaustive()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
