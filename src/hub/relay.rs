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
//! a time per loop. A loop that is gone (its runtime shut down) cannot run
//! its drain; the drain's guard then delivers on the thread that dropped it,
//! so nothing sent is lost however the gateway stops.

use std::sync::Arc;

use parking_lot::Mutex;

use super::Subscribers;
use crate::model::Message;

/// What one job delivers to a loop's subscribers of one channel.
pub(super) enum Delivery {
    Message(Arc<Message>),
    /// Messages were lost before the hub (`Hub::lost`).
    Lost(Arc<str>),
}

struct Job {
    subscribers: Arc<Subscribers>,
    delivery: Delivery,
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
    jobs: Vec<Job>,
    /// A drain task is spawned and has not yet found the queue empty: the
    /// next job joins its queue instead of spawning another.
    draining: bool,
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
            queue.jobs.push(Job {
                subscribers: subscribers.clone(),
                delivery,
            });
            !std::mem::replace(&mut queue.draining, true)
        };
        if spawn {
            let drain = Drain {
                relay: self.clone(),
            };
            // Not awaited: the drain ends by itself when the queue is empty.
            drop(self.handle.spawn(async move { drain.run() }));
        }
    }

    /// Deliver every queued job, in order, until the queue is empty.
    fn drain(&self) {
        let mut jobs = Vec::new();
        loop {
            {
                let mut queue = self.queue.lock();
                std::mem::swap(&mut jobs, &mut queue.jobs);
                if jobs.is_empty() {
                    queue.draining = false;
                    return;
                }
            }
            for job in jobs.drain(..) {
                match &job.delivery {
                    Delivery::Message(msg) => job.subscribers.push(self.place, msg),
                    Delivery::Lost(channel) => job.subscribers.mark_lost(self.place, channel),
                }
            }
        }
    }
}

/// The spawned drain. Dropped without running (its loop shut down), it
/// delivers what is queued where it is dropped.
struct Drain {
    relay: Arc<Relay>,
}

impl Drain {
    fn run(self) {
        // `Drop` does the work: run or dropped, the queue is emptied once.
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.relay.drain();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::super::{Drained, Hub, Inbox, Subscription};
    use crate::model::{Message, SlowClient};

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

    fn msg(channel: &Arc<str>, seq: u64) -> Arc<Message> {
        let data = serde_json::value::RawValue::from_string(seq.to_string()).unwrap();
        Arc::new(Message::new(
            channel.clone(),
            "message".into(),
            &data,
            seq,
            None,
            1,
        ))
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
            assert_eq!(hub.fanout(&msg(&a, seq)), 2);
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
        hub.fanout(&msg(&a, 1));
        assert_eq!(relay.queue.lock().jobs.len(), 1);
        drop(on_a);
        hub.fanout(&msg(&a, 2));
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
        hub.fanout(&msg(&a, 1));
        lp.end();
        assert_eq!(seqs(&inbox).0, vec![1]);
        // Sent after the loop is gone.
        hub.fanout(&msg(&a, 2));
        assert_eq!(seqs(&inbox).0, vec![2]);
    }
}
