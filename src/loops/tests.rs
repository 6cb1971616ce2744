//! The serving loops with real sockets: connections outlive the accept
//! loop, a loop's death costs no queued or new connection, and the queues'
//! bound holds the accept loop back until one drains. Also the helpers other
//! tests use to hold a loop busy or end it.

use super::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The threads of this process whose name says they run a serving loop.
pub(crate) fn loop_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("pushgate-loop-"))
        .count()
}

/// Tests that start serving loops run one at a time, each once the last
/// one's loop threads are gone: a test counts them by name (`lib.rs`).
pub(crate) async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let turn = ONE.lock().await;
    until_no_loop_threads("another test's loop threads outlived it").await;
    turn
}

/// Wait up to 10 s for every loop thread to end; `what` went wrong if not.
pub(crate) async fn until_no_loop_threads(what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while loop_threads() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Loop `i` (counted from 0) held busy until this is dropped: what a loop
/// whose thread is stuck in a long job looks like.
pub(crate) struct Held(std::sync::mpsc::Sender<()>);

impl Held {
    /// End the held loop's thread by a panic, from inside the holding job:
    /// it dies without taking anything more from its queue.
    pub(crate) fn die(self) {
        let _ = self.0.send(());
    }
}

/// Hold loop `i` busy; returns once its thread runs the holding job.
pub(crate) fn hold(loops: &Loops, i: usize) -> Held {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, start) = std::sync::mpsc::channel::<()>();
    let job: Job = Box::new(move || {
        let _ = started.send(());
        // Returns when `Held` is dropped; panics when it says `die`.
        if held.recv().is_ok() {
            panic!("a held serving loop dies, on purpose, in a test");
        }
    });
    assert!(loops.lanes[i].push(job).is_ok(), "loop {i} is live");
    start
        .recv_timeout(Duration::from_secs(5))
        .expect("the loop took the holding job");
    Held(release)
}

/// End loop `i`'s thread as a bug would: a panic on it, queued behind
/// what its queue holds now.
pub(crate) fn kill(loops: &Loops, i: usize) {
    let job: Job = Box::new(|| panic!("a serving loop dies, on purpose, in a test"));
    assert!(loops.lanes[i].push(job).is_ok(), "loop {i} is live");
}

/// Wait up to 5 s for loop `i` to be marked dead.
async fn until_dead(loops: &Loops, i: usize) {
    until("loop died", || loops.lanes[i].died()).await;
}

/// Wait up to 5 s for `condition`; `what` did not happen if not.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 5s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Loops whose heartbeats are never too old within a test: for the tests
/// that hold a loop on purpose and are not about its heartbeat (a slow
/// machine must not turn the hold into a stall).
fn start_never_stalled(count: usize, bound: usize) -> (Loops, Lifetime) {
    let (mut loops, lifetime) = Loops::start_with(count, bound).unwrap();
    loops.set_stale_after(Duration::from_secs(3600));
    (loops, lifetime)
}

/// A real connection through `listener`, given to `loops`; its server side
/// writes the number of the loop that serves it. The client's end.
async fn serve_one(
    loops: &Loops,
    tasks: &TaskTracker,
    listener: &std::net::TcpListener,
) -> tokio::net::TcpStream {
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    // As the accept loop hands it over (`into_std` keeps it so).
    stream.set_nonblocking(true).unwrap();
    loops.serve(tasks, stream, |mut stream| async move {
        let on = u8::try_from(current()).unwrap_or(u8::MAX);
        let _ = stream.write_all(&[on]).await;
    });
    client
}

/// The loop that served `client` (0: none of them, the caller's runtime).
async fn served_on(client: &mut tokio::net::TcpStream) -> u8 {
    let mut on = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut on))
        .await
        .expect("served within 5s")
        .expect("served, not closed unserved");
    on[0]
}

/// The accept loop drops its `Loops` (closing the queues) when it stops
/// accepting, at the start of a drain: the connections the loops
/// already serve must go on until the `Lifetime` ends, or a drain
/// would cut every connection instead of letting it finish.
#[tokio::test]
async fn connections_outlive_the_accept_loop_until_the_lifetime_ends() {
    let _turn = one_at_a_time().await;
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

/// A loop whose thread dies takes none of the connections it was owed with
/// it: those queued behind its death are served by the other loops, and so
/// is every new one (it is not chosen any more).
#[tokio::test]
async fn a_dead_loops_queued_and_new_connections_are_served_by_the_others() {
    let _turn = one_at_a_time().await;
    let (loops, _lifetime) = start_never_stalled(3, 64);
    let tasks = TaskTracker::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Loop 1 busy, its death queued next, then its turn of nine sockets
    // queued behind its death.
    let held = hold(&loops, 0);
    kill(&loops, 0);
    let mut clients = Vec::new();
    for _ in 0..9 {
        clients.push(serve_one(&loops, &tasks, &listener).await);
    }
    assert_eq!(loops.lanes[0].queued(), 4, "three sockets behind its death");
    drop(held);
    // New connections once it is dead: its turn comes round twice.
    until_dead(&loops, 0).await;
    for _ in 0..6 {
        clients.push(serve_one(&loops, &tasks, &listener).await);
    }
    for client in &mut clients {
        let on = served_on(client).await;
        assert!(on == 2 || on == 3, "served on loop {on}");
    }
}

/// With every loop dead, the caller's runtime serves the connections, as
/// it serves the admin listener's: no loop left is no reason to close them.
#[tokio::test]
async fn with_every_loop_dead_the_callers_runtime_serves() {
    let _turn = one_at_a_time().await;
    let (loops, _lifetime) = Loops::start_with(1, 64).unwrap();
    let tasks = TaskTracker::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    kill(&loops, 0);
    until_dead(&loops, 0).await;
    for _ in 0..3 {
        let mut client = serve_one(&loops, &tasks, &listener).await;
        assert_eq!(served_on(&mut client).await, 0);
    }
}

/// `room` is not ready while every queue holds its bound, and is as soon
/// as one loop takes a socket; sockets go to the queue with room.
#[tokio::test]
async fn room_waits_while_every_queue_is_full() {
    use futures_util::FutureExt;
    let _turn = one_at_a_time().await;
    let (loops, _lifetime) = start_never_stalled(2, 2);
    let tasks = TaskTracker::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (first, second) = (hold(&loops, 0), hold(&loops, 1));
    let mut clients = Vec::new();
    for _ in 0..4 {
        assert!(loops.room().now_or_never().is_some(), "room in a queue");
        clients.push(serve_one(&loops, &tasks, &listener).await);
    }
    assert_eq!((loops.lanes[0].queued(), loops.lanes[1].queued()), (2, 2));
    assert!(loops.room().now_or_never().is_none(), "every queue is full");
    drop(second);
    tokio::time::timeout(Duration::from_secs(5), loops.room())
        .await
        .expect("room once loop 2 took its sockets");
    // The next socket goes where the room is, whatever the turn says.
    clients.push(serve_one(&loops, &tasks, &listener).await);
    assert_eq!(loops.lanes[0].queued(), 2);
    // Turns alternate from loop 1: the second, fourth and fifth on loop 2.
    for i in [1, 3, 4] {
        assert_eq!(served_on(&mut clients[i]).await, 2);
    }
    drop(first);
    for i in [0, 2] {
        assert_eq!(served_on(&mut clients[i]).await, 1);
    }
}

/// The last loop dies while its queue is full and the accept loop waits for
/// room: the death itself must wake it (nothing was taken from the full
/// queue), its queued sockets are closed (no loop is left to take them),
/// and the next socket is served on the caller's runtime.
#[tokio::test]
async fn the_last_loops_death_wakes_the_accept_loop_waiting_for_room() {
    use futures_util::FutureExt;
    let _turn = one_at_a_time().await;
    let (loops, _lifetime) = start_never_stalled(1, 2);
    let loops = Arc::new(loops);
    let tasks = TaskTracker::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = hold(&loops, 0);
    let mut queued = Vec::new();
    for _ in 0..2 {
        queued.push(serve_one(&loops, &tasks, &listener).await);
    }
    assert!(loops.room().now_or_never().is_none(), "its queue is full");
    let waiting = tokio::spawn({
        let loops = loops.clone();
        async move { loops.room().await }
    });
    held.die();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("room once the last loop died")
        .unwrap();
    for client in &mut queued {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut byte))
            .await
            .expect("closed within 5s");
        assert!(matches!(read, Ok(0) | Err(_)), "closed unserved: {read:?}");
    }
    let mut client = serve_one(&loops, &tasks, &listener).await;
    assert_eq!(served_on(&mut client).await, 0, "on the caller's runtime");
}

/// A dead loop's empty queue is no room: with loop 1 dead (its sockets
/// moved to loop 2) and loop 2's queue full, `room` waits, until loop 2
/// takes its sockets on.
#[tokio::test]
async fn a_dead_loops_queue_is_no_room() {
    use futures_util::FutureExt;
    let _turn = one_at_a_time().await;
    let (loops, _lifetime) = start_never_stalled(2, 2);
    let tasks = TaskTracker::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (first, second) = (hold(&loops, 0), hold(&loops, 1));
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(serve_one(&loops, &tasks, &listener).await);
    }
    first.die();
    until("loop 1's sockets moved to loop 2", || {
        loops.lanes[0].died() && loops.lanes[0].queued() == 0 && loops.lanes[1].queued() == 4
    })
    .await;
    assert!(
        loops.room().now_or_never().is_none(),
        "loop 2's queue is full"
    );
    drop(second);
    tokio::time::timeout(Duration::from_secs(5), loops.room())
        .await
        .expect("room once loop 2 took its sockets");
    for client in &mut clients {
        assert_eq!(served_on(client).await, 2);
    }
}

/// A loop that stops running its tasks (held by a long job) gets no new
/// socket once its heartbeat is over a second old, and gets its turn again
/// once it runs.
#[tokio::test]
async fn a_stalled_loop_gets_no_new_connections_until_it_runs_again() {
    let _turn = one_at_a_time().await;
    let (loops, _lifetime) = Loops::start_with(2, 64).unwrap();
    let tasks = TaskTracker::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let health = loops.health();
    until("both loops running", || health.states().running == 2).await;
    let held = hold(&loops, 0);
    until("loop 1 stalled", || health.states().stalled == 1).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(serve_one(&loops, &tasks, &listener).await);
    }
    assert_eq!(
        loops.lanes[0].queued(),
        0,
        "nothing queued on the stalled loop"
    );
    for client in &mut clients {
        assert_eq!(served_on(client).await, 2);
    }
    drop(held);
    until("loop 1 runs again", || health.states().running == 2).await;
    let mut on = Vec::new();
    for _ in 0..2 {
        let mut client = serve_one(&loops, &tasks, &listener).await;
        on.push(served_on(&mut client).await);
    }
    on.sort_unstable();
    assert_eq!(on, [1, 2], "turns alternate again");
}
