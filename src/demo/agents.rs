//! Simulated agents: each works through tasks, idles, sometimes fails and
//! recovers. Every change is published as an `agent_update` on
//! `demo.agents`, and a `metrics_update` summary goes to `demo.metrics`
//! once a second, through the gateway's admin `POST /publish`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NAMES: [&str; 8] = [
    "Ada", "Grace", "Linus", "Barbara", "Ken", "Radia", "Dennis", "Frances",
];
const TASKS: [&str; 5] = ["crawl", "summarize", "translate", "classify", "index"];
const TICK: Duration = Duration::from_millis(400);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Active,
    Idle,
    Error,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Idle => "idle",
            Status::Error => "error",
        }
    }
}

struct Agent {
    id: usize,
    status: Status,
    progress: f64,
    task: &'static str,
    done: u64,
}

impl Agent {
    /// Advance one tick; returns whether anything a viewer sees changed.
    fn step(&mut self, rng: &mut impl Rng) -> bool {
        match self.status {
            Status::Active if rng.random_bool(0.015) => self.status = Status::Error,
            Status::Active => {
                self.progress = (self.progress + rng.random_range(2.0..9.0)).min(100.0);
                if self.progress >= 100.0 {
                    self.status = Status::Idle;
                    self.done += 1;
                }
            }
            Status::Idle if rng.random_bool(0.35) => {
                self.status = Status::Active;
                self.progress = 0.0;
                self.task = TASKS[rng.random_range(0..TASKS.len())];
            }
            Status::Error if rng.random_bool(0.15) => {
                self.status = Status::Idle;
                self.progress = 0.0;
            }
            Status::Idle | Status::Error => return false,
        }
        true
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": NAMES[self.id % NAMES.len()],
            "status": self.status.label(),
            "progress": (self.progress * 10.0).round() / 10.0,
            "task": self.task,
            "tasks_done": self.done,
            "sent_at": now_ms(),
        })
    }
}

/// Milliseconds since the Unix epoch (the page computes latency from it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Publish until `stop`.
pub async fn run(admin: SocketAddr, stop: CancellationToken) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{admin}/publish");
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut agents: Vec<Agent> = (0..6)
        .map(|id| Agent {
            id,
            status: if id % 3 == 0 {
                Status::Idle
            } else {
                Status::Active
            },
            progress: rng.random_range(0.0..60.0),
            task: TASKS[id % TASKS.len()],
            done: 0,
        })
        .collect();
    // Everyone's state at once, so a page that just connected fills in quickly.
    let mut batch: Vec<Value> = agents.iter().map(|a| update(a.json())).collect();
    let mut tick = tokio::time::interval(TICK);
    let mut ticks = 0u64;
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        ticks += 1;
        // Changed agents every tick; everyone every 2 s, for pages that just opened.
        let everyone = ticks % 5 == 0;
        for a in agents.iter_mut() {
            if a.step(&mut rng) || everyone {
                batch.push(update(a.json()));
            }
        }
        if ticks % 3 == 0 {
            let count = |s: Status| agents.iter().filter(|a| a.status == s).count();
            batch.push(json!({
                "channel": "demo.metrics",
                "event": "metrics_update",
                "data": {
                    "active": count(Status::Active),
                    "idle": count(Status::Idle),
                    "error": count(Status::Error),
                    "tasks_done": agents.iter().map(|a| a.done).sum::<u64>(),
                    "published": sent,
                    "sent_at": now_ms(),
                },
            }));
        }
        if batch.is_empty() {
            continue;
        }
        sent += batch.len() as u64;
        let body = Value::Array(std::mem::take(&mut batch)).to_string();
        let req = hyper::Request::post(&url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else { continue };
        if let Err(error) = client.request(req).await {
            tracing::warn!(%error, "demo publish failed");
        }
    }
}

fn update(data: Value) -> Value {
    json!({"channel": "demo.agents", "event": "agent_update", "data": data})
}
