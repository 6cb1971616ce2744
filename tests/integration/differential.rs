//! One proxy policy, whichever engine carries the bytes: the same requests
//! through the HTTP/1 relay and through hyper (a request a tap watches goes
//! by hyper), and what the application received and what the client got
//! compared, header names as spelled (both engines keep the spelling they
//! got, `Host` included; trailer names both write lowercase, as hyper's
//! trailer map holds them). Written differently, and compared without case:
//! the framing fields each engine writes itself. Field order is not
//! compared.

use std::collections::BTreeSet;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// What the application answers for each path.
fn reply(path: &str) -> Vec<u8> {
    let tail = path.rsplit('/').next().unwrap_or("");
    match tail {
        "plain" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-App: yes\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        "chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n".to_vec(),
        "empty-chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        // Larger than a spilling gateway's memory bound (see below).
        "big" => {
            let mut a = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
            a.extend((0..100_000u32).map(|i| (i % 251) as u8));
            a
        }
        "bigchunked" => {
            let mut a = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n".to_vec();
            for i in 0..64u8 {
                a.extend_from_slice(b"3e8\r\n");
                a.extend(std::iter::repeat_n(b'a' + i % 26, 1000));
                a.extend_from_slice(b"\r\n");
            }
            a.extend_from_slice(b"0\r\nX-Sum: 64000\r\n\r\n");
            a
        }
        "nocontent" => b"HTTP/1.1 204 No Content\r\nX-App: yes\r\n\r\n".to_vec(),
        "redirect" => b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "bighead" => {
            let mut a = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
            for i in 0..40 {
                a.extend_from_slice(format!("X-Big-{i}: {}\r\n", "v".repeat(2000)).as_bytes());
            }
            a.extend_from_slice(b"\r\nok");
            a
        }
        "manyheaders" => {
            let mut a = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
            for i in 0..120 {
                a.extend_from_slice(format!("X-H-{i}: {i}\r\n").as_bytes());
            }
            a.extend_from_slice(b"\r\nok");
            a
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    }
}

/// A raw HTTP/1.1 application: answers [`reply`], records each request head.
async fn application() -> TestApp {
    TestApp::script(|req| {
        let mut a = reply(req.target());
        if req.method() == "HEAD" {
            // No body after the head of an answer to HEAD.
            let at = a.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            a.truncate(at);
        }
        app::answer(a)
    })
    .start()
    .await
}

/// A response as a client sees it, normalised: status, header fields
/// (lowercased names, `date` left out), the decoded body and trailers.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    headers: BTreeSet<(String, String)>,
    body: Vec<u8>,
    trailers: BTreeSet<(String, String)>,
}

/// The framing fields each engine writes itself, spelled its own way.
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

fn fields(text: &str) -> BTreeSet<(String, String)> {
    text.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| {
            let n = n.trim();
            let n = match FRAMING.iter().any(|f| n.eq_ignore_ascii_case(f)) {
                true => n.to_ascii_lowercase(),
                false => n.to_string(),
            };
            (n, v.trim().to_string())
        })
        .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
        .collect()
}

fn parse(raw: &[u8], head_only: bool) -> Seen {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = fields(head.split_once("\r\n").unwrap().1);
    let mut rest = &raw[end..];
    let (mut body, mut trailers) = (Vec::new(), BTreeSet::new());
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
    if head_only {
    } else if chunked {
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                let end = rest.windows(2).position(|w| w == b"\r\n").map_or(0, |_| {
                    rest.windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(0, |p| p + 2)
                });
                // Names as written: both engines write them lowercase.
                trailers = fields(&String::from_utf8_lossy(&rest[..end]));
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    } else {
        body = rest.to_vec();
    }
    Seen {
        status,
        headers,
        body,
        trailers,
    }
}

/// Send one request on a fresh HTTP/1.1 TLS connection (`Connection:
/// close`) and read the whole answer.
async fn ask(gw: &TestGateway, method: &str, path: &str, extra: &str) -> Seen {
    let mut tls = gw.tls_stream().await;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: diff/1\r\nAccept: */*\r\n{extra}Connection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut raw)).await;
    parse(&raw, method == "HEAD")
}

/// What the application received: method, target made the same, fields.
/// `Connection` is left out: how each engine manages its own connections
/// to the application is its own (hyper closes after a HEAD, whose answer
/// framing it cannot check; the relay can, and keeps the connection).
fn received(head: &str) -> (String, BTreeSet<(String, String)>) {
    let (line, rest) = head.split_once("\r\n").unwrap();
    let line = line.replace("/h/", "/x/").replace("/r/", "/x/");
    let f = fields(rest)
        .into_iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("connection"))
        .collect();
    (line, f)
}

#[tokio::test]
async fn the_relay_and_hyper_forward_by_one_policy() {
    one_policy("").await;
}

/// The same with answers buffered past a memory bound of 1 KiB (the rest
/// of each in a temporary file), and with answer buffering off.
#[tokio::test]
async fn the_relay_and_hyper_forward_by_one_policy_spilled_or_unbuffered() {
    one_policy(", buffering: { memory: 1KiB }").await;
    one_policy(", buffering: { response: off }").await;
}

/// Every case through both engines, to a backend with the keys `keys`.
async fn one_policy(keys: &str) {
    let app = application().await;
    let (url, heads) = (&app.url, &app.heads);
    let extra = r#"
taps:
  - match: { path: "/h/{case}", status: "418" }
    channel: public.never
    data: "{response.status}"
"#;
    let gw = TestGateway::builder()
        .backend(url)
        .backend_keys(keys)
        .section(extra)
        .start()
        .await;
    let cases = [
        ("GET", "plain", ""),
        ("HEAD", "plain", ""),
        ("GET", "chunked", ""),
        ("GET", "chunked", "TE: trailers\r\n"),
        ("GET", "empty-chunked", ""),
        ("GET", "big", ""),
        ("HEAD", "big", ""),
        ("GET", "bigchunked", ""),
        ("GET", "bigchunked", "TE: trailers\r\n"),
        ("GET", "nocontent", ""),
        ("GET", "redirect", ""),
        ("GET", "bighead", ""),
        ("GET", "manyheaders", ""),
        (
            "GET",
            "plain",
            "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Host: evil\r\n",
        ),
        // Two `Cookie` lines: the relay leaves those to hyper, which joins
        // them (both roads are hyper's here, compared all the same).
        ("GET", "plain", "Cookie: a=1\r\nCookie: b=2\r\n"),
    ];
    for (method, case, extra) in cases {
        heads.lock().unwrap().clear();
        // Each by the engine it is meant for (the tap sends `/h/` to hyper).
        let before = gw.relayed().await;
        let relay = ask(&gw, method, &format!("/r/{case}"), extra).await;
        let relayed = if extra.contains("Cookie: b=2") {
            "hyper"
        } else {
            "relay"
        };
        assert_eq!(
            gw.engine_since(before).await,
            relayed,
            "{method} /r/{case} {extra:?}"
        );
        let relay_got = heads.lock().unwrap().pop();
        let before = gw.relayed().await;
        let hyper = ask(&gw, method, &format!("/h/{case}"), extra).await;
        assert_eq!(
            gw.engine_since(before).await,
            "hyper",
            "{method} /h/{case} {extra:?}"
        );
        let hyper_got = heads.lock().unwrap().pop();
        if relay != hyper {
            let short = |s: &Seen| format!("{s:?}").chars().take(600).collect::<String>();
            panic!(
                "{method} {case} {extra:?}: what the client got differs:\nrelay {}\nhyper {}",
                short(&relay),
                short(&hyper)
            );
        }
        assert_eq!(
            relay_got.as_deref().map(received),
            hyper_got.as_deref().map(received),
            "{method} {case} {extra:?}: what the application received"
        );
    }
    // Whole and intact, not only alike (buffering holds them on both).
    for road in ["r", "h"] {
        let big = ask(&gw, "GET", &format!("/{road}/big"), "").await;
        let want: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert!(big.body == want, "/{road}/big arrived intact");
        let chunked = ask(&gw, "GET", &format!("/{road}/bigchunked"), "").await;
        let want: Vec<u8> = (0..64u8)
            .flat_map(|i| std::iter::repeat_n(b'a' + i % 26, 1000))
            .collect();
        assert!(chunked.body == want, "/{road}/bigchunked arrived intact");
    }
    // The policy itself, on both: trailers only to a client that asked.
    let with = ask(&gw, "GET", "/r/chunked", "TE: trailers\r\n").await;
    assert!(
        with.trailers.contains(&("x-sum".into(), "42".into())),
        "{with:?}"
    );
    let without = ask(&gw, "GET", "/r/chunked", "").await;
    assert!(without.trailers.is_empty(), "{without:?}");
    assert_eq!(without.body, b"hello world");
    assert_eq!(ask(&gw, "GET", "/r/bighead", "").await.status, 502);
}

#[tokio::test]
async fn the_relay_and_hyper_refuse_a_busy_application_alike() {
    let app = TestApp::named("busy").start().await;
    let gw = TestGateway::builder()
        .backend(&app.url)
        .backend_keys(", max_connections: 1, queue: { size: 0 }")
        .section(
            r#"
taps:
  - match: { path: "/h/{case}", status: "418" }
    channel: public.never
    data: "{response.status}"
"#,
        )
        .start()
        .await;
    // The one slot taken.
    let held = tokio::spawn(gw.fresh_client().get(gw.url("/hold/1")).send());
    eventually(5, "the slot taken", || async { app.busy.now() == 1 }).await;
    for method in ["GET", "HEAD"] {
        let before = gw.relayed().await;
        let relay = ask(&gw, method, "/r/x", "").await;
        assert_eq!(gw.engine_since(before).await, "relay", "{method}");
        let before = gw.relayed().await;
        let hyper = ask(&gw, method, "/h/x", "").await;
        assert_eq!(gw.engine_since(before).await, "hyper", "{method}");
        assert_eq!(relay.status, 503, "{method}: {relay:?}");
        assert!(
            relay.headers.contains(&("retry-after".into(), "1".into())),
            "{relay:?}"
        );
        assert_eq!(relay, hyper, "{method}: both engines answer alike");
    }
    app.release.add_permits(1);
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
}
