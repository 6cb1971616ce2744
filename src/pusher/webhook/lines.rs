//! The webhook requests waiting for the application: one line per app,
//! sent in order and one at a time, under one bound in bytes.
//!
//! An app's line is what keeps Pusher's order: a request that failed stays
//! at the front of its app's line until it succeeds or is given up, so the
//! application never gets a later event (a `channel_vacated`) before an
//! earlier one (the `channel_occupied` being retried). Other apps' lines go
//! on. Past the backlog the oldest waiting request, over all apps, is given
//! up. Pure bookkeeping over the times the caller passes in.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use super::render::Rendered;

/// One request's events, across its attempts (its body is written at each).
pub(super) struct Request {
    pub app: Arc<str>,
    pub events: Vec<Rendered>,
    /// What it weighs in the backlog: about its body's bytes.
    bytes: usize,
    /// Attempts made so far.
    pub attempts: u32,
    /// Its place in the order requests were made, over all apps.
    seq: u64,
}

/// One app's requests.
#[derive(Default)]
struct Line {
    queue: VecDeque<Request>,
    /// The front request is in flight.
    busy: bool,
    /// When the front request, which failed, may be tried again.
    not_before: Option<Instant>,
}

impl Line {
    /// When the front request may go, if it is not in flight.
    fn ready_at(&self, now: Instant) -> Option<(Instant, u64)> {
        if self.busy {
            return None;
        }
        let front = self.queue.front()?;
        Some((self.not_before.unwrap_or(now), front.seq))
    }
}

/// Every app's line and the bytes waiting in them (not those in flight).
pub(super) struct Lines {
    lines: HashMap<Arc<str>, Line>,
    bytes: usize,
    backlog: usize,
    next_seq: u64,
}

impl Lines {
    pub(super) fn new(backlog: usize) -> Lines {
        Lines {
            lines: HashMap::new(),
            bytes: 0,
            backlog,
            next_seq: 0,
        }
    }

    /// A new request at the back of its app's line; the requests given up
    /// to stay within the backlog.
    pub(super) fn push(&mut self, app: Arc<str>, events: Vec<Rendered>) -> Vec<Request> {
        // About its body: the events, their commas and the frame around
        // them with a 13-digit `time_ms`.
        let bytes = events.iter().map(|e| e.json.len()).sum::<usize>() + events.len() + 37;
        let request = Request {
            app,
            events,
            bytes,
            attempts: 0,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.bytes += request.bytes;
        let line = self.lines.entry(request.app.clone()).or_default();
        line.queue.push_back(request);
        self.trim()
    }

    /// The oldest front request that may go at `now`, taken off its line,
    /// which stays busy until [`Lines::done`] or [`Lines::retry`].
    pub(super) fn next(&mut self, now: Instant) -> Option<Request> {
        let app = self
            .lines
            .iter()
            .filter_map(|(app, line)| line.ready_at(now).map(|at| (at, app)))
            .filter(|((at, _), _)| *at <= now)
            .min_by_key(|(at, _)| *at)
            .map(|(_, app)| app.clone())?;
        let line = self.lines.get_mut(&app)?;
        let request = line.queue.pop_front()?;
        line.busy = true;
        line.not_before = None;
        self.bytes -= request.bytes;
        Some(request)
    }

    /// When a front request not in flight may next go.
    pub(super) fn next_due(&self, now: Instant) -> Option<Instant> {
        self.lines
            .values()
            .filter_map(|line| line.ready_at(now).map(|(at, _)| at))
            .min()
    }

    /// The app's request is over (sent, or given up): its next one may go.
    pub(super) fn done(&mut self, app: &Arc<str>) {
        if let Some(line) = self.lines.get_mut(app) {
            line.busy = false;
            if line.queue.is_empty() {
                self.lines.remove(app);
            }
        }
    }

    /// A failed request back at the front of its line, to go at `at`; the
    /// requests given up to stay within the backlog.
    pub(super) fn retry(&mut self, request: Request, at: Instant) -> Vec<Request> {
        self.bytes += request.bytes;
        let line = self.lines.entry(request.app.clone()).or_default();
        line.busy = false;
        line.not_before = Some(at);
        line.queue.push_front(request);
        self.trim()
    }

    /// Gives up the oldest waiting requests while the waiting ones weigh
    /// more than the backlog (the last one always stays).
    fn trim(&mut self) -> Vec<Request> {
        let mut gone = Vec::new();
        while self.bytes > self.backlog && self.waiting() > 1 {
            let oldest = self
                .lines
                .iter()
                .filter_map(|(app, line)| line.queue.front().map(|r| (r.seq, app)))
                .min_by_key(|(seq, _)| *seq)
                .map(|(_, app)| app.clone());
            let Some(app) = oldest else { break };
            let Some(line) = self.lines.get_mut(&app) else {
                break;
            };
            if let Some(request) = line.queue.pop_front() {
                // The next one has not failed: it need not wait.
                line.not_before = None;
                self.bytes -= request.bytes;
                gone.push(request);
            }
            if line.queue.is_empty() && !line.busy {
                self.lines.remove(&app);
            }
        }
        gone
    }

    /// Requests waiting, over all apps.
    fn waiting(&self) -> usize {
        self.lines.values().map(|l| l.queue.len()).sum()
    }
}
