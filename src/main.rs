//! The `pushgate` command: parse the CLI, load the config, set up logging,
//! bind, and hand over to the library.

mod demo;

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
  pushgate demo                         a live demo page with simulated agents
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
    /// Measure a running server: subscribers, publish rate, delivery latency.
    Bench(Box<BenchArgs>),
    /// Run a self-contained demo: gateway, demo page, simulated agents.
    Demo {
        /// Port of the demo page on 127.0.0.1 (0: any free port).
        #[arg(long, default_value = "8088")]
        port: u16,
    },
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
        Command::Demo { port } => match demo::run(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pushgate demo: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => bench(*args),
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

/// A file with neither `listen` nor `channels` starts (on defaults) but is
/// almost certainly not what the operator meant; a reload refuses such a file.
const UNCONFIGURED: &str = "the configuration sets neither `listen` nor `channels`: running on defaults, where every channel is refused";

fn check(path: &std::path::Path) -> ExitCode {
    match config::load_with_sections(path) {
        Ok((cfg, sections)) => {
            if sections.is_unconfigured() {
                eprintln!("warning: {}", UNCONFIGURED);
            }
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

#[derive(clap::Args)]
struct BenchArgs {
    /// The server's public URL (subscribers connect here). Repeat it to
    /// spread subscribers round-robin over several instances of a cluster.
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    url: Vec<url::Url>,
    /// The publish API base (pushgate: the admin listener).
    #[arg(long, default_value = "http://127.0.0.1:19090")]
    publish: url::Url,
    /// ws | sse | poll | pusher (Pusher protocol 7; needs --app-id,
    /// --app-key and --app-secret, and publishes through the Pusher HTTP API)
    #[arg(long, default_value = "sse")]
    transport: String,
    /// The Pusher app's id (`--transport pusher`, `--presence`).
    #[arg(long)]
    app_id: Option<String>,
    /// The Pusher app's key.
    #[arg(long)]
    app_key: Option<String>,
    /// The Pusher app's secret: signs the HTTP API requests and the
    /// private and presence subscriptions.
    #[arg(long)]
    app_secret: Option<String>,
    /// Where Pusher sockets connect: `{path}/{key}?protocol=7`.
    #[arg(long, default_value = "/app")]
    pusher_path: String,
    /// Instead of fan-out: -n presence members over --channels presence
    /// channels join all at once, then leave; report joins and leaves per second.
    #[arg(long)]
    presence: bool,
    /// Run ws, sse and poll (and pusher, given an app) one after the other
    /// and print the comparison.
    #[arg(long)]
    compare_transports: bool,
    #[arg(long, short = 'n', default_value = "1000")]
    subscribers: usize,
    /// Channels the subscribers are spread over (messages round-robin).
    #[arg(long, default_value = "1")]
    channels: usize,
    /// Messages to publish in all.
    #[arg(long, short = 'm', default_value = "1000")]
    messages: usize,
    /// Message size in bytes.
    #[arg(long, short = 's', default_value = "512")]
    size: usize,
    /// Messages per second.
    #[arg(long, short = 'r', default_value = "50")]
    rate: u64,
    /// pushgate | pushpin | nchan | mercure (pushgate's Mercure hub: SSE
    /// subscribers on `--mercure-path?topic=…`, form publishes there on
    /// `--publish`, the public listener)
    #[arg(long, default_value = "pushgate")]
    target: String,
    /// With --target mercure: the hub's path.
    #[arg(long, default_value = "/.well-known/mercure")]
    mercure_path: String,
    /// With --target mercure: the publisher's token (a JWT signed with
    /// mercure.publisher_jwt allowing the topics).
    #[arg(long)]
    mercure_jwt: Option<String>,
    /// The server's pid: report its memory per connection.
    #[arg(long)]
    pid: Option<u32>,
    /// pushgate's realtime.path.
    #[arg(long, default_value = "/realtime")]
    realtime_path: String,
    /// Channel name prefix: channels are `{prefix}.0`, `{prefix}.1`, …
    #[arg(long, default_value = "public.bench")]
    prefix: String,
    /// Seconds to hold the connections open before publishing.
    #[arg(long, default_value = "0")]
    hold: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// https:// and wss:// URLs: trust the certificates of this PEM file (a
    /// CA, or the server's self-signed certificate itself).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// https:// and wss:// URLs: accept any certificate. For benchmarks
    /// against a local development certificate only.
    #[arg(long)]
    insecure: bool,
    /// SSE over HTTP/2 (TLS with ALPN h2, or h2c on http://).
    #[arg(long)]
    h2: bool,
    /// With --h2: SSE streams per HTTP/2 connection.
    #[arg(long, default_value = "1")]
    streams: usize,
    /// Write an SVG plot of the latency distribution per transport here.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Serve as the floor on this address instead of measuring: a minimal
    /// writer that CPU per delivery is measured against (`bench/cpu.sh`);
    /// it takes publishes on --publish's address.
    #[arg(long, value_name = "ADDR")]
    floor: Option<std::net::SocketAddr>,
    /// With --floor: serve subscribers over TLS with this PEM certificate.
    #[arg(long, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// With --floor: the PEM private key of --cert.
    #[arg(long, requires = "cert")]
    key: Option<std::path::PathBuf>,
}

/// `pushgate bench --floor ADDR`: the floor, until killed.
fn floor(listen: std::net::SocketAddr, a: &BenchArgs) -> ExitCode {
    let publish = match a
        .publish
        .socket_addrs(|| None)
        .ok()
        .and_then(|v| v.into_iter().next())
    {
        Some(addr) => addr,
        None => {
            eprintln!(
                "pushgate bench --floor: --publish {} has no address",
                a.publish
            );
            return ExitCode::from(2);
        }
    };
    pushgate::tls::install_crypto_provider();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let tls = a.cert.as_deref().zip(a.key.as_deref());
    match pushgate::bench::floor::run(listen, publish, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pushgate bench --floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(a: BenchArgs) -> ExitCode {
    use pushgate::bench::{self, publisher::Target, subscriber::Transport};
    if let Some(listen) = a.floor {
        return floor(listen, &a);
    }
    let parse_transport = |t: &str| match t {
        "ws" => Some(Transport::Ws),
        "sse" => Some(Transport::Sse),
        "poll" => Some(Transport::Poll),
        "pusher" => Some(Transport::Pusher),
        _ => None,
    };
    let target = match a.target.as_str() {
        "pushgate" => Target::Pushgate,
        "pushpin" => Target::Pushpin,
        "nchan" => Target::Nchan,
        "mercure" => Target::Mercure,
        "pusher" => Target::Pusher,
        other => {
            eprintln!(
                "pushgate bench: unknown --target {other} (pushgate | pushpin | nchan | mercure | pusher)"
            );
            return ExitCode::from(2);
        }
    };
    let app = match (&a.app_id, &a.app_key, &a.app_secret) {
        (Some(id), Some(key), Some(secret)) => Some(bench::pusher::App::new(id, key, secret)),
        (None, None, None) => None,
        _ => {
            eprintln!(
                "pushgate bench: a Pusher app needs all of --app-id, --app-key and --app-secret"
            );
            return ExitCode::from(2);
        }
    };
    let transports: Vec<Transport> = if a.compare_transports {
        let mut all = vec![Transport::Ws, Transport::Sse, Transport::Poll];
        all.extend(app.is_some().then_some(Transport::Pusher));
        all
    } else {
        match parse_transport(&a.transport) {
            Some(t) => vec![t],
            None => {
                eprintln!(
                    "pushgate bench: unknown --transport {} (ws | sse | poll | pusher)",
                    a.transport
                );
                return ExitCode::from(2);
            }
        }
    };
    if target == Target::Mercure && transports.iter().any(|t| *t != Transport::Sse) {
        eprintln!("pushgate bench: --target mercure subscribes over SSE: use --transport sse");
        return ExitCode::from(2);
    }
    let pusher_runs = a.presence || transports.contains(&Transport::Pusher);
    if pusher_runs && app.is_none() {
        eprintln!(
            "pushgate bench: --transport pusher and --presence need --app-id, --app-key and --app-secret"
        );
        return ExitCode::from(2);
    }
    if target == Target::Pusher && !a.presence && transports.iter().any(|t| *t != Transport::Pusher)
    {
        eprintln!(
            "pushgate bench: --target pusher speaks only the Pusher protocol: use --transport pusher"
        );
        return ExitCode::from(2);
    }
    if a.h2 && transports.iter().any(|t| *t != Transport::Sse) {
        eprintln!("pushgate bench: --h2 carries SSE streams: use it with --transport sse");
        return ExitCode::from(2);
    }
    let trust = match (&a.ca, a.insecure) {
        (Some(_), true) => {
            eprintln!("pushgate bench: --ca and --insecure exclude each other");
            return ExitCode::from(2);
        }
        (Some(ca), false) => bench::net::Trust::CaFile(ca.clone()),
        (None, true) => bench::net::Trust::Insecure,
        (None, false) => bench::net::Trust::System,
    };
    pushgate::tls::install_crypto_provider();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pushgate bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut reports = Vec::new();
    for transport in transports {
        let plan = bench::Plan {
            urls: a.url.clone(),
            publish: a.publish.clone(),
            transport,
            subscribers: a.subscribers,
            channels: a.channels.max(1),
            messages: a.messages,
            size: a.size,
            rate: a.rate.max(1),
            target,
            pid: a.pid,
            realtime_path: a.realtime_path.clone(),
            // A fresh tag per run: a server that keeps history (Nchan's
            // message buffer) must not replay an earlier run's messages.
            prefix: format!("{}.r{:x}", a.prefix, rand::random::<u32>()),
            hold: std::time::Duration::from_secs(a.hold),
            trust: trust.clone(),
            h2_streams: a.h2.then_some(a.streams.max(1)),
            mercure_path: a.mercure_path.clone(),
            mercure_jwt: a.mercure_jwt.clone(),
            pusher: app.clone(),
            pusher_path: a.pusher_path.clone(),
        };
        if a.presence {
            return match rt.block_on(bench::presence(&plan)) {
                Ok(r) if a.json => {
                    println!("{}", serde_json::json!({ "presence": r }));
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    print!("{}", bench::pusher::presence_table(&r));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pushgate bench: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        match rt.block_on(bench::run(&plan, !a.json)) {
            Ok(r) => {
                if let Some(hint) = bench::refusal_hint(&r) {
                    eprintln!("{hint}");
                }
                reports.push(r)
            }
            Err(e) => {
                eprintln!("pushgate bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(path) = &a.plot {
        if let Err(e) = std::fs::write(path, bench::plot::svg(&reports)) {
            eprintln!("pushgate bench: --plot {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if a.json {
        println!("{}", bench::json(&reports));
    } else {
        print!("{}", bench::table(&reports));
    }
    ExitCode::SUCCESS
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
    let (cfg, sections) = config::load_with_sections(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    pushgate::logging::init(&cfg);
    if sections.is_unconfigured() {
        tracing::warn!(file = %path.display(), "{UNCONFIGURED}");
    }
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
