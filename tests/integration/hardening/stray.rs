//! A backend that sends more than its answer: a body after a `HEAD` answer
//! sent late, after the connection's last check; a second answer in the
//! same write as a `GET`'s; and one in the next write, which reaches the
//! gateway while the connection is idle. Whatever it sends must never
//! become another client's answer. Each attack runs 20 times, on the relay
//! and on hyper's path, and the second client must get its own answer
//! every time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;
use crate::relay::scripted::*;

const STOLEN: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nSTOLEN";

/// `HEAD` answers honestly, then 100 ms later sends a body that reads as
/// an answer of its own; `/extra` is followed by a second answer in the
/// same write, `/extra-next` by one in a write of its own.
async fn hostile() -> TestApp {
    scripted(
        |head| match (head.split(' ').next().unwrap_or(""), path_of(head)) {
            ("HEAD", _) => Answer {
                then: STOLEN,
                ..answer("HTTP/1.1 200 OK\r\ncontent-length: 38\r\n\r\n")
            },
            (_, "/extra") => {
                let mut bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
                bytes.extend_from_slice(STOLEN);
                answer(bytes)
            }
            (_, "/extra-next") => Answer {
                then: STOLEN,
                then_after: Duration::ZERO,
                ..answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            },
            (_, "/nocontent") => Answer {
                then: STOLEN,
                ..answer("HTTP/1.1 204 No Content\r\n\r\n")
            },
            (_, "/nocontent-big") => {
                let mut bytes = b"HTTP/1.1 204 No Content\r\n".to_vec();
                for i in 0..40 {
                    bytes.extend_from_slice(
                        format!("X-Big-{i}: {}\r\n", "v".repeat(2000)).as_bytes(),
                    );
                }
                bytes.extend_from_slice(b"\r\n");
                Answer {
                    then: STOLEN,
                    ..answer(bytes)
                }
            }
            (_, path) => sized(&format!("yours: {path}")),
        },
    )
    .await
}

/// The attacks, whether the backend writes a late part, and whether the
/// victim asks only once every late part has been written (the stray bytes
/// then reach the gateway before its request).
const ATTACKS: [(&str, &str, bool, bool); 3] = [
    ("HEAD", "/doc", true, false),
    ("GET", "/extra", false, false),
    ("GET", "/extra-next", true, true),
];

/// Wait until the backend has written `n` late parts.
async fn written(app: &TestApp, n: usize) {
    let late = app.late.clone();
    eventually(5, "the stray bytes were written", || {
        let late = late.clone();
        async move { late.load(Ordering::SeqCst) >= n }
    })
    .await;
}

#[tokio::test]
async fn stray_bytes_never_reach_another_client_through_the_relay() {
    let app = hostile().await;
    let gw = gateway_for(&app.url).await;
    let mut attacker = http1(&gw).await;
    let mut victim = http1(&gw).await;
    let mut late = 0;
    for (method, path, writes_late, wait) in ATTACKS {
        for i in 0..20 {
            late += usize::from(writes_late);
            assert_eq!(get(&mut attacker, method, path).await.0, 200);
            if wait {
                written(&app, late).await;
            }
            let (status, _, body) = get(&mut victim, "GET", "/mine").await;
            assert_eq!(
                (status, body.as_str()),
                (200, "yours: /mine"),
                "{method} {path}, try {i}"
            );
        }
    }
}

#[tokio::test]
async fn stray_bytes_never_reach_another_client_through_hyper() {
    let app = hostile().await;
    let gw = gateway_for(&app.url).await;
    let mut late = 0;
    for (method, path, writes_late, wait) in ATTACKS {
        for i in 0..20 {
            late += usize::from(writes_late);
            // HTTP/2 from the client, so hyper forwards both requests.
            let attacker = gw
                .http
                .request(method.parse().unwrap(), gw.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(attacker.status(), 200, "{method} {path}");
            let _ = attacker.bytes().await;
            if wait {
                written(&app, late).await;
            }
            let victim = gw.http.get(gw.url("/mine")).send().await.unwrap();
            let status = victim.status();
            let body = victim.text().await.unwrap_or_default();
            assert_eq!(
                (status.as_u16(), body.as_str()),
                (200, "yours: /mine"),
                "{method} {path}, try {i}"
            );
        }
    }
}

/// Answers without a body, and answers refused for their size, leave
/// nothing on a connection for the next client: a 204 followed 100 ms
/// later by a stray answer, and a 204 whose head is over 64 KiB (a 502)
/// followed by one, on both engines. The next client asks at once, before
/// the stray bytes come (as with `HEAD` above).
#[tokio::test]
async fn bodiless_and_refused_answers_never_pass_their_connection_on() {
    let app = hostile().await;
    let gw = gateway_for(&app.url).await;
    let mut attacker = http1(&gw).await;
    let mut victim = http1(&gw).await;
    let mut late = 0;
    for (path, status) in [("/nocontent", 204), ("/nocontent-big", 502)] {
        for i in 0..10 {
            for relay in [true, false] {
                late += 1;
                let got = if relay {
                    get(&mut attacker, "GET", path).await.0
                } else {
                    let r = gw.http.get(gw.url(path)).send().await.unwrap();
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                };
                assert_eq!(got, status, "{path}, relay {relay}");
                let (status, body) = if relay {
                    let (s, _, b) = get(&mut victim, "GET", "/mine").await;
                    (s, b)
                } else {
                    let r = gw.http.get(gw.url("/mine")).send().await.unwrap();
                    (r.status().as_u16(), r.text().await.unwrap_or_default())
                };
                assert_eq!(
                    (status, body.as_str()),
                    (200, "yours: /mine"),
                    "{path}, relay {relay}, try {i}"
                );
                // The next try starts once this one's stray bytes are out.
                written(&app, late).await;
            }
        }
    }
}
