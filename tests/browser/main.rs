//! Browser tests: the gateway's own `client.js` and dashboard in a real
//! headless Chromium driven over WebDriver, asserting on what the pages render.
//!
//! They need the Debian packages `chromium` and `chromium-driver`
//! (`./scripts/test` installs them) and fail with that message without them.

#[path = "../integration/common/mod.rs"]
mod common;

mod harness;
mod mercure;

mod client;
mod cors;
mod dashboard;
mod deflate;
mod demo;
mod http2;
mod pusher;
mod tabs;
