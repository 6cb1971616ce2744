//! Test harness: a real gateway on 127.0.0.1:0 with a self-signed certificate,
//! a stand-in backend, and real clients (reqwest over TLS, tokio-tungstenite
//! over tokio-rustls, an SSE reader). Helpers wait for conditions with a
//! deadline; no test sleeps to synchronise.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pushgate::{Gateway, Handle, Listeners};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Frame;

pub mod app;
pub mod backend;
pub mod gateway;
pub mod h2_client;
pub mod redis;

#[allow(unused_imports)]
pub use app::TestApp;
#[allow(unused_imports)]
pub use gateway::GatewayBuilder;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A `tracing` writer that keeps every line logged, for tests that read
/// what the gateway logged.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Warnings logged by every gateway of this test binary, from any thread:
/// one global subscriber, installed by the first caller. A thread's default
/// subscriber would not do: client connections are served on the gateway's
/// own threads (`src/loops.rs`). Tests find their lines by what is theirs
/// alone (a server's URL).
pub fn warnings() -> &'static Capture {
    static LOGS: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Capture::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the integration tests");
        logs
    })
}

/// A fresh temp directory per call.
///
/// A test run's directories outlive it (tests hand paths around, and a
/// failed test's files are worth reading), so the first call of a run removes
/// the directories of earlier runs whose process is gone: the temp directory
/// holds at most one finished run's worth.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_finished_runs);
    let dir = std::env::temp_dir().join(format!(
        "pushgate-test-{}-{}-{}",
        tag,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes `pushgate-test-{tag}-{pid}-{n}` directories whose process no
/// longer runs.
fn remove_finished_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("pushgate-test-")) else {
            continue;
        };
        let mut parts = rest.rsplit('-');
        let (Some(_n), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub struct TestGateway {
    pub handle: Option<Handle>,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    /// Negotiates HTTP/2 (ALPN), as browsers do over TLS.
    pub http: reqwest::Client,
    /// HTTP/1.1 only: SSE through it takes the gateway's direct HTTP/1 path.
    pub http1: reqwest::Client,
    pub cert_pem: Vec<u8>,
    /// The admin API's key, when the builder set one.
    pub admin_key: Option<String>,
}

/// The default config ([`GatewayBuilder`]) with `backend` as the
/// application's URL, `realtime` as the realtime lines after `path` and
/// `extra` appended (top-level YAML sections).
pub fn yaml(dir: &std::path::Path, backend: &str, realtime: &str, extra: &str) -> String {
    TestGateway::builder()
        .backend(backend)
        .realtime(realtime)
        .section(extra)
        .yaml(dir)
}

impl TestGateway {
    /// A gateway described part by part: see [`GatewayBuilder`].
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The default gateway: no application behind it.
    pub async fn start() -> TestGateway {
        Self::builder().start().await
    }

    /// Shorthand for the builder with a backend URL, realtime lines and
    /// top-level sections.
    pub async fn with(backend: &str, realtime: &str, extra: &str) -> TestGateway {
        Self::builder()
            .backend(backend)
            .realtime(realtime)
            .section(extra)
            .start()
            .await
    }

    /// Shorthand for the builder with more keys for `backend:` (`keys` is
    /// `, key: value…`), such as `buffering:`.
    pub async fn with_backend_keys(backend: &str, keys: &str, extra: &str) -> TestGateway {
        Self::builder()
            .backend(backend)
            .backend_keys(keys)
            .section(extra)
            .start()
            .await
    }

    pub async fn start_yaml(text: &str, dir: PathBuf) -> TestGateway {
        let path = dir.join("gateway.yaml");
        std::fs::write(&path, text).unwrap();
        let config = pushgate::config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
        let listeners = Listeners {
            public: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
            admin: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        };
        let handle = Gateway::start(config, listeners).expect("gateway starts");
        let cert_pem = std::fs::read(dir.join("gw.crt")).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert_pem).unwrap())
            .resolve("localhost", handle.public_addr())
            .build()
            .unwrap();
        let http1 = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert_pem).unwrap())
            .resolve("localhost", handle.public_addr())
            .http1_only()
            .build()
            .unwrap();
        TestGateway {
            admin_key: None,
            http1,
            public: handle.public_addr(),
            admin: handle.admin_addr(),
            handle: Some(handle),
            dir,
            http,
            cert_pem,
        }
    }

    /// The config file the gateway was started from (and reloads).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("gateway.yaml")
    }

    /// The running gateway's state.
    pub fn state(&self) -> &pushgate::state::AppState {
        self.handle.as_ref().expect("a running gateway").state()
    }

    /// Replace `from` (which must be there) with `to` in the config file.
    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from} not in config:\n{text}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }

    /// Reload the config file, as `SIGHUP` does.
    pub fn reload(&self) -> Result<(), pushgate::reload::ReloadError> {
        pushgate::reload::reload(self.state(), &self.config_path())
    }

    /// [`edit_config`](Self::edit_config), then a reload that must succeed.
    pub fn reload_with(&self, from: &str, to: &str) {
        self.edit_config(from, to);
        self.reload().unwrap_or_else(|e| panic!("reload: {e}"));
    }

    /// `https://localhost:PORT{path}` (the certificate is for localhost).
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.public.port(), path)
    }

    /// The status of a long-poll that answers at once (`timeout=0`).
    pub async fn poll_status(&self, query: &str) -> u16 {
        self.http
            .get(self.url(&format!("/realtime/poll?{query}&timeout=0")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// A request to the admin API, with the admin key when there is one.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.admin_url(path));
        match &self.admin_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    pub async fn publish(&self, body: Value) -> Value {
        let resp = self
            .admin(reqwest::Method::POST, "/publish")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "publish failed: {}",
            resp.text().await.unwrap()
        );
        resp.json().await.unwrap()
    }

    /// Publish one message; returns its id.
    pub async fn publish_one(&self, channel: &str, data: Value) -> String {
        let v = self
            .publish(serde_json::json!({"channel": channel, "data": data}))
            .await;
        v["ids"][0].as_str().unwrap().to_string()
    }

    /// GET an admin endpoint and parse its JSON answer.
    pub async fn admin_get(&self, path: &str) -> Value {
        self.admin(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The Prometheus exposition from `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.admin(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Requests the gateway's HTTP/1 relay has carried
    /// (`pushgate_proxy_relayed_total`); hyper carried the other proxied ones.
    pub async fn relayed(&self) -> u64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| l.strip_prefix("pushgate_proxy_relayed_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no relay counter in {text}"))
    }

    /// Which engine carried the one proxied request made since the relay
    /// counter read `before`: requests in turn, one at a time.
    pub async fn engine_since(&self, before: u64) -> &'static str {
        match self.relayed().await - before {
            0 => "hyper",
            1 => "relay",
            n => panic!("{n} requests relayed where one was asked"),
        }
    }

    /// A new HTTP client (its own connections) that trusts the test certificate.
    pub fn fresh_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.cert_pem).unwrap())
            .resolve("localhost", self.public)
            .build()
            .unwrap()
    }

    pub async fn stats(&self) -> Value {
        self.admin_get("/stats").await
    }

    pub fn tls_connector(&self) -> tokio_rustls::TlsConnector {
        self.tls_connector_alpn(Vec::new())
    }

    /// A connector that offers `alpn` (e.g. `b"h2"`) in its handshake.
    pub fn tls_connector_alpn(&self, alpn: Vec<Vec<u8>>) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types_certs(&self.cert_pem) {
            roots.add(cert).unwrap();
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// A TLS stream to the public listener.
    pub async fn tls_stream(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.public).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        self.tls_connector().connect(name, tcp).await.unwrap()
    }

    /// Open a WebSocket to `path` (e.g. `/realtime/ws?channels=a`).
    pub async fn ws(&self, path: &str) -> Ws {
        self.try_ws(path).await.expect("websocket handshake")
    }

    pub async fn try_ws(&self, path: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        self.try_ws_with(path, Some("pushgate.v1")).await
    }

    pub async fn try_ws_with(
        &self,
        path: &str,
        protocol: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req =
            format!("wss://localhost:{}{}", self.public.port(), path).into_client_request()?;
        if let Some(p) = protocol {
            req.headers_mut()
                .insert("sec-websocket-protocol", p.parse().unwrap());
        }
        let stream = self.tls_stream().await;
        tokio_tungstenite::client_async(req, stream)
            .await
            .map(|(ws, _)| ws)
    }

    /// One long-poll request: (status, JSON body).
    pub async fn poll(&self, query: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(&format!("/realtime/poll?{query}")))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// An SSE stream over HTTP/1.1 (the direct path; `http2_clients_get_sse`
    /// covers HTTP/2).
    pub async fn sse(&self, path: &str, last_event_id: Option<&str>) -> SseReader {
        let mut req = self.http1.get(self.url(path));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "sse open failed");
        SseReader::new(resp)
    }

    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown(Duration::from_secs(5)).await;
        }
    }
}

fn rustls_pki_types_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

/// Read the next JSON text frame (skipping pings), within a deadline, on
/// any WebSocket (over TLS, or on an h2 stream: `h2_client.rs`).
pub async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("stream ended")
            .expect("websocket error");
        match frame {
            Frame::Text(t) => return serde_json::from_str(&t).unwrap(),
            Frame::Ping(_) | Frame::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Read until the Pong carrying `payload`, counting the text frames that
/// arrive first; `None` when it does not come within 5 s.
pub async fn pong_amid_texts(ws: &mut Ws, payload: &[u8]) -> Option<usize> {
    let mut texts = 0;
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Frame::Pong(p))) if p.as_ref() == payload => return true,
                Some(Ok(Frame::Text(_))) => texts += 1,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return false,
            }
        }
    })
    .await;
    matches!(found, Ok(true)).then_some(texts)
}

/// Send 20 pings while messages flow, each Pong due within 5 s, then a
/// Close whose reply is due within 5 s. Returns the text frames read
/// between the pings and their pongs, and whether the Close reply came.
/// Panics (the test's assertion) on a pong that does not come.
pub async fn pings_then_close_amid_texts(ws: &mut Ws) -> (usize, bool) {
    let mut during = 0;
    for i in 0u8..20 {
        let payload = [b'p', i];
        ws.send(Frame::Ping(payload.to_vec().into())).await.unwrap();
        let seen = pong_amid_texts(ws, &payload).await;
        assert!(seen.is_some(), "pong {i} within 5 s");
        during += seen.unwrap_or(0);
    }
    ws.send(Frame::Close(None)).await.expect("close frame sent");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Frame::Close(_))) => return true,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return false,
            }
        }
    })
    .await;
    (during, matches!(closed, Ok(true)))
}

pub async fn send_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, v: Value)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Frame::Text(v.to_string().into())).await.unwrap();
}

/// One parsed SSE event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
    pub retry: Option<u64>,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A minimal, strict SSE parser over a streaming response.
pub struct SseReader {
    pub resp_headers: reqwest::header::HeaderMap,
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
    pub comments: usize,
    pub last_retry: Option<u64>,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> SseReader {
        SseReader {
            resp_headers: resp.headers().clone(),
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
            comments: 0,
            last_retry: None,
        }
    }

    /// Next event with data; None when the stream ended.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut ev = SseEvent {
                    event: "message".into(),
                    ..Default::default()
                };
                let mut has_data = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        if has_data {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(v);
                        has_data = true;
                    } else if let Some(v) = line.strip_prefix("retry: ") {
                        ev.retry = v.parse().ok();
                        self.last_retry = ev.retry;
                    }
                }
                if has_data {
                    return Some(ev);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.stream.next())
                .await
                .expect("timed out waiting for SSE data")?;
            self.buf
                .push_str(std::str::from_utf8(&chunk.ok()?).unwrap());
        }
    }

    /// Next event, which must arrive.
    pub async fn expect(&mut self) -> SseEvent {
        self.next_event().await.expect("SSE stream ended")
    }

    /// Read until `n` comment lines (the preamble's, heartbeats) have been
    /// seen in all, within a deadline per read. Stops at an event with
    /// data, which stays buffered for `next_event`.
    pub async fn expect_comments(&mut self, n: usize) {
        loop {
            while self.comments < n {
                let Some(pos) = self.buf.find("\n\n") else {
                    break;
                };
                if self.buf[..pos].lines().any(|l| l.starts_with("data: ")) {
                    break;
                }
                let block: String = self.buf.drain(..pos + 2).collect();
                self.comments += block.lines().filter(|l| l.starts_with(':')).count();
            }
            if self.comments >= n {
                return;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("timed out after {} of {n} comments", self.comments))
                .expect("SSE stream ended");
            self.buf
                .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }
}

/// Wait until `cond` holds, polling, or panic after `secs`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within {secs}s: {what}");
}
