//! `pushgate demo`: the gateway, a tiny application behind it, and simulated
//! agents publishing through the admin API, so a newcomer sees realtime
//! delivery in a browser within seconds and can compare the three transports.
//!
//! Everything runs in this process on loopback, over plain HTTP: the demo
//! application serves the page (the gateway proxies it, so the page is
//! same-origin with `/realtime`), and the agents publish exactly as an
//! application would, with `POST /publish` on the admin listener.

mod agents;
mod site;

use std::net::SocketAddr;
use std::time::Duration;

use std::io::Write;

use anyhow::Context;
use pushgate::{Gateway, Listeners};

/// The demo's gateway configuration: plain HTTP on loopback, the demo
/// application as backend, one open channel family with a little history.
fn config_text(public: SocketAddr, backend: SocketAddr) -> String {
    format!(
        r#"
listen: {{ public: "{public}", admin: "127.0.0.1:0" }}
backend: {{ url: "http://{backend}" }}
realtime:
  path: /realtime
  heartbeat: 15s
  poll_timeout: 20s
  history: {{ size: 500, ttl: 5m }}
channels:
  - {{ pattern: "demo.*", subscribe: anyone }}
client_messages: {{ forward_to: /inbound }}
log: {{ format: pretty, level: warn }}
"#
    )
}

/// Run the demo until Ctrl-C.
pub fn run(port: u16) -> anyhow::Result<()> {
    pushgate::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let backend = site::start()
            .await
            .context("starting the demo application")?;
        let public: SocketAddr = ([127, 0, 0, 1], port).into();
        let text = config_text(public, backend);
        let cfg = pushgate::config::parse(&text, std::path::Path::new("<demo>"))
            .map_err(|e| anyhow::anyhow!("demo config: {e}"))?;
        pushgate::logging::init(&cfg);
        let listeners = Listeners::bind(&cfg)
            .with_context(|| format!("port {port} is taken: try `pushgate demo --port 0`"))?;
        let handle = Gateway::start(cfg, listeners)?;
        let page = format!("http://{}/", handle.public_addr());
        let dashboard = format!("http://{}/dashboard", handle.admin_addr());
        // Not println!: a closed stdout (piped to a reader that left) must not end the demo.
        let banner = format!(
            "pushgate demo is running\n\n  demo page:  {page}\n  dashboard:  {dashboard}\n\n\
             Simulated agents publish to demo.agents and demo.metrics; Ctrl-C stops.\n"
        );
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
        drop(out);
        let stop = tokio_util::sync::CancellationToken::new();
        let agents = tokio::spawn(agents::run(handle.admin_addr(), stop.clone()));
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
        let _ = agents.await;
        handle.shutdown(Duration::from_secs(2)).await;
        Ok(())
    })
}
