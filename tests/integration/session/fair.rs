//! Session checks are fair between addresses: one address flooding the
//! login with made-up cookies against a slow application holds only its
//! own share of the checks (the rest wait in its own line), gets 429 past
//! its low rate of unknown credentials without the application being
//! asked, and another address's user is checked and served meanwhile. A
//! user's own many checked channels wait their turn and are all served.

use super::*;

/// Checks the application received for made-up cookies.
fn forged_checks(app: &LoginApp) -> usize {
    app.check_headers
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.iter().any(|(k, v)| k == "cookie" && v.contains("forged")))
        .count()
}

async fn poll_from(
    client: &reqwest::Client,
    gw: &TestGateway,
    channels: &str,
    cookie: &str,
) -> (u16, Option<String>, Value) {
    let r = client
        .get(gw.url(&format!("/realtime/poll?channels={channels}&timeout=0")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_flood_of_made_up_cookies_holds_only_its_own_share() {
    let app = LoginApp::start().await;
    // Four checks at once in all, two per address; three unknown cookies
    // per address, then one a minute. The timeout is long: a user queued
    // behind the flood would wait it out, not be refused at once.
    let gw = Arc::new(
        gateway(
            &app,
            "    cache: 30s\n    recheck: 10m\n    timeout: 10s\n    concurrency: 4\n    per_address:\n      concurrency: 2\n      unknown: { rate: 1/m, burst: 3 }",
        )
        .await,
    );
    app.hold_strangers.store(true, Ordering::SeqCst);
    let flooder = client_from(&gw, "127.0.0.1");
    let user = client_from(&gw, "127.0.0.2");

    // The flood: 30 made-up cookies at once, for a channel that needs a login.
    let flood: Vec<_> = (0..30)
        .map(|i| {
            let (gw, flooder) = (gw.clone(), flooder.clone());
            tokio::spawn(async move {
                poll_from(&flooder, &gw, "user.x", &format!("sessionid=forged{i}")).await
            })
        })
        .collect();
    // The flood settles: three charged as unknown (two held at the
    // application, one waiting in the address's line) and the rest refused
    // at once (or, were there no shares, three at the application).
    let settled = |finished: usize, held: usize| held >= 3 || (held == 2 && finished == 27);
    eventually(10, "the flood settled", || async {
        settled(
            flood.iter().filter(|t| t.is_finished()).count(),
            forged_checks(&app),
        )
    })
    .await;
    // Meanwhile a user on another address is asked about and served (were
    // the flood holding every place, this check would queue behind it until
    // the flood's checks timed out).
    let alice = app.login("alice");
    let (status, _, body) = poll_from(&user, &gw, "user.alice", &alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.me_calls.load(Ordering::SeqCst),
        1,
        "alice's check answered"
    );
    assert_eq!(forged_checks(&app), 2, "the flood's share, no more");
    // Served while the flood's own checks are still held: alice did not
    // wait for them.
    assert_eq!(
        flood.iter().filter(|t| !t.is_finished()).count(),
        3,
        "alice was answered before the flood's held checks"
    );

    app.release();
    let mut statuses = Vec::new();
    for t in flood {
        let (status, retry, body) = t.await.unwrap();
        if status == 429 {
            assert_eq!(body["error"], "rate_limited", "{body}");
            assert!(retry.is_some(), "429 without Retry-After: {body}");
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    // The three the application answered are anonymous (401 for user.x).
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        27,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        forged_checks(&app),
        3,
        "the surplus never reached the application"
    );

    // Past the low rate of unknown cookies, one at a time is refused too:
    // nothing more reaches the application.
    let mut later = Vec::new();
    for i in 30..35 {
        later.push(
            poll_from(&flooder, &gw, "user.x", &format!("sessionid=forged{i}"))
                .await
                .0,
        );
    }
    assert_eq!(later, [429, 429, 429, 429, 429]);
    assert_eq!(forged_checks(&app), 3);
    // A credential the cache holds is not charged: alice is served from
    // the flooding address too.
    assert_eq!(poll_from(&flooder, &gw, "user.alice", &alice).await.0, 200);
    assert_eq!(
        app.me_calls.load(Ordering::SeqCst),
        4,
        "3 forged, alice once"
    );
}

/// `orders.of-{user}-1` … `-{n}`: `n` checked channels the user owns.
fn own_orders(user: &str, n: usize) -> String {
    (1..=n)
        .map(|i| format!("orders.of-{user}-{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A share of two checks, three unknown credentials a minute.
const NARROW: &str = "    cache: 30s\n    recheck: 10m\n    timeout: 5s\n    concurrency: 8\n    per_address:\n      concurrency: 2\n      unknown: { rate: 1/m, burst: 3 }";

#[tokio::test]
async fn twenty_checked_channels_of_one_user_wait_their_turn_and_are_all_served() {
    let app = LoginApp::start().await;
    app.delay_ms.store(50, Ordering::SeqCst);
    let gw = gateway(&app, NARROW).await;
    let user = client_from(&gw, "127.0.0.3");
    let alice = app.login("alice");

    // One request, twenty checks with a cold cache: ten times the share,
    // and far more than the unknown rate's burst. Each waits its turn in
    // the address's line; none is charged as unknown (the login answered
    // for the credential), so none is refused.
    let (status, retry, body) = poll_from(&user, &gw, &own_orders("alice", 20), &alice).await;
    assert_eq!(status, 200, "{body} (Retry-After {retry:?})");
    assert_eq!(
        app.order_calls.load(Ordering::SeqCst),
        20,
        "every one asked"
    );
    assert_eq!(app.me_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        app.most_in_flight.load(Ordering::SeqCst),
        2,
        "the address's share at once, no more"
    );

    // Over SSE, twenty other orders: the same, the stream opens.
    let more: String = (21..=40)
        .map(|i| format!("orders.of-alice-{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let r = user
        .get(gw.url(&format!("/realtime/sse?channels={more}")))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.order_calls.load(Ordering::SeqCst), 40);
    assert_eq!(app.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_made_up_cookie_asking_about_orders_is_charged_as_unknown() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, NARROW).await;
    let flooder = client_from(&gw, "127.0.0.4");
    // The login says nobody (charged: one of three), then the orders are
    // asked with a cookie the application never vouched for: two more
    // reach it, the rest are refused without asking.
    let (status, _, body) = poll_from(
        &flooder,
        &gw,
        &own_orders("alice", 20),
        "sessionid=forged-orders",
    )
    .await;
    assert!(status == 401 || status == 429, "{status} {body}");
    assert_eq!(app.me_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        app.order_calls.load(Ordering::SeqCst),
        2,
        "past the unknown rate, no order reaches the application"
    );
}

#[tokio::test]
async fn past_its_line_an_address_is_refused_at_once() {
    let app = LoginApp::start().await;
    app.delay_ms.store(50, Ordering::SeqCst);
    // Two in flight and three waiting: twenty at once is too many.
    let gw = gateway(
        &app,
        "    cache: 30s\n    recheck: 10m\n    timeout: 5s\n    concurrency: 8\n    per_address:\n      concurrency: 2\n      queue: 3",
    )
    .await;
    let user = client_from(&gw, "127.0.0.5");
    let alice = app.login("alice");
    let (status, retry, body) = poll_from(&user, &gw, &own_orders("alice", 20), &alice).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(retry.is_some(), "429 without Retry-After");
    assert!(
        app.order_calls.load(Ordering::SeqCst) <= 5,
        "only the line's checks reach the application"
    );
    assert!(app.most_in_flight.load(Ordering::SeqCst) <= 2);
}
