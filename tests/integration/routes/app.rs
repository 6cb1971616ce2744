//! The stand-in applications behind routed requests: the common
//! [`TestApp`](crate::common::TestApp), named, answering every request with
//! its name, the target it received and the `Host` it saw, so a test can
//! tell where a request went and with which path.
//!
//! Which engine carried a request is not for the application to tell (both
//! write the same head); tests read it off the gateway's relay counter
//! (`TestGateway::engine_since`). Clients send `X-Route-Probe` so that a
//! request that carries it can be told apart.

use serde_json::Value;

use crate::common::TestApp;

pub(crate) use crate::common::TestApp as App;

pub(crate) const PROBE: &str = "X-Route-Probe";

/// A named application on port 0.
pub(crate) async fn app(name: &'static str) -> App {
    TestApp::named(name).start().await
}

/// Where an answer says the request went: (app, path it received, engine
/// as the test filled it in from the relay counter).
pub(crate) fn went(v: &Value) -> (String, String, String) {
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
    (s("app"), s("path"), s("engine"))
}
