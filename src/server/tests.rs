//! The accept loop over real sockets, in front of serving loops held busy:
//! accepting pauses while every loop's queue is full (the kernel's backlog
//! holds the rest), resumes when they drain, and clients that send nothing
//! hold no place in the queues.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ListenerRole, accept_loop};
use crate::broker::MemoryBroker;
use crate::config::Config;
use crate::hub::Hub;
use crate::lifecycle::Lifecycle;
use crate::loops::Loops;
use crate::loops::tests::{hold, one_at_a_time};
use crate::state::{AppState, Settings};

/// A request the public listener answers itself, on the default
/// configuration: the browser client.
const REQUEST: &[u8] =
    b"GET /realtime/client.js HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// A gateway's state on the default configuration.
fn state() -> AppState {
    let lifecycle = Lifecycle::new();
    let hub = Hub::new();
    let settings = Settings::new(Config::default(), &lifecycle).expect("the default configuration");
    AppState::new(settings, hub.clone(), MemoryBroker::new(hub), lifecycle)
}

/// The public accept loop over `loops` and the admin one on this runtime,
/// as a gateway runs them; their addresses.
async fn listening(state: &AppState, loops: Loops) -> (SocketAddr, SocketAddr) {
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (public.local_addr().unwrap(), admin.local_addr().unwrap());
    let surfaces = [
        (public, ListenerRole::Public, Some(loops)),
        (admin, ListenerRole::Admin, None),
    ];
    for (listener, surface, loops) in surfaces {
        let accepting = accept_loop(state.clone(), listener, surface, loops);
        state.lifecycle.spawn_until_drain(accepting);
    }
    addrs
}

/// Send `request` on `client`; the whole answer, once the server closes.
async fn answer(client: &mut TcpStream, request: &[u8]) -> String {
    client.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
        .await
        .expect("answered within 5s")
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// `pushgate_tcp_connections_queued` as the admin listener's `/metrics`
/// says it.
async fn queued_gauge(admin: SocketAddr) -> Option<u64> {
    let mut client = TcpStream::connect(admin).await.unwrap();
    let text = answer(
        &mut client,
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let line = text
        .lines()
        .find(|line| line.starts_with("pushgate_tcp_connections_queued "))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Connections waiting in the kernel's accept queue of the IPv4 listener
/// on `addr`: a listening socket's `rx_queue` in `/proc/net/tcp`.
fn backlog(addr: SocketAddr) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{:04X}", addr.port());
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let listening = fields.get(3) == Some(&"0A");
        if !listening || !fields.get(1)?.ends_with(&local) {
            return None;
        }
        let (_, rx) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

/// Wait up to 5 s for `condition`.
async fn until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 5s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two loops held busy, two places per queue: four connections fill the
/// queues and the gauge shows them; the accept loop then stops accepting
/// and the other six wait in the kernel's backlog, not in the queues. Once
/// the loops run again every queue drains, accepting resumes, and all ten
/// are answered.
#[tokio::test]
async fn accepting_pauses_while_every_queue_is_full_and_resumes_when_they_drain() {
    let _turn = one_at_a_time().await;
    let state = state();
    let (loops, _lifetime) = Loops::start_with(2, 2).unwrap();
    let held = (hold(&loops, 0), hold(&loops, 1));
    let (public, admin) = listening(&state, loops).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(TcpStream::connect(public).await.unwrap());
    }
    until("4 queued, 6 left in the backlog", || async {
        queued_gauge(admin).await == Some(4) && backlog(public) == Some(6)
    })
    .await;
    assert_eq!(state.stats.queued.load(Ordering::Relaxed), 4);
    drop(held);
    until("the queues and the backlog drained", || async {
        queued_gauge(admin).await == Some(0) && backlog(public) == Some(0)
    })
    .await;
    for client in &mut clients {
        let answer = answer(client, REQUEST).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
    state.lifecycle.stop_now();
}

/// A queue place is given back when its loop takes the socket on, before
/// anything is read: ten clients that say nothing (more than the two
/// queues hold) leave accepting running, and the next client is answered.
#[tokio::test]
async fn clients_that_send_nothing_hold_no_place_in_the_queues() {
    let _turn = one_at_a_time().await;
    let state = state();
    let (loops, _lifetime) = Loops::start_with(2, 2).unwrap();
    let (public, _admin) = listening(&state, loops).await;
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(public).await.unwrap());
    }
    until("the ten silent clients taken on", || async {
        state.stats.connections.load(Ordering::Relaxed) == 10
    })
    .await;
    let mut client = TcpStream::connect(public).await.unwrap();
    let answer = answer(&mut client, REQUEST).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(state.stats.queued.load(Ordering::Relaxed), 0);
    state.lifecycle.stop_now();
}

/// A direct WebSocket handshake's answer runs only while its client is
/// there: a client that leaves drops it (as hyper dropped its handler), and
/// bytes a client sends ahead of the 101 reach the session first.
#[tokio::test]
async fn a_direct_handshake_is_dropped_when_its_client_leaves_and_keeps_early_bytes() {
    use super::while_present;
    struct Dropped(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let answer = || {
        let mut resp = http::Response::new(crate::reply::empty());
        *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        resp
    };

    // The client leaves while the answer is still being made.
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ours, theirs) = tokio::io::duplex(1024);
    let guard = Dropped(dropped.clone());
    let pending = Box::pin(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
        answer()
    });
    drop(theirs);
    let left = tokio::time::timeout(Duration::from_secs(5), while_present(pending, ours))
        .await
        .expect("noticed within 5 s");
    assert!(left.is_none(), "no answer for a client that left");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the answer's work was dropped"
    );

    // Bytes ahead of the answer: kept, in front of the connection.
    let (ours, mut theirs) = tokio::io::duplex(1024);
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let later = Box::pin(async move {
        let _ = wait.await;
        answer()
    });
    theirs.write_all(b"early").await.unwrap();
    let running = tokio::spawn(while_present(later, ours));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = go.send(());
    let (resp, mut conn) = running.await.unwrap().expect("answered");
    assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    theirs.write_all(b" then more").await.unwrap();
    let mut got = vec![0u8; 15];
    conn.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"early then more");
}
