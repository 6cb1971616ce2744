//! Real Chromium over WebDriver, and the stand-in site the test pages come from.
//!
//! Each test starts its own `chromedriver` on a free port and one headless
//! Chromium session; both are ended when the [`Browser`] is finished or
//! dropped. The site is a small backend behind the gateway, so the pages are
//! same-origin with the realtime endpoints, exactly as in production.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

use crate::common::{TestApp, TestGateway};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The JWT secret of [`gateway`]'s config; the site mints tokens with it.
pub const SECRET: &str = "browser-test-secret";

const PAGE: &str = include_str!("page.html");

/// A gateway in front of the test site, with JWT auth and client messages on.
pub async fn gateway(extra: &str) -> TestGateway {
    gateway_with_realtime("", extra).await
}

/// [`gateway`] with more `realtime:` keys (`realtime`, indented lines).
pub async fn gateway_with_realtime(realtime: &str, extra: &str) -> TestGateway {
    let site = site().await;
    let auth = format!(
        "auth:\n  jwt: {{ hs256_secret: \"{SECRET}\", leeway: 0s }}\nclient_messages: {{ forward_to: /inbound }}\n{extra}"
    );
    TestGateway::builder()
        .backend(&format!("http://{site}"))
        .realtime(&format!(
            "  heartbeat: 15s\n  poll_timeout: 10s\n{realtime}"
        ))
        .section(&auth)
        .start()
        .await
}

/// The site: `/page.html` (the test page), `/token` (mints a JWT), `/inbound`
/// (answers client `send`s).
pub async fn site() -> SocketAddr {
    TestApp::http(|_, req| async move { serve(req).await.unwrap_or_else(|e| match e {}) })
        .start()
        .await
        .addr()
}

async fn serve(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let q: std::collections::HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let (ctype, body) = match req.uri().path() {
        "/page.html" => ("text/html; charset=utf-8", PAGE.to_string()),
        "/token" => {
            let channels: Vec<String> = q
                .get("channels")
                .map(|c| {
                    c.split(',')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let ttl = q.get("ttl").and_then(|t| t.parse().ok()).unwrap_or(60);
            let sub = q.get("sub").cloned().unwrap_or_else(|| "tester".into());
            let token = pushgate::auth::mint_hs256(
                SECRET,
                &sub,
                &channels,
                Duration::from_secs(ttl),
                None,
                None,
            )
            .unwrap();
            ("text/plain", token)
        }
        "/inbound" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let got: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            ("application/json", json!({ "echo": got }).to_string())
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            return Ok(r);
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert("content-type", ctype.parse().unwrap());
    r.headers_mut()
        .insert("cache-control", "no-store".parse().unwrap());
    Ok(r)
}

/// A headless Chromium session with its own chromedriver.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    pub async fn start() -> Browser {
        Self::start_with(&[]).await
    }

    /// [`start`](Self::start) with more Chromium switches (`--disable-http2`).
    pub async fn start_with(switches: &[&str]) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser tests need the Debian packages `chromium` and \
                 `chromium-driver` (./scripts/test installs them: apt-get install {package})"
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // Its own process group, which the Chromium it starts joins: a test
        // that panics still takes the whole browser down with it (see Drop).
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            "--disable-crash-reporter",
            "--disable-breakpad",
        ];
        args.extend_from_slice(switches);
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": args,
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut browser = Browser {
            client: loop {
                let attempt = ClientBuilder::rustls()
                    .expect("rustls connector")
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await;
                match attempt {
                    Ok(c) => break c,
                    Err(e) if tokio::time::Instant::now() > deadline => {
                        panic!("no WebDriver session from chromedriver at {url}: {e}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            },
            driver,
        };
        browser.set_script_timeout().await;
        browser
    }

    async fn set_script_timeout(&mut self) {
        let t = fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(20)),
            Some(Duration::from_secs(30)),
            Some(Duration::from_secs(0)),
        );
        self.client.update_timeouts(t).await.unwrap();
    }

    /// Open the test page on `gw` with the given query string, and wait for
    /// the client to exist.
    pub async fn open_page(&self, gw: &TestGateway, query: &str) {
        self.client
            .goto(&gw.url(&format!("/page.html?{query}")))
            .await
            .unwrap();
        self.until(15, "the page's client exists", "return !!window.rt")
            .await;
    }

    /// Run `script` (a function body) in the page; returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Text of the element with this id.
    pub async fn text(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Lines the page rendered for received messages (`channel|id|data`).
    pub async fn received(&self) -> Vec<String> {
        let v = self
            .js("return [...document.querySelectorAll('#log li')].map((li) => li.textContent)")
            .await;
        serde_json::from_value(v).unwrap()
    }

    /// The page's event lines (`connect websocket`, `reset small.r`, …).
    pub async fn events(&self) -> Vec<String> {
        let v = self
            .js("return [...document.querySelectorAll('#events li')].map((li) => li.textContent)")
            .await;
        serde_json::from_value(v).unwrap()
    }

    /// Wait until `script` returns true in the page, or fail after `secs`.
    pub async fn until(&self, secs: u64, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Value::Bool(true)) = self.client.execute(script, vec![]).await {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let page = self
                    .client
                    .execute(
                        "return document.body ? document.body.innerText.slice(0, 1500) : ''",
                        vec![],
                    )
                    .await
                    .unwrap_or_default();
                panic!(
                    "within {secs}s: {what}\npage text:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the page shows `n` received messages.
    pub async fn until_count(&self, n: usize, secs: u64) {
        self.until(
            secs,
            &format!("{n} messages received"),
            &format!("return document.querySelectorAll('#log li').length >= {n}"),
        )
        .await;
    }

    /// Wait until the page's client says it is connected over `transport`.
    pub async fn until_transport(&self, transport: &str, secs: u64) {
        self.until(
            secs,
            &format!("connected over {transport}"),
            &format!(
                "return document.getElementById('state').textContent === 'connected' && \
                 document.getElementById('transport').textContent === '{transport}'"
            ),
        )
        .await;
    }

    /// Save a screenshot as `name` in the test target directory; returns its path.
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// End the session (Chromium exits) and the driver.
    pub async fn finish(self) {
        let _ = self.client.clone().close().await;
        // Drop ends the driver and anything left of the browser.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver's process group holds Chromium and its helpers too.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `channel|id|data` lines expected for `data` published in order.
pub fn lines(channel: &str, ids: &[String], data: impl Iterator<Item = Value>) -> Vec<String> {
    ids.iter()
        .zip(data)
        .map(|(id, d)| format!("{channel}|{id}|{d}"))
        .collect()
}

/// Publish `range` as numbers on `channel`, one request each; returns their ids.
pub async fn publish_range(
    gw: &TestGateway,
    channel: &str,
    range: std::ops::Range<u64>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in range {
        ids.push(gw.publish_one(channel, json!(i)).await);
    }
    ids
}

/// Assert the page received exactly `expected`, in order, nothing twice.
pub async fn assert_received(b: &Browser, expected: &[String]) {
    let got = b.received().await;
    assert_eq!(
        got.len(),
        expected.len(),
        "wrong number of messages (duplicates or losses)"
    );
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g, e, "message {i} differs");
    }
}
