//! One server of an upstream, and how the next one is chosen (`balance`).
//!
//! A server whose connect failed is left out of the choice for
//! [`DOWN_FOR`], then tried again, and one that failed its health checks
//! until it passes them again (`health.rs`); while every server is down they are all
//! tried anyway (a refusal is better learnt from the server than assumed).
//! Its idle connections live here, one pool per server, which both engines
//! take from and give back to (`pool.rs`), and its connection limit with the
//! queue in front of it (`limit.rs`): a request takes a slot before it takes
//! a connection ([`Server::admit`]), and the balance prefers a server with a
//! free slot to waiting for a full one.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;

use crate::config::Balance;

use super::health::Health;
use super::limit::{Limit, Refused};
use super::pool::BackendPool;
use super::stats::{Failure, ServerStats};

/// How long a server whose connect failed is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

pub struct Server {
    /// `host:port`, as in the request URI (for a unix socket a made-up
    /// name, `upstream::unix_authority`).
    pub authority: http::uri::Authority,
    /// What it is, for logs: `http://host:port`, `https://…`, `unix:/path`.
    pub name: String,
    /// Its idle connections, for whichever engine carries a request.
    pub pool: BackendPool,
    /// Requests this gateway has in flight on it (`least_conn`).
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` until which it is skipped (0: up).
    down_until: AtomicU64,
    epoch: Instant,
    /// What its active checks found (`health:`); always healthy without.
    pub health: Health,
    /// Its answers, failures and latency, for `/metrics`.
    pub stats: ServerStats,
    /// `max_connections` and the queue (none: no limit).
    pub limit: Limit,
    /// Where the task driving each of its connections through an exchange
    /// runs: the gateway's drained stage (`with_tasks`), so shutdown waits
    /// for it; a tracker of its own for a server built outside a gateway.
    pub tasks: TaskTracker,
}

impl Server {
    pub fn new(authority: http::uri::Authority, connect_timeout: Duration) -> Server {
        Server {
            pool: BackendPool::new(authority.to_string(), connect_timeout),
            name: format!("http://{authority}"),
            authority,
            in_flight: AtomicUsize::new(0),
            down_until: AtomicU64::new(0),
            epoch: Instant::now(),
            health: Health::new(None),
            stats: ServerStats::default(),
            limit: Limit::new(None),
            tasks: TaskTracker::new(),
        }
    }

    /// Its exchanges' connection tasks run on `tasks`.
    pub fn with_tasks(mut self, tasks: TaskTracker) -> Server {
        self.tasks = tasks;
        self
    }

    /// Its connections speak TLS (an `https://` server).
    pub fn with_tls(mut self, tls: super::backend_conn::ServerTls) -> Server {
        self.pool = self.pool.with_tls(tls);
        self
    }

    /// It is a unix socket (a `unix:` server; `authority` is made up).
    pub fn with_unix(mut self, path: std::path::PathBuf) -> Server {
        self.pool = self.pool.with_unix(path);
        self
    }

    /// Named by its URL rather than as `http://authority`.
    pub fn with_name(mut self, name: String) -> Server {
        self.name = name;
        self
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether it is being skipped: a connect failed lately, or it failed
    /// its health checks.
    pub fn is_down(&self) -> bool {
        !self.health.is_healthy() || self.now_ms() < self.down_until.load(Ordering::Relaxed)
    }

    /// Requests in flight on it from this gateway.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Its connect failed: skip it for [`DOWN_FOR`].
    pub fn mark_down(&self) {
        self.stats.failed(Failure::Connect);
        let until = self.now_ms().saturating_add(DOWN_FOR.as_millis() as u64);
        self.down_until.store(until, Ordering::Relaxed);
    }

    /// A connection to it worked.
    pub fn mark_up(&self) {
        if self.down_until.load(Ordering::Relaxed) != 0 {
            self.down_until.store(0, Ordering::Relaxed);
        }
    }

    /// Count one request in flight until the guard drops, without a slot
    /// (see [`Server::admit`]).
    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            server: self.clone(),
            started: Instant::now(),
            done: false,
            _slot: None,
        }
    }

    /// Take one of its slots (`max_connections`), waiting in its queue when
    /// none is free (`ahead`: at its head, for a health check); the slot
    /// is given back when the [`Slot`] drops. `None` when it has no limit.
    /// Refusals are counted here.
    pub async fn slot(self: &Arc<Self>, ahead: bool) -> Result<Option<Slot>, Refused> {
        let asked = Instant::now();
        match self.limit.acquire(ahead).await {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.stats.waited(asked.elapsed());
                Ok(Some(Slot {
                    server: self.clone(),
                }))
            }
            Err(refused) => {
                self.stats.refused(refused);
                Err(refused)
            }
        }
    }

    /// A request on it: a slot (see [`Server::slot`]), then counted in
    /// flight; both last as long as the guard, which goes with the answer's
    /// body to its end. Take it before leasing or opening a connection.
    pub async fn admit(self: &Arc<Self>) -> Result<InFlight, Refused> {
        let slot = self.slot(false).await?;
        let mut in_flight = self.start();
        in_flight._slot = slot;
        Ok(in_flight)
    }
}

/// One of a server's slots (`max_connections`), given back on drop.
pub struct Slot {
    server: Arc<Server>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server.limit.release();
    }
}

/// One request in flight on a server, from the attempt to the end of its
/// answer (the guard goes with the body, `exchange::Pooled::hold`). One
/// that ends without [`InFlight::answered`] (a timeout, a reset, an
/// unusable answer, a client that left) counts as `no_answer`, unless its
/// connect failed (counted as that). It holds the request's slot
/// (`max_connections`) as long: whoever ends the answer early (the client
/// gone, the answer taken off the upstream whole) frees the slot with it.
pub struct InFlight {
    server: Arc<Server>,
    started: Instant,
    done: bool,
    _slot: Option<Slot>,
}

impl InFlight {
    /// The server answered with `status`.
    pub fn answered(&mut self, status: u16) {
        if !self.done {
            self.done = true;
            self.server.stats.answered(status, self.started.elapsed());
        }
    }

    /// Its connect failed: counted by [`Server::mark_down`].
    pub fn not_connected(&mut self) {
        self.done = true;
    }

    /// Nothing was sent (the request could not be made for this server):
    /// no failure of the server's to count.
    pub fn unsent(&mut self) {
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.server.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            self.server.stats.failed(Failure::NoAnswer);
        }
    }
}

/// The servers of one upstream and the policy that picks among them.
pub struct Servers {
    pub list: Vec<Arc<Server>>,
    balance: Balance,
    next: AtomicUsize,
}

impl Servers {
    pub fn new(list: Vec<Arc<Server>>, balance: Balance) -> Servers {
        Servers {
            list,
            balance,
            next: AtomicUsize::new(0),
        }
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// The server for the next attempt of a request from `client`, leaving
    /// out those in `tried` (indexes into `list`); `None` once every server
    /// was tried. Servers that are down come last, in the same order.
    pub fn pick(&self, client: Option<IpAddr>, tried: &[usize]) -> Option<usize> {
        let n = self.list.len();
        if tried.len() >= n {
            return None;
        }
        let start = match self.balance {
            Balance::RoundRobin | Balance::LeastConn => self.next.fetch_add(1, Ordering::Relaxed),
            Balance::IpHash => client.map_or(0, ip_hash),
        } % n;
        // Servers not tried yet, in turn from `start`; those that are up
        // first, the down ones only when no server is up. No allocation:
        // this runs for every proxied request.
        let order = || {
            (0..n)
                .map(move |k| (start + k) % n)
                .filter(|i| !tried.contains(i))
        };
        // A server with a free slot (`max_connections`) before one whose
        // queue the request would join: it queues only when every server
        // it may go to is full, and then on the first of them.
        let choose = |up: bool| {
            let candidates = move || order().filter(move |&i| !up || !self.list[i].is_down());
            self.best(candidates().filter(|&i| self.list[i].limit.has_room()))
                .or_else(|| self.best(candidates()))
        };
        choose(true).or_else(|| choose(false))
    }
}

impl Servers {
    /// The balance's choice among `candidates` (in turn from the start).
    fn best(&self, mut candidates: impl Iterator<Item = usize>) -> Option<usize> {
        match self.balance {
            Balance::LeastConn => {
                candidates.min_by_key(|&i| self.list[i].in_flight.load(Ordering::Relaxed))
            }
            _ => candidates.next(),
        }
    }
}

/// A stable hash of a client address: its IPv4 address, or the /64 of an
/// IPv6 one (a client's own network), as FNV-1a.
fn ip_hash(ip: IpAddr) -> usize {
    let bytes: Vec<u8> = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets()[..8].to_vec(),
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize, balance: Balance) -> Servers {
        let list = (0..n)
            .map(|i| {
                let a = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
                Arc::new(Server::new(a, Duration::from_secs(1)))
            })
            .collect();
        Servers::new(list, balance)
    }

    #[test]
    fn round_robin_takes_each_in_turn_and_skips_the_down() {
        let s = servers(3, Balance::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| s.pick(None, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        s.list[1].mark_down();
        let picks: Vec<_> = (0..4).map(|_| s.pick(None, &[]).unwrap()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        s.list[1].mark_up();
        assert!((0..3).any(|_| s.pick(None, &[]) == Some(1)));
    }

    #[test]
    fn every_server_is_tried_once_then_none() {
        let s = servers(3, Balance::RoundRobin);
        let mut tried = Vec::new();
        while let Some(i) = s.pick(None, &tried) {
            tried.push(i);
        }
        tried.sort();
        assert_eq!(tried, [0, 1, 2]);
        // All down: still tried, rather than refused unasked.
        for server in &s.list {
            server.mark_down();
        }
        assert!(s.pick(None, &[]).is_some());
    }

    #[test]
    fn ip_hash_keeps_a_client_on_one_server() {
        let s = servers(4, Balance::IpHash);
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let first = s.pick(Some(a), &[]).unwrap();
        assert!((0..10).all(|_| s.pick(Some(a), &[]) == Some(first)));
        let spread: std::collections::HashSet<_> = (0..64u8)
            .map(|i| s.pick(Some(IpAddr::from([10, 0, 0, i])), &[]).unwrap())
            .collect();
        assert!(spread.len() > 1, "addresses spread over servers");
        // Its server down: another one, the same each time.
        s.list[first].mark_down();
        let other = s.pick(Some(a), &[]).unwrap();
        assert_ne!(other, first);
        assert_eq!(s.pick(Some(a), &[]), Some(other));
    }

    #[tokio::test]
    async fn a_server_with_a_free_slot_is_taken_before_a_full_one_is_queued_for() {
        let limit = crate::config::ConnLimit {
            max_connections: 1,
            queue: crate::config::Queue::default(),
        };
        for balance in [Balance::RoundRobin, Balance::LeastConn, Balance::IpHash] {
            let s = servers(3, balance);
            for server in &s.list {
                server.limit.set_terms(Some(limit.clone()));
            }
            let client = Some(IpAddr::from([10, 0, 0, 1]));
            // Each pick, admitted, fills one server: three in all, each
            // on a server of its own.
            let mut held = Vec::new();
            for _ in 0..3 {
                let i = s.pick(client, &[]).unwrap();
                held.push((i, s.list[i].admit().await.unwrap()));
            }
            let mut on: Vec<_> = held.iter().map(|(i, _)| *i).collect();
            on.sort();
            assert_eq!(on, [0, 1, 2], "{balance:?}");
            // All full: still a server (whose queue the request joins).
            assert!(s.pick(client, &[]).is_some());
            // One frees: it is the one taken.
            let (freed, _) = held.remove(1);
            assert!(
                (0..4).all(|_| s.pick(client, &[]) == Some(freed)),
                "{balance:?}"
            );
        }
    }

    #[test]
    fn least_conn_avoids_the_busy_server() {
        let s = servers(2, Balance::LeastConn);
        let busy = s.list[0].start();
        assert!((0..4).all(|_| s.pick(None, &[]) == Some(1)));
        drop(busy);
    }
}
