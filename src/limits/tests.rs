use std::net::Ipv4Addr;

use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

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
            resumes: rl(1, Duration::from_secs(1), 3),
        },
        publish: rl(100, Duration::from_secs(1), 100),
        max_connections: 10,
        ..config::Limits::default()
    }
}

/// Limits on a clock the test moves by hand.
fn limits() -> (Arc<Limits>, FakeRelativeClock) {
    limits_with(&policy())
}

fn limits_with(policy: &config::Limits) -> (Arc<Limits>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let l = Limits::with_time(policy, Time::Manual(clock.clone()));
    (Arc::new(l), clock)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The retry-after of a refused message from `client`.
fn message_wait(l: &Limits, client: &ClientKey) -> Duration {
    let refused = l.message(client).expect_err("refused");
    assert_eq!(refused.kind, Kind::Messages);
    refused.retry_after
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
    t.advance(ms(100));
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
    // Messages drain in 100ms; five subscribes of an address take five
    // minutes. governor forgets a key one token's time after its bucket is
    // empty again (a minute here).
    t.advance(Duration::from_secs(1));
    l.evict_idle();
    assert_eq!(l.tracked_keys(), 200);
    t.advance(Duration::from_secs(299));
    l.evict_idle();
    assert_eq!(l.tracked_keys(), 200, "empty only now");
    t.advance(Duration::from_secs(60));
    l.evict_idle();
    assert_eq!(l.tracked_keys(), 0);
    // A forgotten key starts again with a full bucket.
    l.subscribe(&anon(7, 1), 8).expect("the whole burst");
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

#[test]
fn a_drained_bucket_stays_drained_across_reloads() {
    let (l, t) = limits();
    for _ in 0..3 {
        l.message(&subject("a")).unwrap();
    }
    // The same quotas again, at once and later: nothing comes back early.
    l.set_policy(&policy());
    assert_eq!(message_wait(&l, &subject("a")), ms(100));
    t.advance(ms(50));
    l.set_policy(&policy());
    assert_eq!(message_wait(&l, &subject("a")), ms(50));
    t.advance(ms(50));
    l.message(&subject("a"))
        .expect("one token back after 100ms");
    assert_eq!(message_wait(&l, &subject("a")), ms(100));
}

#[test]
fn a_raised_rate_drains_what_is_left_at_once() {
    let (l, t) = limits();
    for _ in 0..3 {
        l.message(&subject("a")).unwrap();
    }
    // 10/s: half a token has come back after 50ms; 2.5 tokens are in use.
    t.advance(ms(50));
    let mut faster = policy();
    faster.per_client.messages = rl(100, Duration::from_secs(1), 3);
    l.set_policy(&faster);
    // At 100/s the missing half token takes 5ms, not the old rate's 50ms.
    assert_eq!(message_wait(&l, &subject("a")), ms(5));
    t.advance(ms(5));
    l.message(&subject("a")).unwrap();
    assert_eq!(message_wait(&l, &subject("a")), ms(10));
}

#[test]
fn a_lowered_rate_refunds_nothing() {
    let (l, t) = limits();
    for _ in 0..3 {
        l.message(&subject("a")).unwrap();
    }
    t.advance(ms(50));
    let mut slower = policy();
    slower.per_client.messages = rl(1, Duration::from_secs(1), 3);
    l.set_policy(&slower);
    // Still 2.5 tokens in use: the missing half drains at 1/s.
    assert_eq!(message_wait(&l, &subject("a")), ms(500));
    t.advance(ms(499));
    assert_eq!(message_wait(&l, &subject("a")), ms(1));
    t.advance(ms(1));
    l.message(&subject("a")).unwrap();
    assert_eq!(message_wait(&l, &subject("a")), Duration::from_secs(1));
    // And back to the old rate: what is left converts back.
    l.set_policy(&policy());
    assert_eq!(message_wait(&l, &subject("a")), ms(100));
}

#[test]
fn a_changed_burst_applies_to_what_is_left() {
    let (l, t) = limits();
    for _ in 0..3 {
        l.message(&subject("a")).unwrap();
    }
    let mut bigger = policy();
    bigger.per_client.messages = rl(10, Duration::from_secs(1), 5);
    l.set_policy(&bigger);
    l.message(&subject("a")).expect("the fourth of five");
    l.message(&subject("a")).expect("the fifth of five");
    assert_eq!(message_wait(&l, &subject("a")), ms(100));
    // Five in use, burst down to 2: four must drain before one more fits.
    let mut smaller = policy();
    smaller.per_client.messages = rl(10, Duration::from_secs(1), 2);
    l.set_policy(&smaller);
    assert_eq!(message_wait(&l, &subject("a")), ms(400));
    t.advance(ms(400));
    l.message(&subject("a")).unwrap();
    assert_eq!(message_wait(&l, &subject("a")), ms(100));
}

#[test]
fn retry_after_is_governors_wait() {
    // A stock governor limiter with the same quota, on its own clock.
    let mut p = policy();
    p.publish = rl(7, Duration::from_secs(3), 4);
    let (l, t) = limits_with(&p);
    let quota = Quota::with_period(Duration::from_secs(3) / 7)
        .unwrap()
        .allow_burst(std::num::NonZeroU32::new(4).unwrap());
    let stock_clock = FakeRelativeClock::default();
    let stock: RateLimiter<_, HashMapStateStore<&str>, _, NoOpMiddleware<Nanos>> =
        RateLimiter::new(quota, HashMapStateStore::default(), stock_clock.clone());
    let steps = [
        (0, 1),
        (0, 2),
        (0, 1),
        (0, 1),
        (90, 1),
        (200, 2),
        (500, 3),
        (10, 1),
    ];
    let mut refusals = 0;
    for (advance, n) in steps {
        t.advance(ms(advance));
        stock_clock.advance(ms(advance));
        let ours = l.publish("k", n);
        let theirs = stock.check_key_n(&"k", std::num::NonZeroU32::new(n as u32).unwrap());
        match (ours, theirs) {
            (Ok(()), Ok(Ok(()))) => {}
            (Err(limited), Ok(Err(not_until))) => {
                refusals += 1;
                assert_eq!(limited.kind, Kind::Publish);
                assert_eq!(
                    limited.retry_after,
                    not_until.wait_time_from(stock_clock.now())
                );
                assert!(limited.retry_after > Duration::ZERO);
            }
            (ours, theirs) => panic!("differ: {ours:?} vs {theirs:?}"),
        }
    }
    assert!(refusals >= 3, "the sequence must exercise refusals");
}

#[test]
fn mercure_publishers_are_counted_and_forgotten_once_drained() {
    let (l, t) = limits();
    for i in 0..50 {
        l.mercure_publish(&subject(&format!("publisher-{i}")))
            .unwrap();
    }
    assert_eq!(l.tracked_keys(), 50);
    l.evict_idle();
    assert_eq!(l.tracked_keys(), 50, "nothing has drained yet");
    t.advance(Duration::from_secs(1));
    l.evict_idle();
    assert_eq!(l.tracked_keys(), 0);
}

#[test]
fn more_than_the_burst_is_refused_and_stores_nothing() {
    let (l, _) = limits();
    let refused = l.publish("k", 101).unwrap_err();
    assert_eq!(refused.kind, Kind::Publish);
    assert_eq!(refused.retry_after, Duration::from_secs(1));
    let refused = l.subscribe(&anon(1, 1), 9).unwrap_err();
    assert_eq!(refused.kind, Kind::Subscribes);
    assert_eq!(l.tracked_keys(), 0);
    // The whole burst at once is fine.
    l.publish("k", 100).unwrap();
    l.subscribe(&anon(1, 1), 8).unwrap();
    assert_eq!(l.tracked_keys(), 2);
}

#[test]
fn extreme_quotas_neither_overflow_nor_panic() {
    let fastest = rl(u32::MAX, Duration::from_nanos(1), u32::MAX);
    let slowest = rl(1, Duration::from_secs(u64::MAX / 4), u32::MAX);
    let mut p = policy();
    p.publish = slowest;
    let (l, t) = limits_with(&p);
    l.publish("k", u32::MAX as usize).unwrap();
    let refused = l.publish("k", u32::MAX as usize).unwrap_err();
    assert!(refused.retry_after > Duration::from_secs(3600 * 24 * 365));
    // Reloads between the extremes convert what is in use without overflow.
    p.publish = fastest;
    l.set_policy(&p);
    // Every token is still in use; at a token a nanosecond, one is due in 1ns.
    assert_eq!(
        l.publish("k", 1).unwrap_err().retry_after,
        Duration::from_nanos(1)
    );
    t.advance(Duration::from_nanos(1));
    l.publish("k", 1).unwrap();
    p.publish = slowest;
    l.set_policy(&p);
    assert!(l.publish("k", 1).is_err());
    t.advance(Duration::from_secs(200 * 365 * 24 * 3600));
    l.publish("k", u32::MAX as usize).unwrap();
    l.evict_idle();
}

#[test]
fn an_entry_is_converted_once_whoever_reaches_it_first() {
    let store = store::SharedStore::new();
    let clock = FakeRelativeClock::default();
    let time = Time::Manual(clock.clone());
    let old = store.view(100, time.clone());
    let new = store.view(10, time);
    let write = |view: &store::StoreView<&str>, tat: u64| {
        view.measure_and_replace(&"k", |seen| Ok::<_, ()>((seen, Nanos::from(tat))))
            .unwrap()
    };
    assert_eq!(write(&old, 1000), None);
    clock.advance(Duration::from_nanos(200));
    // A check under the new weight reaches the entry before the reload's
    // walk: 800ns left at 100ns a token is 8 tokens, 80ns at the new weight.
    assert_eq!(write(&new, 300), Some(Nanos::from(280)));
    // The walk then leaves it alone: it is already at the new weight.
    store.reweigh(10, 200);
    assert_eq!(store.slot(&"k"), Some(store::Slot::new(300, 10)));
    // A check still under the old weight converts it back (10 tokens are
    // 1000ns at 100ns a token) and writes under that weight; the reload's
    // walk then converts what it finds at the reload's instant: 1300ns left
    // at 100ns a token is 13 tokens, 130ns at the new weight.
    assert_eq!(write(&old, 1500), Some(Nanos::from(1200)));
    assert_eq!(store.slot(&"k"), Some(store::Slot::new(1500, 100)));
    store.reweigh(10, 200);
    assert_eq!(store.slot(&"k"), Some(store::Slot::new(330, 10)));
}

#[test]
fn resumes_have_their_own_allowance_apart_from_connects() {
    let (l, t) = limits();
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
    l.connect(ip).unwrap();
    l.connect(ip).unwrap();
    assert_eq!(l.connect(ip).unwrap_err().kind, Kind::Connects);
    for _ in 0..3 {
        l.resume(ip).expect("resumes pass once connects are spent");
    }
    let refused = l.resume(ip).unwrap_err();
    assert_eq!(refused.kind, Kind::Resumes);
    assert_eq!(l.connect(ip).unwrap_err().kind, Kind::Connects);
    t.advance(ms(1000));
    l.resume(ip).expect("the allowance refills");
}
