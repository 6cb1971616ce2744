//! Routes and named upstreams: requests go to the upstream their host and
//! path choose (`routes:`, first match wins, the rest to `backend:`), with
//! the prefix stripped where a route says so, the same through both HTTP
//! engines (a plain HTTP/1 GET through the relay, a POST or an HTTP/2
//! request through hyper). Client `send` reaches a named upstream, taps
//! fire on routed requests, and routes change by reload without a restart
//! while the upstreams that stay keep their connections.

pub(crate) mod app;

use std::sync::atomic::Ordering;

use reqwest::{Method, Version};
use serde_json::{Value, json};

use crate::common::*;
use app::{App, PROBE, app, went};

const HOSTS: &[&str] = &[
    "api.example.com",
    "a.tenants.example",
    "tenants.example",
    "other.example",
    "localhost",
];

/// A client that reaches the gateway under every name in `HOSTS` (the test
/// certificate is for localhost only): HTTP/1.1 sending `PROBE` in its
/// case, or HTTP/2.
fn client(gw: &TestGateway, http1: bool) -> reqwest::Client {
    let build = |http1: bool| {
        let mut b = reqwest::Client::builder().danger_accept_invalid_certs(true);
        for host in HOSTS {
            b = b.resolve(host, gw.public);
        }
        if http1 {
            b = b.http1_only().http1_title_case_headers();
        }
        b.build().unwrap()
    };
    build(http1)
}

/// The three roads: GETs over HTTP/1.1 (relay), POSTs over HTTP/1.1 on
/// connections of their own (hyper: the first request the relay does not
/// take hands its connection to hyper for good), and HTTP/2 (hyper).
struct Roads {
    gets: reqwest::Client,
    posts: reqwest::Client,
    http2: reqwest::Client,
}

fn roads(gw: &TestGateway) -> Roads {
    Roads {
        gets: client(gw, true),
        posts: client(gw, true),
        http2: client(gw, false),
    }
}

async fn ask(
    gw: &TestGateway,
    client: &reqwest::Client,
    method: Method,
    host: &str,
    path: &str,
) -> (String, String, String) {
    let url = format!("https://{host}:{}{path}", gw.public.port());
    let mut req = client.request(method.clone(), url).header(PROBE, "1");
    if method == Method::POST {
        req = req.body("posted");
    }
    let before = gw.relayed().await;
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{method} {host}{path}");
    let mut v: Value = resp.json().await.unwrap();
    v["engine"] = gw.engine_since(before).await.into();
    went(&v)
}

/// Where a request goes, by all three roads: the same app and path each
/// time, and each road the engine it should be.
async fn routed(gw: &TestGateway, roads: &Roads, host: &str, path: &str) -> (String, String) {
    let (app, got, engine) = ask(gw, &roads.gets, Method::GET, host, path).await;
    assert_eq!(engine, "relay", "a plain HTTP/1 GET takes the relay");
    let by_hyper = ask(gw, &roads.posts, Method::POST, host, path).await;
    assert_eq!(
        by_hyper,
        (app.clone(), got.clone(), "hyper".to_owned()),
        "POST {host}{path} routed like the GET"
    );
    let resp = roads
        .http2
        .get(format!("https://{host}:{}{path}", gw.public.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    let (a2, p2, _) = went(&resp.json().await.unwrap());
    assert_eq!(
        (&a2, &p2),
        (&app, &got),
        "HTTP/2 {host}{path} routed like the GET"
    );
    (app, got)
}

fn upstreams_yaml(apps: &[(&str, &App, &str)]) -> String {
    let mut y = String::from("upstreams:\n");
    for (name, app, base) in apps {
        y.push_str(&format!(
            "  {name}: {{ url: \"{}{base}\", timeout: 5s }}\n",
            app.url
        ));
    }
    y
}

#[tokio::test]
async fn host_path_order_strip_and_default_route_alike_in_both_engines() {
    let (default, api, tenant, files) = (
        app("default").await,
        app("api").await,
        app("tenant").await,
        app("files").await,
    );
    let extra = format!(
        "{}routes:\n\
         \x20 - {{ host: api.example.com, path: /v2/, upstream: api }}\n\
         \x20 - {{ host: \"*.tenants.example\", upstream: tenant }}\n\
         \x20 - {{ path: /v2/, upstream: files }}\n\
         \x20 - {{ path: /assets/, upstream: files, strip_prefix: true }}\n",
        upstreams_yaml(&[
            ("api", &api, ""),
            ("tenant", &tenant, ""),
            ("files", &files, "/files")
        ])
    );
    let gw = TestGateway::builder()
        .backend(&default.url)
        .section(&extra)
        .start()
        .await;
    let c = roads(&gw);
    let cases = [
        // Exact host and path prefix; the query goes along.
        ("api.example.com", "/v2/users?x=1", "api", "/v2/users?x=1"),
        // A plain prefix: `/v2/` is not `/v2`.
        ("api.example.com", "/v2", "default", "/v2"),
        ("api.example.com", "/other", "default", "/other"),
        // Any subdomain, not the bare domain.
        ("a.tenants.example", "/x", "tenant", "/x"),
        ("tenants.example", "/x", "default", "/x"),
        // First match wins: api.example.com/v2/ was taken above; any other
        // host's /v2/ goes to files, whose base path goes in front.
        ("other.example", "/v2/x", "files", "/files/v2/x"),
        // strip_prefix: the prefix goes, a leading `/` stays, then the base.
        (
            "other.example",
            "/assets/app.js?v=3",
            "files",
            "/files/app.js?v=3",
        ),
        ("localhost", "/assets/", "files", "/files/"),
        // No route: default.
        ("localhost", "/plain", "default", "/plain"),
    ];
    for (host, path, want_app, want_path) in cases {
        let got = routed(&gw, &c, host, path).await;
        assert_eq!(
            got,
            (want_app.to_owned(), want_path.to_owned()),
            "{host}{path}"
        );
    }
}

#[tokio::test]
async fn client_send_goes_to_the_upstream_client_messages_names() {
    let (default, api) = (app("default").await, app("api").await);
    let extra = format!(
        "{}client_messages: {{ forward_to: /inbound, upstream: api }}\n",
        upstreams_yaml(&[("api", &api, "/base")])
    );
    let gw = TestGateway::builder()
        .backend(&default.url)
        .section(&extra)
        .start()
        .await;
    let r = gw
        .http
        .post(gw.url("/realtime/send"))
        .json(&json!({"data": {"hello": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["app"], "api");
    assert_eq!(v["data"]["path"], "/base/inbound");
    assert_eq!(v["data"]["body"], r#"{"hello":1}"#);
    assert!(!default.has_seen("/inbound"));
}

#[tokio::test]
async fn taps_fire_on_routed_requests_and_may_name_the_upstream() {
    let (default, api) = (app("default").await, app("api").await);
    let extra = format!(
        "{}routes:\n  - {{ path: /api/, upstream: api, strip_prefix: true }}\n\
         taps:\n\
         \x20 - match: {{ method: POST, path: /api/orders, upstream: default }}\n\
         \x20   channel: public.routed\n    event: wrong_upstream\n\
         \x20 - match: {{ method: POST, path: /api/orders, upstream: api }}\n\
         \x20   channel: public.routed\n    event: created\n    data: \"{{response.body}}\"\n\
         \x20 - match: {{ method: GET, path: /api/items }}\n\
         \x20   channel: public.routed\n    event: listed\n    data: \"{{response.body}}\"\n",
        upstreams_yaml(&[("api", &api, "")])
    );
    let gw = TestGateway::builder()
        .backend(&default.url)
        .section(&extra)
        .start()
        .await;
    let mut sse = gw.sse("/realtime/sse?channels=public.routed", None).await;
    let r = gw
        .http1
        .post(gw.url("/api/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = sse.expect().await;
    assert_eq!(e.event, "created");
    let data = e.json()["data"].clone();
    assert_eq!(
        (data["app"].as_str(), data["path"].as_str()),
        (Some("api"), Some("/orders")),
        "the tap matched the client's path; the app got the stripped one"
    );
    // A tapped GET leaves the relay for hyper, and is routed the same.
    let r = gw
        .http1
        .get(gw.url("/api/items?page=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = sse.expect().await;
    assert_eq!(e.event, "listed");
    assert_eq!(e.json()["data"]["path"], "/items?page=2");
    // The tap on the other upstream never fired: the next event is this one.
    gw.publish_one("public.routed", json!("marker")).await;
    let e = sse.expect().await;
    assert_eq!(e.json()["data"], "marker");
}

fn reload(gw: &TestGateway, text: &str) -> Result<(), String> {
    std::fs::write(gw.config_path(), text).unwrap();
    gw.reload().map_err(|e| e.to_string())
}

#[tokio::test]
async fn routes_change_by_reload_and_kept_upstreams_keep_their_connections() {
    let (default, api) = (app("default").await, app("api").await);
    let gw = TestGateway::builder().backend(&default.url).start().await;
    let base = std::fs::read_to_string(gw.config_path()).unwrap();
    // One keep-alive client connection throughout: routes are read per request.
    let http1 = client(&gw, true);
    let get = |path: &'static str| ask(&gw, &http1, Method::GET, "localhost", path);
    assert_eq!(get("/v2/a").await.0, "default");

    let upstreams = upstreams_yaml(&[("api", &api, "")]);
    let with_route = format!(
        r#"{base}{upstreams}routes:
  - {{ path: /v2/, upstream: api }}
"#
    );
    reload(&gw, &with_route).unwrap();
    assert_eq!(
        get("/v2/b").await,
        ("api".into(), "/v2/b".into(), "relay".into())
    );
    assert_eq!(get("/other").await.0, "default");
    assert_eq!(api.connections.load(Ordering::SeqCst), 1);

    // A reload that keeps `api` as it is keeps its connection.
    let renamed_channel = with_route.replace("public.*", "public2.*");
    reload(&gw, &renamed_channel).unwrap();
    assert_eq!(get("/v2/c").await.0, "api");
    assert_eq!(
        api.connections.load(Ordering::SeqCst),
        1,
        "the upstream kept across the reload reused its connection"
    );

    // An invalid route is refused, naming where; the old routes stay.
    let bad = format!(
        r#"{base}{upstreams}routes:
  - {{ path: /v2/, upstream: nope }}
"#
    );
    let error = reload(&gw, &bad).unwrap_err();
    assert!(error.contains("routes[0].upstream"), "{error}");
    assert!(error.contains("names no upstream"), "{error}");
    assert_eq!(get("/v2/d").await.0, "api", "the routes in force stay");

    // Removing the route (written out, as a reload requires) restores default.
    let without = format!(
        r#"{base}upstreams: {{}}
routes: []
"#
    );
    reload(&gw, &without).unwrap();
    assert_eq!(get("/v2/e").await.0, "default");
}

#[tokio::test]
async fn a_removed_upstream_finishes_its_requests_in_flight() {
    let (default, slow) = (app("default").await, app("slow").await);
    let config = TestGateway::builder().backend(&default.url);
    let routes = format!(
        r#"{}routes:
  - {{ path: /hold, upstream: slow }}
"#,
        upstreams_yaml(&[("slow", &slow, "")])
    );
    let gw = config.clone().section(&routes).start().await;
    let base = config.yaml(&gw.dir);
    let (http1, http2) = (client(&gw, true), client(&gw, false));
    let url = |path: &str| format!("https://localhost:{}{path}", gw.public.port());
    let by_relay = tokio::spawn(http1.get(url("/hold/1")).send());
    let by_hyper = tokio::spawn(http2.get(url("/hold/2")).send());
    eventually(5, "both requests reach the slow upstream", || async {
        slow.has_seen("/hold/1") && slow.has_seen("/hold/2")
    })
    .await;
    reload(
        &gw,
        &format!(
            r#"{base}upstreams: {{}}
routes: []
"#
        ),
    )
    .unwrap();
    slow.release.add_permits(2);
    for pending in [by_relay, by_hyper] {
        let resp = pending.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["app"], "slow", "answered by the upstream it started on");
    }
    default.release.add_permits(1);
    let v: Value = http1
        .get(url("/hold/3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["app"], "default", "the next request takes the new routes");
}

/// Each of `targets` is 400 whether the relay takes it (a plain GET: the
/// relay hands it to hyper, which answers) or hyper does (a POST).
async fn refused_by_both_engines(gw: &TestGateway, targets: &[&str]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for (method, length) in [("GET", ""), ("POST", "Content-Length: 0\r\n")] {
        for target in targets {
            let relayed = gw.relayed().await;
            let mut s = gw.tls_stream().await;
            let head = format!(
                "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{length}Connection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer).await;
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{method} {target}: {answer}"
            );
            assert_eq!(gw.relayed().await, relayed, "{method} {target} relayed");
        }
    }
}

/// With routes in force, a path that an application would resolve to
/// another one than the route matched (`/api/public/../admin`, or the same
/// with encoded dots or slashes) is refused with 400 by both engines and
/// reaches no application. Raw requests: an HTTP client would resolve the
/// dot segments itself.
#[tokio::test]
async fn paths_that_could_escape_their_route_are_refused_by_both_engines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (default, api) = (app("default").await, app("api").await);
    let extra = format!(
        r#"{}routes:
  - {{ path: /api/public/, upstream: api }}
  - {{ path: /assets, upstream: api, strip_prefix: true }}
"#,
        upstreams_yaml(&[("api", &api, "")])
    );
    let gw = TestGateway::builder()
        .backend(&default.url)
        .section(&extra)
        .start()
        .await;
    let targets = [
        // Fine as sent; `/../admin` once `/assets` is stripped.
        "/assets../admin",
        "/assets..;/admin",
        "/api/public/../admin",
        "/api/public/%2e%2e/admin",
        "/api/public/..%2fadmin",
        "/api/public/.%2E/admin",
    ];
    refused_by_both_engines(&gw, &targets).await;
    assert!(
        api.seen.lock().unwrap().is_empty(),
        "nothing reached the api"
    );
    assert!(
        default.seen.lock().unwrap().is_empty(),
        "nothing reached the app"
    );
    // An ordinary routed request still goes where its route says.
    let mut s = gw.tls_stream().await;
    s.write_all(b"GET /api/public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(api.has_seen("/api/public/x"));
}

/// Without any route, an upstream with a base path (`url: …/app`) is the
/// part of the application the operator exposed: `/../admin` would reach
/// it as `/app/../admin`, and `..;` is a dot segment to Tomcat, Jetty and
/// Spring. Every such path is 400 on both engines and reaches nothing.
#[tokio::test]
async fn dot_segments_are_refused_without_routes_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let default = app("default").await;
    let gw = TestGateway::builder()
        .backend(&format!("{}/app", default.url))
        .start()
        .await;
    let targets = [
        "/x/..%3b/admin",
        "/x/%252e%252e/admin",
        "/../admin",
        "/x/%2e%2e/admin",
        "/x/..;/admin",
        "/x/..;jsessionid=1/admin",
        "/x/.;/admin",
        "/x/..%2fadmin",
    ];
    refused_by_both_engines(&gw, &targets).await;
    assert!(
        default.seen.lock().unwrap().is_empty(),
        "nothing reached the app: {:?}",
        default.seen.lock().unwrap()
    );
    let mut s = gw.tls_stream().await;
    s.write_all(b"GET /x/y HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        default.has_seen("/app/x/y"),
        "{:?}",
        default.seen.lock().unwrap()
    );
}
