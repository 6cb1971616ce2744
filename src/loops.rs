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
//! to the next loop in turn ([`Loops::serve`]); the socket is registered
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
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

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

/// The running loops of one gateway.
pub struct Loops {
    /// Each loop's queue of sockets to take on (see [`Loops::serve`]).
    queues: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

/// A socket handed to a loop: run on the loop's thread, it spawns the
/// connection's task there.
type Job = Box<dyn FnOnce() + Send>;

/// The loops run until this is dropped. What still runs on them then is
/// dropped with them (connections closed).
pub struct Lifetime {
    _alive: watch::Sender<()>,
}

impl Loops {
    /// Start [`count`] loops, each on a thread of its own.
    pub fn start() -> io::Result<(Loops, Lifetime)> {
        let (alive, watching) = watch::channel(());
        let mut queues = Vec::new();
        for n in 1..=count() {
            // The runtime is made on its thread and only its queue comes
            // back: a runtime dropped here, inside the caller's runtime,
            // would panic.
            let (made, handle) = std::sync::mpsc::channel();
            let mut watching = watching.clone();
            std::thread::Builder::new()
                .name(format!("pushgate-loop-{n}"))
                .spawn(move || {
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
                    let (queue, mut jobs) = mpsc::unbounded_channel::<Job>();
                    let _ = made.send(Ok(queue));
                    CURRENT.with(|c| c.set(n));
                    runtime.block_on(async move {
                        // The queue closes when the accept loop ends (at
                        // shutdown): the loop goes on serving its
                        // connections through the drain, until `Lifetime`.
                        let mut taking = true;
                        loop {
                            tokio::select! {
                                changed = watching.changed() => if changed.is_err() { break },
                                job = jobs.recv(), if taking => match job {
                                    Some(job) => job(),
                                    None => taking = false,
                                },
                            }
                        }
                    });
                    // Dropping the runtime here drops what still runs on it:
                    // the gateway has drained, or its runtime is gone.
                })?;
            queues.push(handle.recv().map_err(io::Error::other)??);
        }
        let loops = Loops {
            queues,
            next: AtomicUsize::new(0),
        };
        Ok((loops, Lifetime { _alive: alive }))
    }

    /// Serve `stream` on the next loop in turn: `serve` gets it registered
    /// with that loop's reactor, and runs there as a task of `tasks`.
    pub fn serve<F, Fut>(&self, tasks: &TaskTracker, stream: std::net::TcpStream, serve: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        // Counted by `tasks` from now, as a task spawned here would be: a
        // drain that starts while the socket waits in the queue waits for it.
        let tracked = tasks.token();
        // Only this small box is allocated on the accept loop's thread, and
        // freed as soon as the loop takes it; the task is made on the loop.
        let job: Job = Box::new(move || {
            tokio::spawn(async move {
                let _tracked = tracked;
                match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => serve(stream).await,
                    Err(error) => tracing::warn!(%error, "could not take on a connection"),
                }
            });
        });
        // The queues close only when `Loops` is dropped, which takes this
        // sender with it: a send that fails means the loop's thread died
        // (its runtime could not run on). The socket is dropped (closed);
        // say so, or connections would vanish without a trace.
        if self.queues[n].send(job).is_err() {
            tracing::error!(
                serving_loop = n + 1,
                "serving loop gone: connection dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// The accept loop drops its `Loops` (closing the queues) when it stops
    /// accepting, at the start of a drain: the connections the loops
    /// already serve must go on until the `Lifetime` ends, or a drain
    /// would cut every connection instead of letting it finish.
    #[tokio::test]
    async fn connections_outlive_the_accept_loop_until_the_lifetime_ends() {
        let (loops, lifetime) = Loops::start().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        // As the accept loop hands it over (`into_std` keeps it so).
        stream.set_nonblocking(true).unwrap();
        let tasks = TaskTracker::new();
        let (go_on, told) = oneshot::channel::<()>();
        let (served, done) = oneshot::channel::<usize>();
        loops.serve(&tasks, stream, move |_stream| async move {
            let _ = told.await;
            let _ = served.send(current());
        });
        drop(loops);
        // The queued socket is counted before the loop takes it.
        assert_eq!(tasks.len(), 1);
        let _ = go_on.send(());
        let on = tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("the connection finished")
            .expect("the connection was not dropped with the queue");
        assert!(on >= 1, "served on a loop, not on the caller's runtime");
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .expect("the tracker saw the task end");
        drop(lifetime);
    }
}
