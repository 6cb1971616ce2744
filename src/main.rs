//! The `pushgate` command: parse the CLI, load the config, set up logging,
//! bind, and hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pushgate::config;
use pushgate::{Gateway, Listeners};

const EXAMPLES: &str = "\
Examples:
  pushgate                              run with ./gateway.yaml
  pushgate run -c /etc/pushgate.yaml    run with another config
  pushgate check -c gateway.yaml        validate a config and print what it sets up
  pushgate token --sub alice --channels 'orders.*' --ttl 1h
                                        mint a development token (HS256 secret from the config)

  # publish, then watch it arrive:
  curl -sk -N 'https://localhost:8443/realtime/sse?channels=public.news' &
  curl -s localhost:9090/publish -d '{\"channel\":\"public.news\",\"data\":{\"hello\":1}}'";

#[derive(Parser)]
#[command(name = "pushgate", version, about = "Realtime gateway: TLS reverse proxy with WebSocket, SSE and long-poll delivery", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file.
    #[arg(short, long, global = true, default_value = "gateway.yaml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run {
        /// How long a shutdown waits for connections to finish.
        #[arg(long, default_value = "10", value_name = "SECONDS")]
        grace: u64,
    },
    /// Validate the configuration and print a summary; exits non-zero on errors.
    Check,
    /// Mint a development token signed with the configured HS256 secret.
    Token {
        /// Token subject (`sub`).
        #[arg(long)]
        sub: String,
        /// Channel patterns the token may subscribe to (comma-separated).
        #[arg(long, default_value = "")]
        channels: String,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run { grace: 10 }) {
        Command::Check => check(&cli.config),
        Command::Token { sub, channels, ttl } => token(&cli.config, &sub, &channels, &ttl),
        Command::Run { grace } => match run(&cli.config, Duration::from_secs(grace)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pushgate: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            println!("{}", cfg.summary());
            println!("{}: configuration OK", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: configuration has errors", path.display());
            ExitCode::from(1)
        }
    }
}

fn token(path: &std::path::Path, sub: &str, channels: &str, ttl: &str) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("pushgate token: {msg}");
        ExitCode::from(1)
    };
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let ttl = match config::parse_duration(ttl) {
        Ok(t) => t,
        Err(e) => return fail(format!("--ttl: {e}")),
    };
    let Some(jwt) = cfg.auth.jwt.as_ref() else {
        return fail("auth.jwt is not configured".into());
    };
    let Some(secret) = jwt.hs256_secret.as_deref() else {
        return fail("auth.jwt.hs256_secret is not set".into());
    };
    let channels: Vec<String> = channels
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    match pushgate::auth::mint_hs256(
        secret,
        sub,
        &channels,
        ttl,
        jwt.issuer.as_deref(),
        jwt.audience.as_deref(),
    ) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

fn run(path: &std::path::Path, grace: Duration) -> anyhow::Result<()> {
    let cfg = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    pushgate::logging::init(&cfg);
    // Every client is a file descriptor: take the hard limit (see README, Operations).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listeners = Listeners::bind(&cfg)?;
        let handle = Gateway::start(cfg, listeners)?;
        pushgate::reload::spawn(handle.state().clone(), path.to_path_buf());
        wait_for_signal().await;
        tracing::info!("shutting down");
        handle.shutdown(grace).await;
        Ok(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
