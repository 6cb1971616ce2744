//! Log setup shared by the binary and the tests that check it.
//!
//! The rule kept here: secrets never reach a log line. Our own code never
//! formats tokens, keys or query strings; the directives below also cap
//! dependencies whose trace output can include frame or header payloads
//! (WebSocket frames carry `auth` ops; HTTP/2 frames carry headers), so even
//! `level: trace` cannot leak them.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Dependencies whose trace/debug output may contain payloads.
const PAYLOAD_CRATES: [&str; 6] = [
    "tungstenite",
    "tokio_tungstenite",
    "h2",
    "hyper",
    "hyper_util",
    "rustls",
];

/// The filter for `level` (an `EnvFilter` directive such as `info` or
/// `pushgate=debug`), with payload-carrying dependencies capped at `info`.
pub fn filter(level: &str) -> EnvFilter {
    let mut f = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    for krate in PAYLOAD_CRATES {
        if let Ok(d) = format!("{krate}=info").parse() {
            f = f.add_directive(d);
        }
    }
    f
}

/// Install the global subscriber for the binary (`RUST_LOG` overrides `log.level`).
pub fn init(cfg: &Config) {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| cfg.log.level.clone());
    let builder = tracing_subscriber::fmt().with_env_filter(filter(&level));
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
