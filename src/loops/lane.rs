//! One serving loop's queue of accepted sockets: the accept side's end
//! ([`Lane`]), the loop's end ([`Taker`]), the count between them that
//! bounds the queue (`Loops::room`), and what becomes of the queue when its
//! loop's thread dies.
//!
//! Why a loop's death is handled here: a socket sent to a dead loop was
//! closed unserved, and so was each of its queued ones, and the dead loop
//! kept its turn. The loop's end marks the queue dead before it closes it,
//! so the accept side, whose send then fails, knows to try another loop;
//! and it hands what was still queued to the other loops' queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, WeakUnboundedSender};

use super::pulse::Pulse;

/// A socket handed to a loop: run on the loop's thread, it spawns the
/// connection's task there. It holds nothing of the loop it was sent to,
/// so any loop may run it.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// What both ends know of one queue and its loop.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Sockets sent and not yet taken by the loop.
    queued: AtomicUsize,
    /// The loop's thread ended by a panic: nothing is sent to it any more.
    died: AtomicBool,
    /// The loop's heartbeat (`pulse.rs`).
    pulse: Pulse,
}

impl Shared {
    pub(super) fn died(&self) -> bool {
        self.died.load(Ordering::Acquire)
    }

    pub(super) fn pulse(&self) -> &Pulse {
        &self.pulse
    }
}

impl AsRef<Pulse> for Shared {
    fn as_ref(&self) -> &Pulse {
        &self.pulse
    }
}

/// The accept side's end of one loop's queue.
pub(super) struct Lane {
    jobs: UnboundedSender<Job>,
    shared: Arc<Shared>,
}

/// Another loop's queue as a dying loop sees it: weak, so that it closes
/// when the accept side lets go of it, as the loops expect at a drain.
struct Elsewhere {
    jobs: WeakUnboundedSender<Job>,
    shared: Arc<Shared>,
}

/// The loop's end of its queue; see the module's doc for its drop.
pub(super) struct Taker {
    /// The loop's number, for the log.
    n: usize,
    jobs: UnboundedReceiver<Job>,
    shared: Arc<Shared>,
    /// Rung when a full queue takes a socket, or a loop dies: the accept
    /// loop, waiting for room, looks again.
    freed: Arc<Notify>,
    bound: usize,
    /// The other loops' queues, for what is left in this one if it dies.
    elsewhere: Vec<Elsewhere>,
}

/// One queue per loop, numbered from 1, each bounded at `bound` (see
/// `Loops::room`); each taker knows the other queues.
pub(super) fn queues(count: usize, bound: usize, freed: &Arc<Notify>) -> (Vec<Lane>, Vec<Taker>) {
    let (lanes, receivers): (Vec<Lane>, Vec<_>) = (0..count)
        .map(|_| {
            let (jobs, receiver) = mpsc::unbounded_channel();
            let shared = Arc::new(Shared::default());
            (Lane { jobs, shared }, receiver)
        })
        .unzip();
    let takers = receivers
        .into_iter()
        .enumerate()
        .map(|(i, jobs)| Taker {
            n: i + 1,
            jobs,
            shared: lanes[i].shared.clone(),
            freed: freed.clone(),
            bound,
            elsewhere: (lanes.iter().enumerate())
                .filter(|&(other, _)| other != i)
                .map(|(_, lane)| Elsewhere {
                    jobs: lane.jobs.downgrade(),
                    shared: lane.shared.clone(),
                })
                .collect(),
        })
        .collect();
    (lanes, takers)
}

/// Count `job` into a queue and send it; back when the queue is closed.
fn send(jobs: &UnboundedSender<Job>, shared: &Shared, job: Job) -> Result<(), Job> {
    shared.queued.fetch_add(1, Ordering::AcqRel);
    jobs.send(job).map_err(|unsent| {
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        unsent.0
    })
}

impl Lane {
    /// Whether the loop's thread died (it is not chosen any more).
    pub(super) fn died(&self) -> bool {
        self.shared.died()
    }

    /// What both ends know, for the loops' [`Health`](super::Health).
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether fewer than `bound` sockets wait in this queue.
    pub(super) fn has_room(&self, bound: usize) -> bool {
        self.shared.queued.load(Ordering::Acquire) < bound
    }

    /// Queue `job`; back when the loop's end is gone: its thread died
    /// ([`Lane::died`] then says so) or ended with the gateway.
    pub(super) fn push(&self, job: Job) -> Result<(), Job> {
        send(&self.jobs, &self.shared, job)
    }

    /// Sockets waiting in this queue (for tests).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

impl Taker {
    /// What both ends know, for the loop's heartbeat.
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The next socket to take on; `None` once the accept side has let go
    /// of the queue (the gateway drains) and it is empty.
    pub(super) async fn next(&mut self) -> Option<Job> {
        let job = self.jobs.recv().await?;
        // Only the move from full to not full can free the accept loop.
        if self.shared.queued.fetch_sub(1, Ordering::AcqRel) == self.bound {
            self.freed.notify_one();
        }
        Some(job)
    }

    /// Hand `job` to the live queue with the fewest sockets waiting.
    fn rehome(&self, job: Job) -> Result<(), Job> {
        let mut job = job;
        let mut live: Vec<(&Elsewhere, UnboundedSender<Job>)> = (self.elsewhere.iter())
            .filter(|other| !other.shared.died.load(Ordering::Acquire))
            .filter_map(|other| Some((other, other.jobs.upgrade()?)))
            .collect();
        live.sort_by_key(|(other, _)| other.shared.queued.load(Ordering::Acquire));
        for (other, jobs) in live {
            match send(&jobs, &other.shared, job) {
                Ok(()) => return Ok(()),
                Err(back) => job = back,
            }
        }
        Err(job)
    }
}

impl Drop for Taker {
    /// A loop that ends with its gateway drops what is queued (the drain
    /// waited for it already, or the gateway is dropped). One whose thread
    /// panics is marked dead first, so that the accept side skips it from
    /// now on and a send that fails is retried elsewhere; then its queue is
    /// closed and what it held goes to the other loops. Its live
    /// connections are lost with its runtime; nothing can keep those.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        self.shared.died.store(true, Ordering::Release);
        self.jobs.close();
        let (mut moved, mut lost) = (0usize, 0usize);
        // Until `Disconnected`, not the first `Empty`: a send counts its
        // job before it queues it, and tokio's `try_recv` says `Empty`
        // while one is counted and not yet queued (a send under way as the
        // queue closed), `Disconnected` only once the queue is closed and
        // nothing is under way. Stopping at `Empty` stranded that socket in
        // a queue nobody reads (the others' weak ends keep it open).
        loop {
            let job = match self.jobs.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Empty) => {
                    std::thread::yield_now();
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            };
            // Gone from this queue, whatever becomes of it.
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            match self.rehome(job) {
                Ok(()) => moved += 1,
                // No loop left: closed, as the accept side then serves
                // new sockets itself (`Loops::serve`).
                Err(_) => lost += 1,
            }
        }
        tracing::error!(
            serving_loop = self.n,
            moved,
            lost,
            "serving loop died: its connections are lost; queued and new ones go to the other loops"
        );
        // Its full queue, now gone, may be what the accept loop waits on
        // (`Loops::room`): nothing was taken from it, so nothing woke it.
        self.freed.notify_one();
    }
}
