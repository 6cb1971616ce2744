//! The event loops client connections are served on: one single-threaded
//! runtime per core, each public connection on one of them for its whole
//! life (nginx's worker model inside one process).
//!
//! Why: a proxied request is a few system calls on two sockets. On tokio's
//! work-stealing runtime the task making them hops between threads, wakes
//! parked workers (a futex and an inter-processor interrupt) and shares run
//! queues and timer wheels, which costs CPU per request and milliseconds at
//! the tail when the cores are busy (`bench/RESULTS.md`). On a loop of its
//! own a connection's task, its timers, its sockets and the backend
//! connections it uses stay on one thread.
//!
//! The accept loop stays on the main runtime and hands each accepted socket
//! to the next loop in turn ([`Loops::serve`]), through a queue per loop
//! that is bounded ([`Loops::room`]) and outlives a loop that dies
//! (`lane.rs`); the socket is registered
//! with that loop's reactor there, and its task is made there too: a task
//! spawned from the accept loop's thread is allocated in that thread's
//! allocator arena, which a connect burst then leaves holding thousands of
//! freed openings (about 0.5 KiB per idle connection after 10,000
//! connects, measured with `malloc_stats`). Everything else (the admin listener,
//! brokers, health checks, reloads) runs on the main runtime. Backend pools
//! keep each loop's idle connections apart ([`current`]), since a socket
//! belongs to the reactor it was registered with.
//!
//! The loops run until their [`Lifetime`] is dropped: the gateway's handle
//! keeps it, so the loops end after the drain, or as soon as the handle is
//! dropped without one; their threads never outlive the gateway.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};
use tokio_util::task::TaskTracker;

mod lane;
mod pulse;
#[cfg(test)]
pub(crate) mod tests;

use lane::{Job, Lane, Taker};
use pulse::Clock;

thread_local! {
    /// Which loop this thread runs, counted from 1; 0 on any other thread.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The loop this thread runs (1 to [`count`]), or 0 when it runs none
/// (the main runtime, a test's runtime).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// How many loops a gateway runs: one per core the process may use (read
/// once: it is asked of cgroup files).
pub fn count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How many accepted sockets may wait in one loop's queue before the
/// accept loop stops accepting ([`Loops::room`]). A loop takes a queued
/// socket on in a few microseconds (one spawn), so its queue is near empty
/// unless its thread is held up; past this many, more sockets would only
/// wait behind it, each holding a file descriptor and a place in memory,
/// while the listener's kernel backlog (4096 deep) holds them for nothing
/// and hands them to whichever loop frees first. 256 is far above what a
/// loop that keeps up holds (it takes each socket on with one spawn), so
/// only a stuck or badly overloaded loop meets it, and far below any
/// file-descriptor limit a server runs with.
pub(crate) const QUEUED_PER_LOOP: usize = 256;

/// The running loops of one gateway.
pub struct Loops {
    /// Each loop's queue of sockets to take on (see [`Loops::serve`]).
    lanes: Vec<Lane>,
    next: AtomicUsize,
    /// Sockets one queue may hold before accepting pauses.
    bound: usize,
    /// Rung when a full queue takes a socket, or a loop dies.
    freed: Arc<Notify>,
    /// Every loop has died: said once.
    orphaned: AtomicBool,
    /// What the loops' heartbeats are stamped in (`pulse.rs`).
    clock: Clock,
    /// A loop whose heartbeat is older gets no new socket while another
    /// runs ([`pulse::STALE_AFTER`]; shorter or longer in tests).
    stale_after: std::time::Duration,
}

/// The loops run until this is dropped. What still runs on them then is
/// dropped with them (connections closed).
pub struct Lifetime {
    _alive: watch::Sender<()>,
}

impl Loops {
    /// Start [`count`] loops, each on a thread of its own, each queue
    /// bounded at [`QUEUED_PER_LOOP`].
    pub fn start() -> io::Result<(Loops, Lifetime)> {
        Loops::start_with(count(), QUEUED_PER_LOOP)
    }

    /// Start `count` loops whose queues hold `bound` sockets each.
    pub(crate) fn start_with(count: usize, bound: usize) -> io::Result<(Loops, Lifetime)> {
        let (alive, watching) = watch::channel(());
        let freed = Arc::new(Notify::new());
        let (lanes, takers) = lane::queues(count.max(1), bound, &freed);
        let clock = Clock::start();
        for (n, taker) in (1..).zip(takers) {
            // The runtime is made on its thread and only whether it could
            // be comes back: a runtime dropped here, inside the caller's
            // runtime, would panic.
            let (made, told) = std::sync::mpsc::channel();
            let watching = watching.clone();
            std::thread::Builder::new()
                .name(format!("pushgate-loop-{n}"))
                .spawn(move || run(n, taker, clock, watching, made))?;
            told.recv().map_err(io::Error::other)??;
        }
        let loops = Loops {
            lanes,
            next: AtomicUsize::new(0),
            bound,
            freed,
            orphaned: AtomicBool::new(false),
            clock,
            stale_after: pulse::STALE_AFTER,
        };
        Ok((loops, Lifetime { _alive: alive }))
    }

    /// Ready once a loop's queue has room for one more socket, or when
    /// every loop has died ([`Loops::serve`] then serves on the caller's
    /// runtime). The accept loop waits for it before each accept: while
    /// every queue is full, new connections wait in the kernel's backlog,
    /// not in ours, and accepting resumes as soon as one queue drains.
    pub async fn room(&self) {
        // The usual case, room at once, takes no lock.
        while !self.has_room() {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking again, so a loop freeing a place
            // between the look and the wait is not missed.
            freed.as_mut().enable();
            if self.has_room() {
                return;
            }
            freed.await;
        }
    }

    /// The loops' states as they are now, readable from anywhere.
    pub fn health(&self) -> Health {
        Health {
            loops: self
                .lanes
                .iter()
                .map(|lane| lane.shared().clone())
                .collect(),
            clock: self.clock,
            stale_after: self.stale_after,
        }
    }

    /// Whether a live loop's queue has room, or no loop lives.
    fn has_room(&self) -> bool {
        let mut live = self.lanes.iter().filter(|lane| !lane.died()).peekable();
        live.peek().is_none() || live.any(|lane| lane.has_room(self.bound))
    }

    /// Serve `stream` on the next running loop in turn whose queue has room
    /// (see [`Loops::choose`] when none has): `serve` gets it registered
    /// with that loop's reactor, and runs there as a task of `tasks`. A
    /// loop whose thread died is skipped; a socket sent to it as it died is
    /// sent to the next one. When every loop has died, this runtime serves
    /// it.
    pub fn serve<F, Fut>(&self, tasks: &TaskTracker, stream: std::net::TcpStream, serve: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Counted by `tasks` from now, as a task spawned here would be: a
        // drain that starts while the socket waits in the queue waits for it.
        let tracked = tasks.token();
        // Only this small box is allocated on the accept loop's thread, and
        // freed as soon as the loop takes it; the task is made on the loop.
        let mut job: Job = Box::new(move || {
            tokio::spawn(async move {
                let _tracked = tracked;
                match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => serve(stream).await,
                    Err(error) => tracing::warn!(%error, "could not take on a connection"),
                }
            });
        });
        while let Some(n) = self.choose() {
            match self.lanes[n].push(job) {
                Ok(()) => return,
                // It died as the socket was sent (it says so once, as it
                // dies): the next loop.
                Err(back) if self.lanes[n].died() => job = back,
                // Its loop ended with the gateway (the handle was dropped
                // while this accept was under way): nobody serves it now.
                Err(_) => {
                    tracing::debug!("serving loops ended: connection closed");
                    return;
                }
            }
        }
        if !self.orphaned.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "every serving loop died: connections are served on the accept loop's runtime"
            );
        }
        // On this runtime, as the admin listener's connections are.
        job();
    }

    /// The next loop in turn that runs (its heartbeat is recent,
    /// `pulse.rs`) and whose queue has room; else the next live one with
    /// room (every one with room is stalled: it may run again), else the
    /// next live one; `None` when every loop has died. Sockets already
    /// queued on a loop that stalls wait for it.
    fn choose(&self) -> Option<usize> {
        let count = self.lanes.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let turn = (0..count).map(|i| first.wrapping_add(i) % count);
        let live = |n: &usize| !self.lanes[*n].died();
        let room = |n: &usize| self.lanes[*n].has_room(self.bound);
        let now = self.clock.now();
        let running = |n: &usize| {
            let pulse = self.lanes[*n].shared().pulse();
            pulse.running(n + 1, now, self.stale_after)
        };
        (turn.clone().filter(live).filter(room).find(running))
            .or_else(|| turn.clone().filter(live).find(room))
            .or_else(|| turn.clone().find(live))
    }

    /// How old a heartbeat may be before its loop is passed over.
    #[cfg(test)]
    pub(crate) fn set_stale_after(&mut self, after: std::time::Duration) {
        self.stale_after = after;
    }
}

/// Loop `n`'s thread: its runtime takes the sockets of its queue on, and
/// serves them until the [`Lifetime`] ends.
fn run(
    n: usize,
    taker: Taker,
    clock: Clock,
    mut watching: watch::Receiver<()>,
    made: std::sync::mpsc::Sender<io::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = made.send(Err(error));
            return;
        }
    };
    let _ = made.send(Ok(()));
    CURRENT.with(|c| c.set(n));
    // After the runtime: dropped before it when the thread unwinds, so a
    // loop that dies hands its queue on (`lane.rs`).
    let mut taker = taker;
    runtime.block_on(async {
        tokio::spawn(pulse::beating(taker.shared().clone(), clock));
        // The queue closes when the accept loop ends (at shutdown): the loop
        // goes on serving its connections through the drain, until
        // `Lifetime`.
        let mut taking = true;
        loop {
            tokio::select! {
                changed = watching.changed() => if changed.is_err() { break },
                job = taker.next(), if taking => match job {
                    Some(job) => job(),
                    None => taking = false,
                },
            }
        }
    });
    // Dropping the runtime here drops what still runs on it: the gateway
    // has drained, or its runtime is gone.
}

/// How many serving loops are in each state (`/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct States {
    pub running: usize,
    /// Alive, but no heartbeat for over [`pulse::STALE_AFTER`].
    pub stalled: usize,
    /// Its thread ended by a panic; it is not restarted.
    pub dead: usize,
}

/// The serving loops' states, read at any time from anywhere (the metrics
/// scrape), without the accept side's handle.
#[derive(Clone, Debug)]
pub struct Health {
    loops: Vec<Arc<lane::Shared>>,
    clock: Clock,
    stale_after: std::time::Duration,
}

impl Health {
    pub fn states(&self) -> States {
        let now = self.clock.now();
        let mut states = States::default();
        for shared in &self.loops {
            if shared.died() {
                states.dead += 1;
            } else if shared.pulse().stale(now, self.stale_after) {
                states.stalled += 1;
            } else {
                states.running += 1;
            }
        }
        states
    }
}
