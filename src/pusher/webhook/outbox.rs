//! What the webhook sender holds before a request exists: leave events kept
//! back for Pusher's three seconds, and each app's open batch.
//!
//! A `channel_vacated` is not sent at once: a page reload or a dropped
//! connection that comes back within the hold would otherwise tell the
//! application the channel emptied and filled again. The `channel_occupied`
//! of the channel within the hold cancels both: the channel never looked
//! vacated. (Members need no hold here: presence keeps a member who lost
//! every connection for `realtime.presence_grace` before it reports the
//! leave, so a reload never reaches this sender as a leave and a join.) Everything here is
//! pure bookkeeping over the times the caller passes in, so the windows are
//! tested without a clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::render::Rendered;
use crate::pusher::AppEvent;

/// The most leave events held at once: past it the oldest is dropped (and
/// counted), so a flood of vacated channels cannot grow the sender.
const MAX_HELD: usize = 100_000;

/// What a held leave event is matched by: its app and its channel.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct LeaveKey {
    app: Arc<str>,
    channel: String,
}

/// Leave events kept back until their hold ends.
#[derive(Debug)]
pub(super) struct Held {
    hold: Duration,
    /// The event waiting under each key, with the ticket of its place in
    /// `order` (a later report of the same key takes a new place).
    waiting: HashMap<LeaveKey, (u64, AppEvent)>,
    /// Places in the order the holds end (one hold for all, so reports'
    /// order is their ends' order).
    order: VecDeque<(Instant, LeaveKey, u64)>,
    next_ticket: u64,
    /// The most leave events held at once.
    cap: usize,
    /// Held leave events dropped to keep under the cap, not yet counted.
    dropped: u64,
}

impl Held {
    pub(super) fn new(hold: Duration) -> Held {
        Held {
            hold,
            waiting: HashMap::new(),
            order: VecDeque::new(),
            next_ticket: 0,
            cap: MAX_HELD,
            dropped: 0,
        }
    }

    /// Takes one reported event: a leave is held, the join that cancels a
    /// held leave is dropped with it, anything else is returned to send now.
    pub(super) fn report(
        &mut self,
        app: Arc<str>,
        event: AppEvent,
        now: Instant,
    ) -> Option<AppEvent> {
        match &event {
            AppEvent::ChannelVacated { channel } => {
                let key = LeaveKey {
                    app,
                    channel: channel.clone(),
                };
                self.hold(key, event, now);
                None
            }
            AppEvent::ChannelOccupied { channel } => {
                let key = LeaveKey {
                    app,
                    channel: channel.clone(),
                };
                self.waiting.remove(&key).is_none().then_some(event)
            }
            _ => Some(event),
        }
    }

    fn hold(&mut self, key: LeaveKey, event: AppEvent, now: Instant) {
        if !self.waiting.contains_key(&key) {
            while self.waiting.len() >= self.cap {
                self.drop_oldest();
            }
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.order.push_back((now + self.hold, key.clone(), ticket));
        self.waiting.insert(key, (ticket, event));
    }

    /// Drop the oldest held leave (and the stale places before it).
    fn drop_oldest(&mut self) {
        while let Some((_, key, ticket)) = self.order.pop_front() {
            if self.waiting.get(&key).is_some_and(|(t, _)| *t == ticket) {
                self.waiting.remove(&key);
                self.dropped += 1;
                return;
            }
        }
        // No place left: nothing is held.
        self.waiting.clear();
    }

    /// Held leave events dropped for the cap since the last call.
    pub(super) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// The leave events whose hold has ended by `now`, oldest first.
    pub(super) fn release(&mut self, now: Instant) -> Vec<(Arc<str>, AppEvent)> {
        let mut out = Vec::new();
        while let Some((due, _, _)) = self.order.front() {
            if *due > now {
                break;
            }
            let Some((_, key, ticket)) = self.order.pop_front() else {
                break;
            };
            // A cancelled hold, or one a later report of the key replaced,
            // has no event under this ticket.
            if self.waiting.get(&key).is_some_and(|(t, _)| *t == ticket) {
                if let Some((_, event)) = self.waiting.remove(&key) {
                    out.push((key.app, event));
                }
            }
        }
        out
    }

    /// When the next hold ends.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.order.front().map(|(due, _, _)| *due)
    }

    /// Leave events held now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// How long a batch stays open, and how much it may take.
#[derive(Clone, Copy, Debug)]
pub(super) struct BatchLimits {
    pub window: Duration,
    pub events: usize,
    pub bytes: usize,
}

/// One app's events on their way into one request.
#[derive(Debug)]
pub(super) struct Batch {
    pub app: Arc<str>,
    pub events: Vec<Rendered>,
    opened: Instant,
    bytes: usize,
}

/// Each app's open batch.
#[derive(Debug)]
pub(super) struct Batches {
    limits: BatchLimits,
    open: HashMap<Arc<str>, Batch>,
}

impl Batches {
    pub(super) fn new(limits: BatchLimits) -> Batches {
        Batches {
            limits,
            open: HashMap::new(),
        }
    }

    /// Adds a rendered event to its app's batch; the batch when this filled
    /// it (by count, or because the event would take it past the byte
    /// bound, in which case the event opens the next one).
    pub(super) fn add(&mut self, app: &Arc<str>, event: Rendered, now: Instant) -> Option<Batch> {
        let mut full = None;
        if self
            .open
            .get(app)
            .is_some_and(|b| b.bytes + event.json.len() > self.limits.bytes)
        {
            full = self.open.remove(app);
        }
        let batch = self.open.entry(app.clone()).or_insert_with(|| Batch {
            app: app.clone(),
            events: Vec::new(),
            opened: now,
            bytes: 0,
        });
        batch.bytes += event.json.len();
        batch.events.push(event);
        if full.is_none() && batch.events.len() >= self.limits.events {
            full = self.open.remove(app);
        }
        full
    }

    /// The batches whose window has ended by `now`.
    pub(super) fn due(&mut self, now: Instant) -> Vec<Batch> {
        let window = self.limits.window;
        let apps: Vec<Arc<str>> = self
            .open
            .values()
            .filter(|b| b.opened + window <= now)
            .map(|b| b.app.clone())
            .collect();
        apps.iter()
            .filter_map(|app| self.open.remove(app))
            .collect()
    }

    /// When the oldest open batch's window ends.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|b| b.opened + self.limits.window)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(3);

    fn vacated(channel: &str) -> AppEvent {
        AppEvent::ChannelVacated {
            channel: channel.into(),
        }
    }

    fn occupied(channel: &str) -> AppEvent {
        AppEvent::ChannelOccupied {
            channel: channel.into(),
        }
    }

    fn ev(json: &str) -> Rendered {
        Rendered {
            name: "e",
            json: json.to_owned(),
        }
    }

    fn jsons(batch: &Batch) -> Vec<&str> {
        batch.events.iter().map(|e| e.json.as_str()).collect()
    }

    fn names(events: &[(Arc<str>, AppEvent)]) -> Vec<String> {
        events.iter().map(|(a, e)| format!("{a}:{e:?}")).collect()
    }

    #[test]
    fn a_vacated_channel_is_told_after_the_hold() {
        let t0 = Instant::now();
        let mut held = Held::new(HOLD);
        let app: Arc<str> = "1".into();
        assert!(held.report(app.clone(), vacated("c"), t0).is_none());
        assert_eq!(held.next_due(), Some(t0 + HOLD));
        assert!(
            held.release(t0 + HOLD - Duration::from_millis(1))
                .is_empty()
        );
        let out = held.release(t0 + HOLD);
        assert_eq!(names(&out), [format!("1:{:?}", vacated("c"))]);
        assert_eq!(held.len(), 0);
        // Occupied again later: told, as a channel that was vacated.
        assert!(held.report(app, occupied("c"), t0 + HOLD).is_some());
    }

    #[test]
    fn occupied_within_the_hold_cancels_both() {
        let t0 = Instant::now();
        let mut held = Held::new(HOLD);
        let app: Arc<str> = "1".into();
        held.report(app.clone(), vacated("c"), t0);
        held.report(app.clone(), vacated("d"), t0);
        let again = held.report(app.clone(), occupied("c"), t0 + Duration::from_secs(2));
        assert!(
            again.is_none(),
            "the occupied of a channel that never looked vacated"
        );
        let out = held.release(t0 + HOLD);
        assert_eq!(names(&out), [format!("1:{:?}", vacated("d"))]);
        // Another app's channel of the same name is another channel.
        held.report(app.clone(), vacated("e"), t0);
        assert!(held.report("2".into(), occupied("e"), t0).is_some());
    }

    #[test]
    fn members_pass_straight_through() {
        let t0 = Instant::now();
        let mut held = Held::new(HOLD);
        let app: Arc<str> = "1".into();
        let removed = AppEvent::MemberRemoved {
            channel: "presence-c".into(),
            user_id: "u1".into(),
        };
        let added = AppEvent::MemberAdded {
            channel: "presence-c".into(),
            user_id: "u1".into(),
        };
        assert!(held.report(app.clone(), removed, t0).is_some());
        assert!(held.report(app, added, t0).is_some());
        assert_eq!(held.next_due(), None);
    }

    #[test]
    fn past_the_cap_the_oldest_held_leave_is_dropped_and_counted() {
        let t0 = Instant::now();
        let mut held = Held::new(HOLD);
        held.cap = 2;
        let app: Arc<str> = "1".into();
        held.report(app.clone(), vacated("a"), t0);
        held.report(app.clone(), vacated("b"), t0);
        held.report(app.clone(), vacated("b"), t0 + Duration::from_millis(1));
        assert_eq!(
            held.take_dropped(),
            0,
            "a leave reported again is no new one"
        );
        held.report(app.clone(), vacated("c"), t0 + Duration::from_millis(2));
        assert_eq!(held.len(), 2);
        assert_eq!(held.take_dropped(), 1);
        assert_eq!(held.take_dropped(), 0, "counted once");
        let out = held.release(t0 + HOLD + Duration::from_secs(1));
        let channels: Vec<_> = out
            .iter()
            .map(|(_, e)| match e {
                AppEvent::ChannelVacated { channel } => channel.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(channels, ["b", "c"], "the oldest, a, went");
    }

    #[test]
    fn a_leave_reported_again_is_held_from_its_last_report() {
        let t0 = Instant::now();
        let mut held = Held::new(HOLD);
        let app: Arc<str> = "1".into();
        held.report(app.clone(), vacated("c"), t0);
        held.report(app.clone(), vacated("c"), t0 + Duration::from_secs(1));
        assert!(held.release(t0 + HOLD).is_empty());
        assert_eq!(held.release(t0 + HOLD + Duration::from_secs(1)).len(), 1);
    }

    #[test]
    fn batches_close_by_window_count_and_bytes() {
        let t0 = Instant::now();
        let limits = BatchLimits {
            window: Duration::from_millis(100),
            events: 3,
            bytes: 20,
        };
        let mut batches = Batches::new(limits);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert!(batches.add(&a, ev("1"), t0).is_none());
        assert!(
            batches
                .add(&b, ev("x"), t0 + Duration::from_millis(50))
                .is_none()
        );
        assert!(batches.add(&a, ev("2"), t0).is_none());
        let full = batches.add(&a, ev("3"), t0).expect("three events fill it");
        assert_eq!(jsons(&full), ["1", "2", "3"]);
        assert_eq!(
            super::super::render::body(7, full.events.iter()),
            r#"{"time_ms":7,"events":[1,2,3]}"#
        );
        // The byte bound: the event that would pass it opens the next batch.
        batches.add(&a, ev("0123456789"), t0);
        let full = batches
            .add(&a, ev("0123456789A"), t0)
            .expect("bytes fill it");
        assert_eq!(jsons(&full), ["0123456789"]);
        assert_eq!(batches.next_due(), Some(t0 + Duration::from_millis(100)));
        let due = batches.due(t0 + Duration::from_millis(100));
        assert_eq!(due.len(), 1);
        assert_eq!(jsons(&due[0]), ["0123456789A"]);
        assert!(batches.due(t0 + Duration::from_millis(149)).is_empty());
        assert_eq!(
            jsons(&batches.due(t0 + Duration::from_millis(150))[0]),
            ["x"]
        );
        assert_eq!(batches.next_due(), None);
    }
}
