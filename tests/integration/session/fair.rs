//! Session checks are fair between addresses: one address flooding the
//! login with made-up cookies against a slow application holds only its
//! own share of the checks, gets 429 past it without the application being
//! asked, and another address's user is checked and served meanwhile.

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
    // The flood settles: two held at the application and the rest refused
    // at once (or, were there no shares, every place taken).
    let settled = |finished: usize, held: usize| held == 4 || (held == 2 && finished == 28);
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
        2,
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
    // The two the application answered are anonymous (401 for user.x).
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        28,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        forged_checks(&app),
        2,
        "the surplus never reached the application"
    );

    // Past the low rate of unknown cookies, one at a time is refused too:
    // one is left of the three, then nothing reaches the application.
    let mut later = Vec::new();
    for i in 30..35 {
        later.push(
            poll_from(&flooder, &gw, "user.x", &format!("sessionid=forged{i}"))
                .await
                .0,
        );
    }
    assert_eq!(later, [401, 429, 429, 429, 429]);
    assert_eq!(forged_checks(&app), 3);
    // A credential the cache holds is not charged: alice is served from
    // the flooding address too.
    assert_eq!(poll_from(&flooder, &gw, "user.alice", &alice).await.0, 200);
    assert_eq!(
        app.me_calls.load(Ordering::SeqCst),
        4,
        "2 + 1 forged, alice once"
    );
}
