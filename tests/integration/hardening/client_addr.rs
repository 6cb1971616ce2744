//! Who the client is. A client's own `X-Forwarded-For`, `Forwarded`,
//! `X-Real-IP` and `True-Client-IP` never reach the application as the
//! gateway's word: they are replaced, not appended to (an application that
//! reads the left-most address would believe the client). Behind a trusted
//! front (`listen.trusted_proxies`) the client is the right-most untrusted
//! address the front vouches for, or the source of a PROXY protocol header
//! (`listen.proxy_protocol`), and that address keys the limits.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{VIA_HYPER, exchange};
use crate::common::*;

const FORGED: &str = "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n";

/// A gateway in front of the echo backend, with `listen` keys added and
/// `limits` set.
async fn gateway(listen: &str, limits: &str) -> TestGateway {
    let backend = backend::start().await;
    TestGateway::builder()
        .tag("client-addr")
        .backend(&format!("http://{backend}"))
        .listen_keys(listen)
        .limits(limits)
        .start()
        .await
}

/// The echo backend's view of the request headers.
fn headers_of(answer: &str) -> Value {
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {answer}"));
    v["headers"].clone()
}

/// The same request by both engines: a plain GET (relay), a GET hyper
/// takes, and a POST.
fn requests(extra: &str) -> Vec<(&'static str, String)> {
    [("relay", "GET", ""), ("hyper", "GET", VIA_HYPER), ("hyper POST", "POST", "Content-Length: 0\r\n")]
        .into_iter()
        .map(|(way, method, more)| {
            (
                way,
                format!(
                    "{method} /who HTTP/1.1\r\nHost: app.example\r\n{extra}{more}Connection: close\r\n\r\n"
                ),
            )
        })
        .collect()
}

/// The application's view of `raw`'s headers, checking that the engine
/// `way` names carried it.
async fn seen(gw: &TestGateway, way: &str, raw: &str) -> Value {
    let before = gw.relayed().await;
    let h = headers_of(&exchange(gw, raw.as_bytes()).await);
    let engine = if way == "relay" { "relay" } else { "hyper" };
    assert_eq!(gw.engine_since(before).await, engine, "{way}");
    h
}

#[tokio::test]
async fn a_clients_own_forwarding_fields_are_replaced() {
    let gw = gateway("", "  per_client: {}").await;
    for (way, raw) in requests(FORGED) {
        let h = seen(&gw, way, &raw).await;
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{way}: {h}");
        assert_eq!(h["x-real-ip"], "127.0.0.1", "{way}: {h}");
        let forwarded = h["forwarded"].as_str().unwrap();
        assert!(
            forwarded.starts_with("for=127.0.0.1;proto=https"),
            "{way}: {h}"
        );
        assert!(h.get("true-client-ip").is_none(), "{way}: {h}");
        assert!(!h.to_string().contains("6.6.6.6"), "{way}: {h}");
    }
}

/// Hold an SSE stream open as a client behind a front that names it in
/// `X-Forwarded-For`; the status it got.
async fn sse_as(gw: &TestGateway, xff: &str) -> (u16, Option<reqwest::Response>) {
    let resp = gw
        .fresh_client()
        .get(gw.url("/realtime/sse?channels=public.addr"))
        .header("x-forwarded-for", xff)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, (status == 200).then_some(resp))
}

#[tokio::test]
async fn a_trusted_front_names_the_client_for_limits_and_the_application() {
    let limits = "  per_ip: { connections: 2 }";
    let gw = gateway(", trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]", limits).await;
    for (way, raw) in
        requests("X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.1.1\r\nForwarded: for=9.9.9.9\r\n")
    {
        let h = seen(&gw, way, &raw).await;
        assert_eq!(
            h["x-forwarded-for"], "6.6.6.6, 203.0.113.7, 10.1.1.1, 127.0.0.1",
            "{way}: the front's list is kept and the front appended: {h}"
        );
        assert_eq!(h["x-real-ip"], "203.0.113.7", "{way}: {h}");
        // `Forwarded` is not the field this front names clients in: what
        // the client wrote there is replaced by the client the front named.
        let forwarded = h["forwarded"].as_str().unwrap();
        assert!(
            forwarded.starts_with("for=203.0.113.7, for=127.0.0.1;proto=https"),
            "{way}: {h}"
        );
    }
    // A line the front wrote after bytes that are not text (nginx writes
    // `<what the client sent>, <the client>` on one line) still names the
    // client; the client's own `Forwarded` is no way around it.
    for (way, raw) in
        requests("X-Forwarded-For: \u{80}, 203.0.113.8\r\nForwarded: for=198.51.100.77\r\n")
    {
        let h = seen(&gw, way, &raw).await;
        assert_eq!(h["x-real-ip"], "203.0.113.8", "{way}: {h}");
        assert_eq!(
            h["x-forwarded-for"], "unknown, 203.0.113.8, 127.0.0.1",
            "{way}: {h}"
        );
        assert!(!h.to_string().contains("198.51.100.77"), "{way}: {h}");
    }
    // Each client behind the front has its own per_ip count: two streams
    // each, the third of one of them refused.
    let mut held = Vec::new();
    for xff in [
        "198.51.100.1",
        "1.1.1.1, 198.51.100.2",
        "198.51.100.1",
        "9.9.9.9, 198.51.100.2",
    ] {
        let (status, stream) = sse_as(&gw, xff).await;
        assert_eq!(status, 200, "{xff}");
        held.push(stream);
    }
    assert_eq!(sse_as(&gw, "198.51.100.1").await.0, 429);
    assert_eq!(sse_as(&gw, "198.51.100.3").await.0, 200);
    // The same over HTTP/1, where an SSE subscriber is served without
    // hyper: 198.51.100.2 is at its two, 198.51.100.4 is not.
    let raw = |xff: &str| {
        format!(
            "GET /realtime/sse?channels=public.addr HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: {xff}\r\n\r\n"
        )
    };
    let mut open = gw.tls_stream().await;
    open.write_all(raw("198.51.100.4").as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 12];
    open.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let refused = exchange(&gw, raw("198.51.100.2").as_bytes()).await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");

    // Without the front trusted, the same header changes nothing: every
    // stream is the peer's.
    let gw = gateway("", limits).await;
    let (a, _a) = sse_as(&gw, "198.51.100.1").await;
    let (b, _b) = sse_as(&gw, "198.51.100.2").await;
    assert_eq!((a, b), (200, 200));
    assert_eq!(sse_as(&gw, "198.51.100.3").await.0, 429);
}

/// A TLS connection that first writes `header` as a TCP front would.
async fn through_front(
    gw: &TestGateway,
    header: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut tcp = tokio::net::TcpStream::connect(gw.public).await?;
    tcp.write_all(header).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    gw.tls_connector().connect(name, tcp).await
}

/// One request on a connection opened with `header`; the answer, or
/// `None` when the connection was refused.
async fn ask_through(gw: &TestGateway, header: &[u8], path: &str) -> Option<String> {
    let mut tls = through_front(gw, header).await.ok()?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tls.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    (!answer.is_empty()).then_some(answer)
}

fn v2_tcp4(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

#[tokio::test]
async fn the_proxy_protocol_names_the_client_and_is_required() {
    let gw = gateway(
        ", proxy_protocol: true",
        "  per_ip: { connects: { rate: 1/m, burst: 1 } }",
    )
    .await;
    // v1 and v2 name the client; its own X-Forwarded-For is replaced.
    let answer = ask_through(
        &gw,
        b"PROXY TCP4 203.0.113.5 127.0.0.1 40000 443\r\n",
        "/who",
    )
    .await
    .expect("v1 accepted");
    let h = headers_of(&answer);
    assert_eq!(h["x-forwarded-for"], "203.0.113.5", "{h}");
    assert_eq!(h["x-real-ip"], "203.0.113.5", "{h}");
    let answer = ask_through(&gw, &v2_tcp4([198, 51, 100, 8], 40001), "/who")
        .await
        .expect("v2 accepted");
    assert_eq!(headers_of(&answer)["x-forwarded-for"], "198.51.100.8");

    // per_ip.connects counts the source the header names: 203.0.113.5
    // has spent its one connect, 192.0.2.9 has not.
    let again = ask_through(
        &gw,
        b"PROXY TCP4 203.0.113.5 127.0.0.1 40002 443\r\n",
        "/who",
    )
    .await
    .unwrap();
    assert!(again.starts_with("HTTP/1.1 429"), "{again}");
    let other = ask_through(&gw, b"PROXY TCP4 192.0.2.9 127.0.0.1 40003 443\r\n", "/who")
        .await
        .unwrap();
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");

    // Without a header, or with a broken one, the connection is closed.
    assert!(through_front(&gw, b"").await.is_err(), "no header: refused");
    assert!(
        ask_through(&gw, b"PROXY TCP4 203.0.113.500 127.0.0.1 1 443\r\n", "/who")
            .await
            .is_none(),
        "a malformed header: refused"
    );
    assert_eq!(
        refused(&gw).await,
        2,
        "each refusal counted, and only those"
    );
}

/// `pushgate_proxy_protocol_refused_total`.
async fn refused(gw: &TestGateway) -> u64 {
    let metrics = gw.metrics_text().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("pushgate_proxy_protocol_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no counter in {metrics}"))
}

/// A front that names clients in `Forwarded` (`listen.real_ip_header`):
/// only that field is read, so a client's own `X-Forwarded-For`, which
/// such a front passes on untouched, names nobody.
#[tokio::test]
async fn only_the_configured_field_names_the_client() {
    let gw = gateway(
        ", trusted_proxies: [127.0.0.1], real_ip_header: forwarded",
        "  per_client: {}",
    )
    .await;
    for (way, raw) in requests(
        "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=1.1.1.1, for=203.0.113.9;proto=https\r\n",
    ) {
        let h = seen(&gw, way, &raw).await;
        assert_eq!(h["x-real-ip"], "203.0.113.9", "{way}: {h}");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1", "{way}: {h}");
        assert!(
            h["forwarded"]
                .as_str()
                .unwrap()
                .starts_with("for=1.1.1.1, for=203.0.113.9;proto=https, for=127.0.0.1;"),
            "{way}: {h}"
        );
    }
}

#[tokio::test]
async fn a_header_in_pieces_local_and_unknown_are_read_right() {
    let gw = gateway(
        ", proxy_protocol: true, trusted_proxies: [127.0.0.1]",
        "  per_client: {}",
    )
    .await;
    // A header cut over two segments is waited for.
    let header = b"PROXY TCP4 203.0.113.5 127.0.0.1 40000 443\r\n";
    let mut tcp = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(&header[..20]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tcp.write_all(&header[20..]).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = gw
        .tls_connector()
        .connect(name, tcp)
        .await
        .expect("accepted");
    tls.write_all(b"GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let h = headers_of(&String::from_utf8_lossy(&answer));
    assert_eq!(h["x-real-ip"], "203.0.113.5", "{h}");

    // LOCAL: the front's own connection; its field is believed.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let answer = ask_through(&gw, local, "/who")
        .await
        .expect("LOCAL accepted");
    assert_eq!(headers_of(&answer)["x-real-ip"], "6.6.6.6");
    // UNKNOWN: someone's the front does not name; what it writes is no
    // front's word.
    let answer = ask_through(&gw, b"PROXY UNKNOWN\r\n", "/who")
        .await
        .expect("UNKNOWN accepted");
    assert_eq!(headers_of(&answer)["x-real-ip"], "127.0.0.1");
}

#[tokio::test]
async fn only_listed_fronts_may_send_a_proxy_header() {
    let gw = gateway(
        ", proxy_protocol: true, trusted_proxies: [10.0.0.0/8]",
        "  per_client: {}",
    )
    .await;
    assert!(
        ask_through(
            &gw,
            b"PROXY TCP4 203.0.113.5 127.0.0.1 40000 443\r\n",
            "/who"
        )
        .await
        .is_none(),
        "a peer that is not a listed front is refused"
    );
    // Refused for that reason, not lost to a stall or a failed handshake.
    assert_eq!(refused(&gw).await, 1);
}
