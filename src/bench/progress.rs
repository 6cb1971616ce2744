//! Live progress of a run for the person watching it: connected, published,
//! delivered and the delivery rate. On a terminal it is one line rewritten
//! in place; when stderr is a file or a pipe (CI logs, `2>log`) it is one
//! line per update, so updates never run together.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Counters the subscribers and the publisher bump as they go.
#[derive(Default)]
pub struct Progress {
    pub connected: AtomicUsize,
    /// Connections dialed (TCP and TLS done): with `--h2 --streams N`,
    /// one per N subscribers.
    pub sockets: AtomicUsize,
    pub failed: AtomicUsize,
    pub published: AtomicUsize,
    pub delivered: AtomicU64,
}

/// Prints the counters every second until dropped, then a last line.
pub struct Reporter {
    stop: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reporter {
    /// `label` names the run (its transport); `None` when progress is off.
    pub fn start(
        progress: Arc<Progress>,
        label: String,
        subscribers: usize,
        messages: usize,
        on: bool,
    ) -> Reporter {
        let stop = tokio_util::sync::CancellationToken::new();
        let task = on.then(|| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let terminal = std::io::stderr().is_terminal();
                let mut last = (Instant::now(), 0u64);
                let mut shown = String::new();
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    let done = tokio::select! {
                        _ = tick.tick() => false,
                        _ = stop.cancelled() => true,
                    };
                    let delivered = progress.delivered.load(Relaxed);
                    let secs = last.0.elapsed().as_secs_f64().max(0.001);
                    let rate = (delivered - last.1.min(delivered)) as f64 / secs;
                    last = (Instant::now(), delivered);
                    let line = line(&label, &progress, subscribers, messages, rate);
                    let mut err = std::io::stderr().lock();
                    if terminal {
                        let _ = write!(err, "\r{line}\x1b[K");
                        if done {
                            let _ = writeln!(err);
                        }
                    } else if line != shown || done {
                        let _ = writeln!(err, "{line}");
                    }
                    shown = line;
                    if done {
                        return;
                    }
                }
            })
        });
        Reporter { stop, task }
    }

    /// Print the last line and wait for it to be out.
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn line(label: &str, p: &Progress, subscribers: usize, messages: usize, rate: f64) -> String {
    let failed = p.failed.load(Relaxed);
    let failed = if failed > 0 {
        format!(" ({failed} failed)")
    } else {
        String::new()
    };
    format!(
        "{label}: connected {}/{subscribers}{failed}, published {}/{messages}, delivered {} ({rate:.0} msgs/s)",
        p.connected.load(Relaxed),
        p.published.load(Relaxed),
        p.delivered.load(Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_counter() {
        let p = Progress::default();
        p.connected.store(3, Relaxed);
        p.failed.store(1, Relaxed);
        p.published.store(7, Relaxed);
        p.delivered.store(21, Relaxed);
        assert_eq!(
            line("sse", &p, 4, 10, 5.0),
            "sse: connected 3/4 (1 failed), published 7/10, delivered 21 (5 msgs/s)"
        );
    }
}
