//! Pusher end to end, with the real clients: the stand-in application
//! (`tests/pusher/app.js`, the official Node `pusher` library) behind the
//! gateway, Laravel Echo's authorization road through the proxy, and the
//! application's webhooks checked by the library's own validator.

use crate::common::*;

mod auth_road;
mod cluster;
mod standin;
mod webhooks;

use standin::StandIn;

/// The app every test uses, as the stand-in application knows it.
pub const APP_ID: &str = "1001";
pub const APP_KEY: &str = "app-key";
pub const APP_SECRET: &str = "app-secret";

/// A gateway (TLS, memory broker) in front of `app`, with one Pusher app;
/// `app_keys` is more keys of that app (`, webhook: {…}`), `extra` more
/// top-level YAML.
pub async fn gateway(app: &StandIn, app_keys: &str, extra: &str) -> TestGateway {
    gateway_in(temp_dir("pusher"), app, app_keys, extra).await
}

/// [`gateway`] with its files in `dir` (a certificate already there is
/// used, so several gateways can share one).
pub async fn gateway_in(
    dir: std::path::PathBuf,
    app: &StandIn,
    app_keys: &str,
    extra: &str,
) -> TestGateway {
    let text = format!(
        r#"
listen: {{ public: "127.0.0.1:0", admin: "127.0.0.1:0" }}
tls:
  cert: {dir}/gw.crt
  key: {dir}/gw.key
  self_signed_if_missing: true
backend: {{ url: "http://127.0.0.1:{port}", connect_timeout: 500ms, timeout: 5s }}
realtime:
  path: /realtime
  allowed_origins: ["*"]
  presence_grace: 1s
channels:
  - {{ pattern: "*", subscribe: anyone }}
pusher:
  apps:
    - {{ id: "{APP_ID}", key: {APP_KEY}, secret: {APP_SECRET}, client_events: true{app_keys} }}
{extra}
"#,
        dir = dir.display(),
        port = app.port(),
    );
    TestGateway::start_yaml(&text, dir).await
}
