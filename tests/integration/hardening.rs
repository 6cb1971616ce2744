//! Attacks on the proxy, kept as regression tests: what a client may not
//! forge (`hardening/forged.rs`, and who it is: `hardening/client_addr.rs`), what a broken or hostile backend may not
//! do to another client's answer (`hardening/stray.rs`), and framing either
//! side gets wrong (`hardening/framing.rs`). Each runs against the real
//! gateway, on both ways a request is forwarded: the relay (plain HTTP/1.1
//! `GET`/`HEAD`) and hyper (anything else, HTTP/2 included).

mod client_addr;
mod forged;
mod framing;
mod stray;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// Write `raw` on a new TLS connection; everything the gateway answers
/// until it closes the connection (or 5 s pass).
async fn exchange(gw: &TestGateway, raw: &[u8]) -> String {
    let mut tls = gw.tls_stream().await;
    tls.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The relay takes a plain `GET`; this one goes to hyper (a `Connection`
/// that names a field of its own is not the relay's).
const VIA_HYPER: &str = "Connection: keep-alive, x-hop\r\nX-Hop: 1\r\n";
