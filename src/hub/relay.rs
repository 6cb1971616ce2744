//! A serving loop's share of fan-out: the hub hands each loop one job per
//! message, and the loop pushes it into the inboxes of its own connections.
//!
//! Why: a connection's task lives on one single-threaded loop (`loops.rs`).
//! Woken from another thread, tokio's current-thread scheduler puts the task
//! on its shared queue and writes the loop's eventfd, one system call per
//! subscriber per message: 5,000 of them, one after another on the broker's
//! thread, before the last subscriber's task is even queued. Woken on its own
//! loop, a task goes on the local run queue with no system call. So the hub
//! wakes each loop that has subscribers on the channel once, and that loop
//! does the pushes; the loops fan out side by side.
//!
//! Order is kept: jobs run in the order they were sent, by one drain task at
//! a time per loop. The drain runs at most [`BATCH`] jobs, then yields, so a
//! steady publisher cannot starve the loop's writers, timers and heartbeats
//! (inboxes would fill before anything is written and clients be evicted as
//! slow). The queue holds at most [`CAP`] jobs: past it, the queued messages
//! are replaced by one lost mark per channel, so a loop that cannot keep up
//! holds no messages history has dropped, and its clients resume from
//! history instead. A loop that is gone (its runtime shut down) cannot run
//! its drain; the drain's guard then delivers on the thread that dropped it,
//! so nothing sent is lost however the gateway stops.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use super::Subscribers;
use crate::model::Message;

/// Jobs one drain runs before it yields to the loop's other tasks.
const BATCH: usize = 64;

/// Jobs a loop's queue holds before they become lost marks.
const CAP: usize = 4096;

/// Spare room a queue keeps once drained; more is given back after a peak.
const KEEP: usize = 64;

/// What one job delivers to a loop's subscribers of one channel.
pub(super) enum Delivery {
    Message(Arc<Message>),
    /// Messages were lost before the hub (`Hub::lost`), or in this queue.
    Lost(Arc<str>),
}

struct Job {
    subscribers: Arc<Subscribers>,
    delivery: Delivery,
}

impl Job {
    fn channel(&self) -> &Arc<str> {
        match &self.delivery {
            Delivery::Message(msg) => &msg.channel,
            Delivery::Lost(channel) => channel,
        }
    }

    /// Which channel's subscribers the job is for (the list's address).
    fn key(&self) -> usize {
        Arc::as_ptr(&self.subscribers) as usize
    }
}

/// One loop's queue of fan-out jobs.
pub(super) struct Relay {
    /// The loop's number (`loops::current`): which subscribers are its own.
    place: usize,
    handle: tokio::runtime::Handle,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Channels (by [`Job::key`]) with a lost mark queued by the cap: their
    /// next messages are covered by it (the client resumes from history).
    lost: HashSet<usize>,
    /// A drain task is spawned and has not yet found the queue empty: the
    /// next job joins its queue instead of spawning another.
    draining: bool,
}

impl Queue {
    /// Add `job`, keeping the queue under [`CAP`].
    fn push(&mut self, job: Job) {
        if self.lost.contains(&job.key()) {
            return;
        }
        if self.jobs.len() >= CAP {
            self.collapse();
            if self.lost.contains(&job.key()) {
                return;
            }
        }
        if self.jobs.len() >= CAP {
            // More channels than the cap have jobs queued: this one's
            // message becomes its mark.
            self.lost.insert(job.key());
            let channel = job.channel().clone();
            self.jobs.push_back(Job {
                subscribers: job.subscribers,
                delivery: Delivery::Lost(channel),
            });
            return;
        }
        self.jobs.push_back(job);
    }

    /// Replace the queued jobs by one lost mark per channel, in the order
    /// the channels first appear.
    fn collapse(&mut self) {
        let jobs = std::mem::take(&mut self.jobs);
        for job in jobs {
            if self.lost.insert(job.key()) {
                let channel = job.channel().clone();
                self.jobs.push_back(Job {
                    subscribers: job.subscribers,
                    delivery: Delivery::Lost(channel),
                });
            }
        }
    }

    /// Take up to [`BATCH`] jobs into `batch`; false when there were none,
    /// and the drain ends (giving back what a peak left allocated).
    fn take(&mut self, batch: &mut Vec<Job>) -> bool {
        let n = self.jobs.len().min(BATCH);
        for job in self.jobs.drain(..n) {
            if matches!(job.delivery, Delivery::Lost(_)) {
                self.lost.remove(&job.key());
            }
            batch.push(job);
        }
        if n > 0 {
            return true;
        }
        self.draining = false;
        self.jobs.shrink_to(KEEP);
        self.lost.shrink_to(KEEP);
        false
    }
}

impl Relay {
    /// The relay of loop `place`, whose runtime `handle` is.
    pub(super) fn new(place: usize, handle: tokio::runtime::Handle) -> Arc<Relay> {
        Arc::new(Relay {
            place,
            handle,
            queue: Mutex::new(Queue::default()),
        })
    }

    /// Queue `delivery` for this loop's subscribers in `subscribers`; wakes
    /// the loop only when no drain is already under way.
    pub(super) fn send(self: &Arc<Self>, subscribers: &Arc<Subscribers>, delivery: Delivery) {
        let spawn = {
            let mut queue = self.queue.lock();
            queue.push(Job {
                subscribers: subscribers.clone(),
                delivery,
            });
            !std::mem::replace(&mut queue.draining, true)
        };
        if spawn {
            let drain = Drain {
                relay: self.clone(),
                done: false,
            };
            // Not awaited: the drain ends by itself when the queue is empty.
            drop(self.handle.spawn(drain.run()));
        }
    }

    /// Deliver `batch`'s jobs, in order.
    fn deliver(&self, batch: &mut Vec<Job>) {
        for job in batch.drain(..) {
            match &job.delivery {
                Delivery::Message(msg) => job.subscribers.push(self.place, msg),
                Delivery::Lost(channel) => job.subscribers.mark_lost(self.place, channel),
            }
        }
    }
}

/// The spawned drain. Dropped before it found the queue empty (its loop
/// shut down), it delivers what is queued where it is dropped; dropped by
/// a panic, it only lets the next job spawn a new drain.
struct Drain {
    relay: Arc<Relay>,
    /// The drain found the queue empty and cleared `draining` itself.
    done: bool,
}

impl Drain {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        while self.relay.queue.lock().take(&mut batch) {
            self.relay.deliver(&mut batch);
            tokio::task::yield_now().await;
        }
        self.done = true;
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if std::thread::panicking() {
            self.relay.queue.lock().draining = false;
            return;
        }
        let mut batch = Vec::with_capacity(BATCH);
        while self.relay.queue.lock().take(&mut batch) {
            self.relay.deliver(&mut batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::super::tests::message;
    use super::super::{Drained, Hub, Inbox, Subscription};
    use crate::model::SlowClient;

    use super::*;

    /// A stand-in serving loop: a current-thread runtime on a thread of its
    /// own, held (running nothing) until `open`, ended by `stop`.
    struct TestLoop {
        handle: tokio::runtime::Handle,
        open: Option<mpsc::Sender<()>>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl TestLoop {
        fn start() -> TestLoop {
            let (made, handle) = mpsc::channel();
            let (open, opened) = mpsc::channel::<()>();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                made.send(runtime.handle().clone()).unwrap();
                runtime.block_on(async move {
                    // Blocks the loop's thread: nothing spawned runs yet.
                    let _ = opened.recv();
                    let _ = stopped.await;
                });
            });
            TestLoop {
                handle: handle.recv().unwrap(),
                open: Some(open),
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        /// Subscribe `inbox` to `channel` as a connection on this loop (`place`).
        fn subscribe(
            &self,
            hub: &Hub,
            place: usize,
            channel: &Arc<str>,
            inbox: &Inbox,
        ) -> Subscription {
            let _in_loop = self.handle.enter();
            let place = hub.place(place);
            hub.subscribe_at(channel, inbox, SlowClient::Disconnect, place)
        }

        fn open(&mut self) {
            drop(self.open.take());
        }

        /// End the loop and wait until its runtime is gone.
        fn end(mut self) {
            self.open();
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap();
            }
        }
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    fn seqs(inbox: &Inbox) -> (Vec<u64>, Vec<Arc<str>>) {
        let mut d = Drained::default();
        inbox.drain(&mut d);
        (d.messages.iter().map(|m| m.seq).collect(), d.lost)
    }

    #[test]
    fn a_loops_subscribers_are_pushed_to_on_their_loop_in_order() {
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        let mut lp = TestLoop::start();
        let on_loop = Inbox::new(16);
        let on_none = Inbox::new(16);
        let _s1 = lp.subscribe(&hub, 1, &a, &on_loop);
        let _s2 = hub.subscribe_at(&a, &on_none, SlowClient::Disconnect, 0);
        for seq in 1..=3 {
            assert_eq!(hub.fanout(&message(&a, seq)), 2);
        }
        hub.lost(&a);
        // The loop is held: its subscriber has nothing yet; the other one
        // was pushed to by fan-out itself.
        assert_eq!(on_loop.len(), 0, "pushed on the publisher's thread");
        assert_eq!(seqs(&on_none), (vec![1, 2, 3], vec![a.clone()]));
        lp.open();
        wait_for("the loop's pushes", || on_loop.len() == 3);
        // The lost mark came after the messages, by the same road.
        wait_for("the lost mark", || {
            let mut d = Drained::default();
            on_loop.drain(&mut d);
            d.messages.iter().map(|m| m.seq).eq([1, 2, 3]) && d.lost == [a.clone()]
        });
        lp.end();
    }

    #[test]
    fn a_loop_with_no_subscriber_on_the_channel_gets_no_job() {
        let hub = Hub::new();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let lp = TestLoop::start();
        let inbox = Inbox::new(16);
        let _on_b = lp.subscribe(&hub, 1, &b, &inbox);
        let on_a = lp.subscribe(&hub, 1, &a, &inbox);
        let elsewhere = Inbox::new(16);
        let _direct = hub.subscribe_at(&a, &elsewhere, SlowClient::Disconnect, 0);
        let relay = hub.inner.relays[1].get().unwrap().clone();
        hub.fanout(&message(&a, 1));
        assert_eq!(relay.queue.lock().jobs.len(), 1);
        drop(on_a);
        hub.fanout(&message(&a, 2));
        assert_eq!(
            relay.queue.lock().jobs.len(),
            1,
            "a job for a loop without subscribers"
        );
        assert_eq!(elsewhere.len(), 2);
        lp.end();
        assert!(relay.queue.lock().jobs.is_empty(), "the queued job ran");
        // Members are read when the loop runs the job: the inbox had left
        // the channel by then.
        assert_eq!(seqs(&inbox).0, Vec::<u64>::new());
    }

    #[test]
    fn what_a_gone_loop_was_sent_is_delivered_where_its_drain_is_dropped() {
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        let lp = TestLoop::start();
        let inbox = Inbox::new(16);
        let _sub = lp.subscribe(&hub, 1, &a, &inbox);
        // Queued while the loop is held, then the loop ends without running it.
        hub.fanout(&message(&a, 1));
        lp.end();
        assert_eq!(seqs(&inbox).0, vec![1]);
        // Sent after the loop is gone.
        hub.fanout(&message(&a, 2));
        assert_eq!(seqs(&inbox).0, vec![2]);
    }

    #[test]
    fn a_drain_yields_to_the_loops_other_tasks_between_batches() {
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        let mut lp = TestLoop::start();
        let inbox = Inbox::new(10 * BATCH);
        let _sub = lp.subscribe(&hub, 1, &a, &inbox);
        let total = 3 * BATCH as u64;
        for seq in 1..=total {
            hub.fanout(&message(&a, seq));
        }
        // Queued behind the drain: it runs when the drain first yields.
        let (seen, saw) = mpsc::channel();
        let probe = inbox.clone();
        drop(lp.handle.spawn(async move {
            let _ = seen.send(probe.len());
        }));
        lp.open();
        let at_probe = saw.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            at_probe < total as usize,
            "the loop's other tasks waited for all {total} pushes (saw {at_probe})"
        );
        wait_for("every push", || inbox.len() == total as usize);
        assert_eq!(seqs(&inbox).0, (1..=total).collect::<Vec<_>>());
        lp.end();
    }

    #[test]
    fn past_the_cap_a_loops_queued_messages_become_one_lost_mark_per_channel() {
        let hub = Hub::new();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut lp = TestLoop::start();
        let inbox = Inbox::new(2 * CAP);
        let _on_a = lp.subscribe(&hub, 1, &a, &inbox);
        let _on_b = lp.subscribe(&hub, 1, &b, &inbox);
        let relay = hub.inner.relays[1].get().unwrap().clone();
        hub.fanout(&message(&b, 1));
        for seq in 1..=(CAP as u64 + 10) {
            hub.fanout(&message(&a, seq));
        }
        {
            let queue = relay.queue.lock();
            assert!(queue.jobs.len() <= 2, "{} jobs held", queue.jobs.len());
        }
        lp.open();
        // Gathered across drains: the marks may come in two turns.
        let mut d = Drained::default();
        wait_for("the lost marks", || {
            inbox.drain(&mut d);
            d.lost.len() == 2
        });
        assert!(
            d.messages.is_empty() && inbox.is_empty(),
            "messages past the mark were delivered"
        );
        // The next message after the marks arrives as usual.
        hub.fanout(&message(&a, CAP as u64 + 11));
        wait_for("the next message", || inbox.len() == 1);
        wait_for("the drain's end", || !relay.queue.lock().draining);
        assert!(
            relay.queue.lock().jobs.capacity() < CAP,
            "the queue kept its peak"
        );
        lp.end();
    }
}
