use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

fn rl(count: u32, per: Duration, burst: u32) -> config::RateLimit {
    config::RateLimit::new(count, per, burst)
}

fn policy() -> config::Limits {
    config::Limits {
        per_client: config::PerClient {
            connections: 2,
            messages: rl(10, Duration::from_secs(1), 3),
            subscribes: rl(60, Duration::from_secs(60), 5),
        },
        per_ip: config::PerIp {
            connections: 3,
            connects: rl(1, Duration::from_secs(1), 2),
            subscribes: rl(1, Duration::from_secs(60), 8),
        },
        publish: rl(100, Duration::from_secs(1), 100),
        max_connections: 10,
        ..config::Limits::default()
    }
}

/// Limits on a clock the test moves by hand.
fn limits() -> (Arc<Limits>, Arc<AtomicU64>) {
    let t = Arc::new(AtomicU64::new(0));
    let l = Limits::with_clock(&policy(), Clock::Manual(t.clone()));
    (Arc::new(l), t)
}

fn subject(s: &str) -> ClientKey {
    ClientKey::Subject(Arc::from(s))
}

fn anon(last: u8, conn: u64) -> ClientKey {
    ClientKey::Anonymous {
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
        conn,
    }
}

#[test]
fn burst_then_refusal_with_retry_after() {
    let (l, t) = limits();
    for _ in 0..3 {
        l.message(&subject("a")).unwrap();
    }
    let refused = l.message(&subject("a")).unwrap_err();
    assert_eq!(refused.kind, Kind::Messages);
    assert_eq!(refused.retry_after, Duration::from_millis(100));
    t.store(100_000_000, Ordering::Relaxed);
    l.message(&subject("a")).expect("a token came back");
    l.message(&subject("b"))
        .expect("other clients have their own bucket");
    assert!(l.subscribe(&subject("a"), 5).is_ok());
    assert!(l.subscribe(&subject("a"), 1).is_err());
    assert!(
        l.subscribe(&subject("c"), 6).is_err(),
        "more than the burst at once"
    );
}

#[test]
fn anonymous_clients_share_their_address_but_not_their_messages() {
    let (l, _) = limits();
    // Subscribes: per_ip (burst 8) for the address, whatever the connection.
    assert!(l.subscribe(&anon(1, 1), 5).is_ok());
    assert!(l.subscribe(&anon(1, 2), 3).is_ok());
    assert!(l.subscribe(&anon(1, 3), 1).is_err());
    assert!(l.subscribe(&anon(2, 4), 8).is_ok(), "another address");
    // A subject named like an address has its own bucket.
    assert!(l.subscribe(&subject("10.0.0.1"), 5).is_ok());
    // Messages: per_client.messages (burst 3) per connection.
    for _ in 0..3 {
        l.message(&anon(1, 1)).unwrap();
    }
    assert!(l.message(&anon(1, 1)).is_err());
    l.message(&anon(1, 2))
        .expect("another tab behind the same address");
}

#[test]
fn connection_slots_count_per_subject_or_address_and_are_released() {
    let (l, _) = limits();
    let a = l.open_connection(&subject("x")).unwrap();
    let _b = l.open_connection(&subject("x")).unwrap();
    let e = l.open_connection(&subject("x")).unwrap_err();
    assert_eq!(e.kind, Kind::Connections);
    drop(a);
    assert!(l.open_connection(&subject("x")).is_ok());
    // Anonymous: per_ip.connections (3) for the address.
    let slots: Vec<_> = (0..3)
        .map(|c| l.open_connection(&anon(1, c)).unwrap())
        .collect();
    assert!(l.open_connection(&anon(1, 9)).is_err());
    assert!(l.open_connection(&anon(2, 9)).is_ok());
    drop(slots);
    assert!(l.open_connection(&anon(1, 9)).is_ok());
    assert!(!l.at_capacity(10));
    assert!(l.at_capacity(11));
}

#[test]
fn a_new_policy_changes_quotas_but_refunds_nothing() {
    let (l, _) = limits();
    let held: Vec<_> = (0..2)
        .map(|_| l.open_connection(&subject("x")).unwrap())
        .collect();
    for _ in 0..2 {
        l.connect(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    }
    for _ in 0..5 {
        l.subscribe(&subject("x"), 1).unwrap();
    }
    // The same quotas again (a reload that changed something else).
    l.set_policy(&policy());
    assert!(l.open_connection(&subject("x")).is_err());
    assert!(l.connect(IpAddr::V4(Ipv4Addr::LOCALHOST)).is_err());
    assert!(l.subscribe(&subject("x"), 1).is_err());
    // Larger quotas: exactly the difference becomes available.
    let mut bigger = policy();
    bigger.per_client.connections = 3;
    bigger.per_client.subscribes = rl(60, Duration::from_secs(60), 7);
    l.set_policy(&bigger);
    let third = l.open_connection(&subject("x")).unwrap();
    assert!(l.open_connection(&subject("x")).is_err());
    assert!(l.subscribe(&subject("x"), 2).is_ok());
    assert!(l.subscribe(&subject("x"), 1).is_err());
    // Slots taken before the change go back to the same count.
    drop(held);
    drop(third);
    l.set_policy(&policy());
    let again: Vec<_> = (0..2)
        .map(|_| l.open_connection(&subject("x")).unwrap())
        .collect();
    assert_eq!(again.len(), 2);
    assert!(l.open_connection(&subject("x")).is_err());
}

#[test]
fn idle_keys_are_evicted() {
    let (l, t) = limits();
    for i in 0..1000 {
        l.message(&subject(&format!("client-{i}"))).unwrap();
        l.subscribe(&anon((i % 200) as u8, i), 1).unwrap();
    }
    assert_eq!(l.tracked_keys(), 1200);
    l.evict_idle();
    assert_eq!(l.tracked_keys(), 1200, "nothing has drained yet");
    // Messages drain in 100ms; five subscribes of an address take five minutes.
    t.store(1_000_000_000, Ordering::Relaxed);
    l.evict_idle();
    assert_eq!(l.tracked_keys(), 200);
    t.store(300_000_000_000, Ordering::Relaxed);
    l.evict_idle();
    assert_eq!(l.tracked_keys(), 0);
}

#[test]
fn anonymous_addresses_count_by_host_not_by_spelling() {
    use super::address_key;
    use std::net::IpAddr;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // One IPv6 host's /64 is one key, whatever interface id it picks.
    assert_eq!(
        address_key(ip("2001:db8:1:2:aaaa::1")),
        ip("2001:db8:1:2::")
    );
    assert_eq!(
        address_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
        ip("2001:db8:1:2::")
    );
    assert_ne!(address_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
    // IPv4 stays per address, also when mapped onto an IPv6 listener.
    assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
}
