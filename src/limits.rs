//! Rate and connection limits (governor's keyed GCRA limiters).
//!
//! A *client* is the token subject when there is one, else the IP. What is
//! limited: frames/requests a client sends (`per_client.messages`), channel
//! subscribes (`per_client.subscribes`), new connections per IP
//! (`per_ip.connects`), admin publishes per admin key (`publish`), realtime
//! connections per client (`per_client.connections`) and in all
//! (`max_connections`). Checks never wait: over the limit is an immediate
//! refusal with the time after which a retry can succeed. Idle keys are
//! evicted periodically so limiter state stays bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config;

/// Which limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Messages,
    Subscribes,
    Connects,
    Publish,
    Connections,
    MaxConnections,
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
        }
    }
}

/// A refusal: which limit, and when a retry may succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub kind: Kind,
    pub retry_after: Duration,
}

fn quota(r: &config::RateLimit) -> Quota {
    let per_one = r.rate.per / r.rate.count.get();
    Quota::with_period(per_one.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(r.burst)
}

pub struct Limits {
    messages: DefaultKeyedRateLimiter<String>,
    subscribes: DefaultKeyedRateLimiter<String>,
    connects: DefaultKeyedRateLimiter<IpAddr>,
    publish: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    per_client_connections: u32,
    open: Mutex<HashMap<String, u32>>,
    max_connections: usize,
}

impl Limits {
    pub fn new(cfg: &config::Limits) -> Arc<Limits> {
        Arc::new(Limits {
            messages: RateLimiter::keyed(quota(&cfg.per_client.messages)),
            subscribes: RateLimiter::keyed(quota(&cfg.per_client.subscribes)),
            connects: RateLimiter::keyed(quota(&cfg.per_ip.connects)),
            publish: RateLimiter::keyed(quota(&cfg.publish)),
            clock: DefaultClock::default(),
            per_client_connections: cfg.per_client.connections,
            open: Mutex::new(HashMap::new()),
            max_connections: cfg.max_connections,
        })
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        n: u32,
        kind: Kind,
    ) -> Result<(), Limited> {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Limited {
                kind,
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
            // More than the burst can ever allow at once.
            Err(_) => Err(Limited {
                kind,
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// One frame or request from `client`.
    pub fn message(&self, client: &str) -> Result<(), Limited> {
        self.check(&self.messages, &client.to_string(), 1, Kind::Messages)
    }

    /// `n` channel subscribes by `client`.
    pub fn subscribe(&self, client: &str, n: usize) -> Result<(), Limited> {
        self.check(
            &self.subscribes,
            &client.to_string(),
            n.min(u32::MAX as usize) as u32,
            Kind::Subscribes,
        )
    }

    /// A new connection from `ip`.
    pub fn connect(&self, ip: IpAddr) -> Result<(), Limited> {
        self.check(&self.connects, &ip, 1, Kind::Connects)
    }

    /// `n` messages published with admin key `key`.
    pub fn publish(&self, key: &str, n: usize) -> Result<(), Limited> {
        self.check(
            &self.publish,
            &key.to_string(),
            n.min(u32::MAX as usize) as u32,
            Kind::Publish,
        )
    }

    /// Whether the gateway is at `max_connections` with `current` open.
    pub fn at_capacity(&self, current: usize) -> bool {
        current > self.max_connections
    }

    /// Take one of `client`'s realtime connection slots, released on drop.
    pub fn open_connection(self: &Arc<Self>, client: &str) -> Result<ConnectionSlot, Limited> {
        let Ok(mut open) = self.open.lock() else {
            return Err(Limited {
                kind: Kind::Connections,
                retry_after: Duration::from_secs(1),
            });
        };
        let n = open.entry(client.to_string()).or_insert(0);
        if *n >= self.per_client_connections {
            return Err(Limited {
                kind: Kind::Connections,
                retry_after: Duration::from_secs(1),
            });
        }
        *n += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            client: client.to_string(),
        })
    }

    /// Forget keys that are back to a full bucket (bounded state).
    pub fn evict_idle(&self) {
        self.messages.retain_recent();
        self.subscribes.retain_recent();
        self.connects.retain_recent();
        self.publish.retain_recent();
        self.messages.shrink_to_fit();
        self.subscribes.shrink_to_fit();
        self.connects.shrink_to_fit();
        self.publish.shrink_to_fit();
    }

    /// Number of keys held across limiters (for tests and stats).
    pub fn tracked_keys(&self) -> usize {
        self.messages.len() + self.subscribes.len() + self.connects.len() + self.publish.len()
    }
}

/// A held realtime connection slot.
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    client: String,
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSlot").finish_non_exhaustive()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limits.open.lock() {
            if let Some(n) = open.get_mut(&self.client) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&self.client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(count: u32, per: Duration, burst: u32) -> config::RateLimit {
        config::RateLimit {
            rate: config::Rate {
                count: NonZeroU32::new(count).unwrap(),
                per,
            },
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    fn limits() -> Arc<Limits> {
        Limits::new(&config::Limits {
            per_client: config::PerClient {
                connections: 2,
                messages: rl(10, Duration::from_secs(1), 3),
                subscribes: rl(60, Duration::from_secs(60), 5),
            },
            per_ip: config::PerIp {
                connects: rl(1, Duration::from_secs(1), 2),
            },
            publish: rl(100, Duration::from_secs(1), 100),
            max_connections: 10,
            ..config::Limits::default()
        })
    }

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let l = limits();
        for _ in 0..3 {
            l.message("a").unwrap();
        }
        let refused = l.message("a").unwrap_err();
        assert_eq!(refused.kind, Kind::Messages);
        assert!(
            refused.retry_after > Duration::ZERO
                && refused.retry_after <= Duration::from_millis(100)
        );
        l.message("b").expect("other clients have their own bucket");
        assert!(l.subscribe("a", 5).is_ok());
        assert!(l.subscribe("a", 1).is_err());
        assert!(l.subscribe("c", 6).is_err(), "more than the burst at once");
    }

    #[test]
    fn connection_slots_are_released() {
        let l = limits();
        let a = l.open_connection("x").unwrap();
        let _b = l.open_connection("x").unwrap();
        assert_eq!(l.open_connection("x").unwrap_err().kind, Kind::Connections);
        drop(a);
        assert!(l.open_connection("x").is_ok());
        assert!(!l.at_capacity(10));
        assert!(l.at_capacity(11));
    }

    #[test]
    fn idle_keys_are_evicted() {
        let l = Limits::new(&config::Limits {
            per_client: config::PerClient {
                connections: 2,
                messages: rl(1000, Duration::from_millis(1), 1),
                subscribes: rl(1000, Duration::from_millis(1), 1),
            },
            per_ip: config::PerIp {
                connects: rl(1000, Duration::from_millis(1), 1),
            },
            publish: rl(1000, Duration::from_millis(1), 1),
            max_connections: 10,
            ..config::Limits::default()
        });
        for i in 0..1000 {
            l.message(&format!("client-{i}")).unwrap();
        }
        assert!(l.tracked_keys() >= 1000);
        std::thread::sleep(Duration::from_millis(20));
        l.evict_idle();
        assert_eq!(l.tracked_keys(), 0);
    }
}
