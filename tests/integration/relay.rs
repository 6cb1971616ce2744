//! The proxy's HTTP/1 relay (plain `GET`/`HEAD` forwarded without hyper),
//! against a scripted backend (`relay/scripted.rs`) that answers in exactly
//! the bytes each test needs: keep-alive, chunked bodies with trailers,
//! close-delimited bodies, interim answers, and connections it closes behind
//! our back. What the relay refuses, and how it keeps client and backend in
//! step when the bytes are wrong, is in `relay/framing.rs`. Clients talk
//! HTTP/1.1 over TLS, as a browser without HTTP/2 would.

mod framing;
pub(crate) mod scripted;

use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use scripted::*;

#[tokio::test]
async fn keep_alive_requests_share_one_backend_connection() {
    let app = scripted(|head| sized(&format!("you asked for {}", path_of(head)))).await;
    let gw = gateway_for(&app.url).await;
    let before = proxied_2xx(&gw.metrics_text().await);
    let mut client = http1(&gw).await;
    for i in 0..5 {
        let (status, headers, body) = get(&mut client, "GET", &format!("/page/{i}?q=1")).await;
        assert_eq!(status, 200);
        assert_eq!(body, format!("you asked for /page/{i}?q=1"));
        assert_eq!(headers["x-app"], "yes");
        assert!(
            headers.contains_key("date"),
            "a Date is added like hyper adds it"
        );
    }
    assert_eq!(
        app.connections.load(Ordering::SeqCst),
        1,
        "the backend connection is reused"
    );
    let heads = app.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 5);
    let head = heads[0].to_ascii_lowercase();
    for expected in [
        "get /page/0?q=1 http/1.1\r\n",
        "host: app.example\r\n",
        "x-forwarded-for: 127.0.0.1\r\n",
        "x-forwarded-proto: https\r\n",
        "x-forwarded-host: app.example\r\n",
        "forwarded: for=127.0.0.1;proto=https;host=\"app.example\"\r\n",
    ] {
        assert!(head.contains(expected), "{expected:?} missing in {head}");
    }
    assert_eq!(
        proxied_2xx(&gw.metrics_text().await),
        before + 5,
        "counted like any proxied request"
    );
}

#[tokio::test]
async fn chunked_and_close_delimited_answers_pass_through() {
    let app = scripted(|head| match path_of(head) {
        "/chunked" => answer(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 999\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
        ),
        "/until-close" => Answer {
            close: true,
            then: b", until the end",
            ..answer("HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of this")
        },
        _ => sized("plain"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    let mut client = http1(&gw).await;
    for _ in 0..2 {
        let (status, headers, body) = get(&mut client, "GET", "/chunked").await;
        assert_eq!((status, body.as_str()), (200, "hello world"));
        assert!(
            !headers.contains_key("content-length"),
            "chunked wins over a length"
        );
    }
    let (status, headers, body) = get(&mut client, "GET", "/until-close").await;
    assert_eq!((status, body.as_str()), (200, "all of this, until the end"));
    assert_eq!(headers["connection"], "close");
    // The client's connection ends with that body; a new one works.
    client
        .ready()
        .await
        .expect_err("closed after a close-delimited body");
    let mut client = http1(&gw).await;
    assert_eq!(get(&mut client, "GET", "/other").await.2, "plain");
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_is_retried() {
    // The keep-alive race: each connection answers one request, stays open
    // (so the pool's check finds it alive and the next request is written
    // to it), then closes as that next request arrives, unanswered. Only a
    // retry on a fresh connection gets the client its answer.
    let app = scripted(|head| Answer {
        hang_up_next: true,
        ..sized(&format!("fresh {}", path_of(head)))
    })
    .await;
    let gw = gateway_for(&app.url).await;
    let mut client = http1(&gw).await;
    for i in 0..4 {
        let (status, _, body) = get(&mut client, "GET", &format!("/r{i}")).await;
        assert_eq!((status, body), (200, format!("fresh /r{i}")));
    }
    // Every request after the first was sent on the pooled connection,
    // lost there, and sent again once on a new one.
    assert_eq!(app.hung_up.load(Ordering::SeqCst), 3);
    assert_eq!(app.connections.load(Ordering::SeqCst), 4);
    // The same through hyper's engine (HTTP/2 from the client), which
    // takes from the same pool: the idle connection left by the last GET
    // is lost too, and each request is sent once more on a new one.
    for i in 0..3 {
        let resp = gw.http.get(gw.url(&format!("/h{i}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "/h{i}");
        assert_eq!(resp.text().await.unwrap(), format!("fresh /h{i}"));
    }
    assert_eq!(app.hung_up.load(Ordering::SeqCst), 6);
    let paths: Vec<String> = app
        .heads
        .lock()
        .unwrap()
        .iter()
        .map(|h| path_of(h).to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/r0", "/r1", "/r1", "/r2", "/r2", "/r3", "/r3", "/h0", "/h0", "/h1", "/h1", "/h2",
            "/h2"
        ],
        "each lost request is repeated once"
    );
}

#[tokio::test]
async fn interim_and_bodiless_answers_keep_the_connection_in_step() {
    let app = scripted(|head| match (head.split(' ').next().unwrap(), path_of(head)) {
        (_, "/early") => answer(
            "HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ),
        (_, "/cached") => answer("HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\netag: \"v1\"\r\n\r\n"),
        (_, "/empty") => answer("HTTP/1.1 204 No Content\r\n\r\n"),
        ("HEAD", _) => answer("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"),
        _ => sized("0123456789"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    let mut client = http1(&gw).await;
    assert_eq!(get(&mut client, "GET", "/early").await.2, "ok");
    let (status, headers, body) = get(&mut client, "GET", "/cached").await;
    assert_eq!((status, body.as_str()), (304, ""));
    assert_eq!(headers["etag"], "\"v1\"");
    assert_eq!(get(&mut client, "GET", "/empty").await.0, 204);
    let (status, headers, body) = get(&mut client, "HEAD", "/doc").await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(headers["content-length"], "10");
    // Still in step: the next answer is the next request's.
    assert_eq!(get(&mut client, "GET", "/doc").await.2, "0123456789");
    // An answer after an interim one, a 304, a 204 and a HEAD answer each
    // retire their connection: where such an answer ends is the backend's
    // guess (`hardening/stray.rs`).
    assert_eq!(app.connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let app = scripted(|head| sized(&format!("<{}>", path_of(head)))).await;
    let gw = gateway_for(&app.url).await;
    let answer = raw(
        &gw,
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3, "{answer}");
    let (a, b, c) = (
        answer.find("</a>").unwrap(),
        answer.find("</b>").unwrap(),
        answer.find("</c>").unwrap(),
    );
    assert!(a < b && b < c, "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    // Passed on byte for byte (hyper would have lower-cased the name): the
    // relay answered these.
    assert_eq!(answer.matches("X-App: yes").count(), 3, "{answer}");
}

#[tokio::test]
async fn a_request_the_relay_does_not_take_hands_the_connection_to_hyper() {
    let backend = backend::start().await;
    let gw = gateway_for(&format!("http://{backend}")).await;
    let mut tls = gw.tls_stream().await;
    // A plain GET (relayed), then a POST with a body (hyper), then a GET
    // (hyper keeps the connection now), on one connection.
    for raw in [
        "GET /one HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        "GET /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    ] {
        tls.write_all(raw.as_bytes()).await.unwrap();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    let bodies: Vec<Value> = answer
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|a| {
            assert!(a.starts_with("200"), "{answer}");
            let body = &a[a.find("\r\n\r\n").unwrap() + 4..];
            // The hyper answers may be chunked: take the JSON object.
            let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
            serde_json::from_str(json).unwrap()
        })
        .collect();
    assert_eq!(bodies.len(), 3, "{answer}");
    assert_eq!(bodies[0]["uri"], "/one");
    assert_eq!(
        (&bodies[1]["method"], &bodies[1]["body"]),
        (&"POST".into(), &"hello".into())
    );
    assert_eq!(bodies[2]["uri"], "/three");
    for b in &bodies {
        assert_eq!(b["headers"]["x-forwarded-for"], "127.0.0.1");
        assert_eq!(b["headers"]["host"], "h");
    }
}

#[tokio::test]
async fn backend_down_slow_and_stalled_through_the_relay() {
    let down = TestGateway::start().await; // nothing listens on port 9
    let mut client = http1(&down).await;
    let (status, _, body) = get(&mut client, "GET", "/x").await;
    assert_eq!(status, 502);
    assert!(body.contains("bad_gateway"), "{body}");

    let backend = backend::start().await;
    let gw = gateway_for(&format!("http://{backend}")).await; // backend timeout: 2s
    let mut client = http1(&gw).await;
    let (status, _, body) = get(&mut client, "GET", "/slow").await;
    assert_eq!(status, 504);
    assert!(body.contains("gateway_timeout"), "{body}");
    // The same connection carries on after a refusal.
    assert_eq!(
        get(&mut client, "GET", "/delay").await.2,
        "done after delay"
    );
    // A body that stops flowing is cut after the timeout, not held forever.
    let started = std::time::Instant::now();
    let resp = request(&mut client, "GET", "/stall").await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first\n");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .expect("cut within the timeout")
            .is_err()
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn large_bodies_stream_and_a_client_leaving_midway_harms_nothing() {
    /// More than every socket buffer between the backend and the client
    /// holds: a client that leaves after a few bytes leaves the answer
    /// unfinished at the gateway.
    const HUGE: usize = 48 << 20;
    let app = scripted(|head| match path_of(head) {
        "/large" => {
            let body = "0123456789abcdef".repeat(64 * 1024); // 1 MiB
            sized(&body)
        }
        "/huge" => {
            let mut bytes =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {HUGE}\r\n\r\n").into_bytes();
            bytes.resize(bytes.len() + HUGE, b'x');
            answer(bytes)
        }
        _ => sized("small"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    let mut client = http1(&gw).await;
    let (status, _, body) = get(&mut client, "GET", "/large").await;
    assert_eq!((status, body.len()), (200, 1024 * 1024));
    assert!(body.starts_with("0123456789abcdef0123"));
    // Another client reads a little of a body, then goes.
    let mut tls = gw.tls_stream().await;
    tls.write_all(b"GET /huge HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut some = [0u8; 1024];
    let _ = tls.read(&mut some).await.unwrap();
    drop(tls);
    // The backend connection with half an answer on it is closed, not kept
    // for another request (nor left waiting until the backend's timeout).
    eventually(10, "the cut answer's backend connection closed", || async {
        app.closed.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(get(&mut client, "GET", "/after").await.2, "small");
}

#[tokio::test]
async fn an_oversized_head_gets_hypers_answer() {
    let app = scripted(|_| sized("never")).await;
    let gw = gateway_for(&app.url).await;
    let big = format!(
        "GET /x HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let answer = raw(&gw, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        app.heads.lock().unwrap().is_empty(),
        "nothing reached the backend"
    );
}

#[tokio::test]
async fn tapped_paths_are_proxied_by_hyper_and_still_tapped() {
    let app = scripted(|_| sized(r#"{"id":7}"#)).await;
    let extra = r#"
taps:
  - match: { method: GET, path: /watched }
    channel: public.tapped
    data: "{response.body.id}"
"#;
    let gw = TestGateway::builder()
        .backend(&app.url)
        .section(extra)
        .start()
        .await;
    let mut client = http1(&gw).await;
    for path in [
        "/watched",
        "/watched?x=1",
        "/watched#fragment",
        "/unwatched",
    ] {
        assert_eq!(get(&mut client, "GET", path).await.0, 200, "{path}");
    }
    // Every request to the watched path published, fragment or not.
    eventually(5, "three tapped messages", || async {
        let v = gw.admin_get("/channels/public.tapped").await;
        v["history"]["length"].as_u64() == Some(3)
    })
    .await;
    // The backend never sees a fragment.
    assert!(app.heads.lock().unwrap().iter().all(|h| !h.contains('#')));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_header_timeout() {
    let app = scripted(|_| sized("hi")).await;
    let gw = TestGateway::builder()
        .backend(&app.url)
        .limits("  header_timeout: 1s")
        .start()
        .await;
    let mut tls = gw.tls_stream().await;
    tls.write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    assert!(
        read.expect("closed by the gateway").is_ok(),
        "a clean close"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hi"),
        "{answer}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_client_leaving_frees_its_backend_connection_at_once() {
    // This backend never answers; the gateway's backend timeout is 2 s.
    let app = scripted(|_| answer("")).await;
    let gw = gateway_for(&app.url).await;
    let mut tls = gw.tls_stream().await;
    tls.write_all(b"GET /never HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    eventually(2, "the request reaches the backend", || async {
        app.heads.lock().unwrap().len() == 1
    })
    .await;
    drop(tls);
    // Well before the backend timeout: the gateway noticed the client go.
    eventually(1, "the backend connection closed", || async {
        app.closed.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn a_half_close_after_pipelined_requests_still_gets_the_first_answer() {
    // Answers after 100 ms, so the gateway is still waiting when the
    // client's close arrives.
    let app = scripted(|head| Answer {
        then: if head.contains("/first") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond"
        },
        ..answer("")
    })
    .await;
    let gw = gateway_for(&app.url).await;
    // Like hyper: the request being answered while nothing else is
    // buffered is dropped when the client closes its side...
    let mut tls = gw.tls_stream().await;
    tls.write_all(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    tls.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // ...but one followed by a pipelined request is answered.
    let mut tls = gw.tls_stream().await;
    tls.write_all(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    tls.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK") && answer.contains("\r\n\r\nfirst"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_slow_head_gets_one_header_timeout_in_all() {
    let app = scripted(|_| sized("never")).await;
    let gw = TestGateway::builder()
        .backend(&app.url)
        .limits("  header_timeout: 1s")
        .start()
        .await;
    let mut tls = gw.tls_stream().await;
    let started = std::time::Instant::now();
    // The first bytes slowly (read before the relay sees the connection),
    // then the rest of the head trickling in. The pauses are the slow
    // client under test, not waits.
    tls.write_all(b"HEA").await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    tls.write_all(b"D /x HTTP/1.1\r\n").await.unwrap();
    tls.flush().await.unwrap();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tls.write_all(b"X-Slow: 1\r\n").await.is_err() || tls.flush().await.is_err() {
                break;
            }
            let mut byte = [0u8; 1];
            // Closed: the read ends (EOF or error) instead of timing out.
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), tls.read(&mut byte)).await
            {
                if !matches!(r, Ok(n) if n > 0) {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .expect("the gateway closes a head that never ends");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "closed after {took:?}");
    assert!(app.heads.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_at_the_timeout() {
    // More than every socket buffer between the backend and the client holds.
    const BODY: usize = 48 << 20;
    let app = scripted(|_| {
        let mut bytes = format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n").into_bytes();
        bytes.resize(bytes.len() + BODY, b'x');
        answer(bytes)
    })
    .await;
    let gw = gateway_for(&app.url).await; // backend.timeout: 2s
    // The relay's way (a GET) and hyper's (a POST) alike.
    for request in [
        &b"GET /big HTTP/1.1\r\nHost: app.example\r\n\r\n"[..],
        b"POST /big HTTP/1.1\r\nHost: app.example\r\nContent-Length: 0\r\n\r\n",
    ] {
        let mut tls = gw.tls_stream().await;
        tls.write_all(request).await.unwrap();
        // The client takes nothing for longer than backend.timeout (the
        // pause is the behaviour under test)...
        tokio::time::sleep(Duration::from_secs(4)).await;
        // ...then reads what it can: the gateway has let go of it, and of
        // the backend connection that was waiting on it.
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut got)).await;
        let what = String::from_utf8_lossy(&request[..4]);
        assert!(read.is_ok(), "{what}: the connection stayed open");
        assert!(
            got.len() < BODY,
            "{what}: the whole body was still delivered"
        );
    }
}
