//! `pushgate bench`: a load generator for realtime servers (pushgate, and
//! the peers users compare it with). It opens subscribers over WebSocket,
//! SSE or long-poll, publishes timestamped messages at a fixed rate through
//! the server's publish API, and measures every delivery: latency (HDR
//! histogram), throughput, loss, duplicates, connection success, the
//! server's memory per connection when its pid is given, and, against
//! pushgate, the server's own share of the latency (`server_side.rs`).
//!
//! It shares no code path with the gateway: only the crate's dependencies.

pub mod floor;
pub mod h2;
pub mod net;
pub mod plot;
pub mod progress;
pub mod publisher;
pub mod pusher;
pub mod server_side;
pub mod subscriber;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use net::Dialer;
use progress::{Progress, Reporter};
use subscriber::{Endpoint, Outcome, Tally, Transport};

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Subscriber side: `http(s)://host:port` of the server, or of each
    /// instance of a cluster (subscribers are spread round-robin).
    pub urls: Vec<url::Url>,
    /// Publish API base (pushgate: the admin listener).
    pub publish: url::Url,
    pub transport: Transport,
    pub subscribers: usize,
    pub channels: usize,
    pub messages: usize,
    pub size: usize,
    /// Messages per second, all channels together.
    pub rate: u64,
    pub target: publisher::Target,
    /// Server pid, for memory per connection.
    pub pid: Option<u32>,
    pub realtime_path: String,
    /// Channel names are `{prefix}.{k}`.
    pub prefix: String,
    /// Hold the connections this long before publishing (to sample memory).
    pub hold: Duration,
    /// Certificates accepted for `https://`/`wss://` URLs.
    pub trust: net::Trust,
    /// `--h2 --streams N`: SSE over HTTP/2, N streams per connection.
    pub h2_streams: Option<usize>,
    /// `--target mercure`: the hub's path, subscribed to with
    /// `?topic={channel}` and published to on the `publish` base.
    pub mercure_path: String,
    /// `--target mercure`: the publisher's token.
    pub mercure_jwt: Option<String>,
    /// The Pusher app the `pusher` transport subscribes to and publishes
    /// through (its HTTP API under `publish`).
    pub pusher: Option<pusher::App>,
    /// Where Pusher sockets connect: `{pusher_path}/{key}`.
    pub pusher_path: String,
}

/// What a run measured.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// `ws`, `sse`, `poll`, or `sse-h2` for SSE streams over HTTP/2.
    pub transport: &'static str,
    pub subscribers: usize,
    pub connected: usize,
    /// Connections the subscribers used (fewer than them over HTTP/2).
    pub sockets: usize,
    pub messages: usize,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Delivered after a message published later (counted in `delivered`):
    /// publish requests sent concurrently (nginx+Nchan gets one per
    /// message) may reach the server in another order.
    pub reordered: u64,
    pub msgs_per_sec: f64,
    pub latency_ms: Latency,
    pub memory_per_connection_kib: Option<f64>,
    /// pushgate only: publish accepted → written, from its own histogram.
    pub server_latency_ms: Option<server_side::ServerLatency>,
    pub publish_errors: u64,
    /// Subscribers the server answered with an error status, by status.
    pub refused: Vec<(u16, usize)>,
    pub seconds: f64,
    /// Every delivery's latency in µs, for the plot.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

#[derive(Debug, serde::Serialize)]
pub struct Latency {
    pub avg: f64,
    pub p50: f64,
    /// For comparing a distribution's shoulder, not only its tail.
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn endpoint(plan: &Plan, i: usize) -> Endpoint {
    let channel = format!("{}.{}", plan.prefix, i % plan.channels.max(1));
    let path = match (plan.target, plan.transport) {
        (_, Transport::Pusher) => match &plan.pusher {
            Some(app) => app.socket_path(&plan.pusher_path),
            None => String::new(),
        },
        (publisher::Target::Nchan, _) => format!("/sub/{channel}"),
        (publisher::Target::Pushpin, _) => format!("/stream?channel={channel}"),
        (publisher::Target::Mercure, _) => format!("{}?topic={channel}", plan.mercure_path),
        (publisher::Target::Pushgate | publisher::Target::Pusher, t) => {
            format!("{}/{}?channels={channel}", plan.realtime_path, t.name())
        }
    };
    Endpoint {
        transport: plan.transport,
        path,
        channel,
    }
}

/// One dialer per `--url`, subscribers spread over them in turn.
fn dialers(plan: &Plan) -> Result<Vec<std::sync::Arc<Dialer>>, String> {
    let mut dialers = Vec::with_capacity(plan.urls.len());
    for url in &plan.urls {
        let host = url.host_str().ok_or("the URL has no host")?.to_string();
        let addr: SocketAddr = url
            .socket_addrs(|| None)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or("the URL does not resolve")?;
        let tls = match url.scheme() {
            "https" | "wss" => Some(net::client_config(&plan.trust, plan.h2_streams.is_some())?),
            "http" | "ws" => None,
            other => return Err(format!("--url {url}: unknown scheme {other}")),
        };
        dialers.push(std::sync::Arc::new(Dialer::new(addr, host, tls)));
    }
    if dialers.is_empty() {
        return Err("no --url given".into());
    }
    Ok(dialers)
}

/// What the connect phase ended with.
struct Connected {
    tasks: tokio::task::JoinSet<Vec<Tally>>,
    connected: usize,
    refused: Vec<(u16, usize)>,
}

/// Starts every subscriber and waits (30 s each at most) until each has
/// connected or failed; returns their tasks and how many connected.
async fn connect_all(
    plan: &Plan,
    dialers: &[std::sync::Arc<Dialer>],
    epoch: Instant,
    stop: &CancellationToken,
    progress: &Arc<Progress>,
) -> Connected {
    let mut ready = Vec::with_capacity(plan.subscribers);
    let mut tasks = tokio::task::JoinSet::new();
    let per_conn = plan.h2_streams.unwrap_or(1).max(1);
    let mut i = 0;
    while i < plan.subscribers {
        let group = (i..(i + per_conn).min(plan.subscribers)).collect::<Vec<_>>();
        let mut readies = Vec::with_capacity(group.len());
        for _ in &group {
            let (tx, rx) = oneshot::channel();
            ready.push(rx);
            readies.push(tx);
        }
        let dialer = dialers[(i / per_conn) % dialers.len()].clone();
        // A child token each: a subscriber polls it after every read, and a
        // shared token's lock would make the generator contend with itself.
        let (stop, progress) = (stop.child_token(), progress.clone());
        if plan.h2_streams.is_some() {
            let paths = group.iter().map(|k| endpoint(plan, *k).path).collect();
            tasks.spawn(h2::connection(
                dialer, i, paths, readies, epoch, stop, progress,
            ));
        } else if let Some(tx) = readies.pop() {
            let ep = endpoint(plan, i);
            match (plan.transport, plan.pusher.clone()) {
                (Transport::Pusher, Some(app)) => tasks.spawn(async move {
                    let (path, channel) = (&ep.path, &ep.channel);
                    vec![
                        pusher::run(&dialer, i, path, channel, &app, epoch, tx, stop, progress)
                            .await,
                    ]
                }),
                _ => tasks.spawn(async move {
                    vec![subscriber::run(&dialer, i, ep, epoch, tx, stop, progress).await]
                }),
            };
        }
        if (i / per_conn) % 500 == 499 {
            tokio::task::yield_now().await;
        }
        i += per_conn;
    }
    let mut connected = 0;
    let mut refused: Vec<(u16, usize)> = Vec::new();
    for rx in ready {
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Outcome::Connected)) => {
                connected += 1;
                progress.connected.fetch_add(1, Relaxed);
                continue;
            }
            Ok(Ok(Outcome::Status(code))) => match refused.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += 1,
                None => refused.push((code, 1)),
            },
            _ => {}
        }
        progress.failed.fetch_add(1, Relaxed);
    }
    Connected {
        tasks,
        connected,
        refused,
    }
}

/// What to tell a person whose subscribers were refused: pushgate answers
/// 429 when a per-address or per-client limit is spent (every subscriber of
/// a benchmark comes from one address, or a few loopback ones).
pub fn refusal_hint(r: &Report) -> Option<String> {
    if r.refused.is_empty() {
        return None;
    }
    let codes: Vec<String> = r
        .refused
        .iter()
        .map(|(c, n)| format!("{n} × {c}"))
        .collect();
    let mut hint = format!(
        "{}: {} of {} subscribers refused ({}).",
        r.transport,
        r.refused.iter().map(|(_, n)| n).sum::<usize>(),
        r.subscribers,
        codes.join(", ")
    );
    if r.refused.iter().any(|(c, _)| *c == 429 || *c == 503) {
        hint.push_str(
            " Against pushgate, raise in its config: limits.per_ip.connections, \
limits.per_ip.connects { rate, burst } and limits.per_ip.subscribes { rate, burst } \
(anonymous subscribers), or limits.per_client.connections and \
limits.per_client.subscribes (token subscribers); bench/pushgate.yaml has benchmark values.",
        );
    }
    Some(hint)
}

/// Wait until the server's memory stops moving (at most 5 s): the previous
/// transport's connections close after its subscribers are gone, and a
/// baseline taken while they still hold memory reads their release as this
/// run's connections costing nothing.
async fn settled_rss(pid: Option<u32>) -> Option<u64> {
    let pid = pid?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = rss_kib(pid)?;
    let mut steady = 0;
    while Instant::now() < deadline && steady < 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = rss_kib(pid)?;
        steady = if now.abs_diff(last) <= 64 {
            steady + 1
        } else {
            0
        };
        last = now;
    }
    Some(last)
}

/// What every subscriber saw, merged: latencies, deliveries, duplicates and
/// the last delivery's time.
struct Seen {
    latency: Histogram<u64>,
    delivered: u64,
    duplicates: u64,
    reordered: u64,
    last: Option<Instant>,
}

async fn collect(mut tasks: tokio::task::JoinSet<Vec<Tally>>) -> Result<Seen, String> {
    let mut seen = Seen {
        latency: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
        delivered: 0,
        duplicates: 0,
        reordered: 0,
        last: None,
    };
    while let Some(done) = tasks.join_next().await {
        for t in done.map_err(|e| e.to_string())? {
            seen.delivered += t.received;
            seen.duplicates += t.duplicates;
            seen.reordered += t.reordered;
            let _ = seen.latency.add(&t.latency);
            seen.last = seen.last.max(t.last_at);
        }
    }
    Ok(seen)
}

/// Run one plan to completion.
pub async fn run(plan: &Plan, progress: bool) -> Result<Report, String> {
    let dialers = dialers(plan)?;
    let epoch = Instant::now();
    let stop = CancellationToken::new();
    // Right before this transport connects, once the last one's are gone.
    let rss_before = settled_rss(plan.pid).await;
    let counters = Arc::new(Progress::default());
    let reporter = Reporter::start(
        counters.clone(),
        name(plan).to_string(),
        plan.subscribers,
        plan.messages,
        progress,
    );

    let Connected {
        tasks,
        connected,
        refused,
    } = connect_all(plan, &dialers, epoch, &stop, &counters).await;
    // Let subscriptions settle (poll clients are between requests).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let memory_per_connection_kib = match (rss_before, plan.pid.and_then(rss_kib)) {
        (Some(a), Some(b)) if connected > 0 => Some(b.saturating_sub(a) as f64 / connected as f64),
        _ => None,
    };

    tokio::time::sleep(plan.hold).await;
    let server_before = match plan.target {
        publisher::Target::Pushgate => server_side::scrape(&plan.publish).await,
        _ => None,
    };
    let started = Instant::now();
    let publish_errors = publisher::publish(plan, epoch, &counters).await;
    // Drain: wait until deliveries stop growing (or 5 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let Seen {
        latency: merged,
        delivered,
        duplicates,
        reordered,
        last,
    } = collect(tasks).await?;
    reporter.finish().await;
    let server_latency_ms = match server_before {
        Some(before) => server_side::scrape(&plan.publish)
            .await
            .and_then(|after| after.since(&before)?.latency()),
        None => None,
    };
    let per_channel = plan.messages as u64 / plan.channels.max(1) as u64;
    let expected = connected as u64 * per_channel;
    let seconds = last.map_or(0.0, |l| l.saturating_duration_since(started).as_secs_f64());
    let ms = |v: u64| v as f64 / 1000.0;
    Ok(Report {
        transport: name(plan),
        subscribers: plan.subscribers,
        connected,
        sockets: counters.sockets.load(Relaxed),
        messages: plan.messages,
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicates,
        reordered,
        msgs_per_sec: if seconds > 0.0 {
            delivered as f64 / seconds
        } else {
            0.0
        },
        latency_ms: Latency {
            avg: merged.mean() / 1000.0,
            p50: ms(merged.value_at_quantile(0.50)),
            p90: ms(merged.value_at_quantile(0.90)),
            p95: ms(merged.value_at_quantile(0.95)),
            p99: ms(merged.value_at_quantile(0.99)),
            max: ms(merged.max()),
        },
        memory_per_connection_kib,
        server_latency_ms,
        publish_errors,
        refused,
        seconds,
        histogram: merged,
    })
}

/// The presence step (`--presence`): `plan.subscribers` members of the
/// Pusher app over `plan.channels` presence channels join, then leave.
pub async fn presence(plan: &Plan) -> Result<pusher::PresenceReport, String> {
    let app = plan
        .pusher
        .as_ref()
        .ok_or("--presence needs --app-id, --app-key and --app-secret")?;
    let dialers = dialers(plan)?;
    let path = app.socket_path(&plan.pusher_path);
    pusher::presence(
        &dialers,
        &path,
        app,
        plan.subscribers,
        plan.channels,
        &plan.prefix,
    )
    .await
}

fn name(plan: &Plan) -> &'static str {
    if plan.target == publisher::Target::Mercure {
        return "mercure";
    }
    match (plan.transport, plan.h2_streams) {
        (Transport::Sse, Some(_)) => "sse-h2",
        (t, _) => t.name(),
    }
}

/// The comparison table teams ask for, after a line per run with the
/// server's own latency where it reported it (the table's rows stay last).
pub fn table(reports: &[Report]) -> String {
    let bound =
        |v: Option<f64>| v.map_or("(above the last bucket)".to_string(), |ms| format!("{ms}"));
    let mut out = String::new();
    for r in reports {
        if r.reordered > 0 {
            out.push_str(&format!(
                "Out of order, {}: {} of the {} deliveries arrived after a message published later (counted as delivered, not as duplicates).\n\n",
                r.transport, r.reordered, r.delivered
            ));
        }
        if let Some(s) = &r.server_latency_ms {
            out.push_str(&format!(
                "Server side, {}: publish accepted → written, from pushgate's histogram over {} deliveries: p50 ≤ {} ms, p95 ≤ {} ms, p99 ≤ {} ms.\n\n",
                r.transport,
                s.deliveries,
                bound(s.p50_at_most),
                bound(s.p95_at_most),
                bound(s.p99_at_most),
            ));
        }
    }
    out.push_str(
        "| transport | subscribers | connected | delivered | lost | dup | msgs/s | avg ms | p50 ms | p95 ms | p99 ms | max ms | KiB/conn |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let mem = r
            .memory_per_connection_kib
            .map_or("-".to_string(), |m| format!("{m:.1}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
            r.transport, r.subscribers, r.connected, r.delivered, r.lost, r.duplicates, r.msgs_per_sec,
            r.latency_ms.avg, r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99, r.latency_ms.max, mem
        ));
    }
    if reports
        .iter()
        .filter(|r| r.memory_per_connection_kib.is_some())
        .count()
        > 1
    {
        // The server's allocator keeps what the earlier runs' connections
        // freed and hands it to the later ones: their RSS growth is low.
        out.push_str("\nKiB/conn after the first run is a lower bound: the server reuses memory the earlier connections freed. For memory, run one transport against a freshly started server.\n");
    }
    out
}

pub fn json(reports: &[Report]) -> String {
    json!({ "runs": reports }).to_string()
}
