//! The sessions of pusher-js's HTTP transports: what one Pusher connection
//! carried by `xhr_streaming` or `xhr_polling` requests shares between its
//! socket task and the requests that come and go.
//!
//! The socket task (the same one a WebSocket has) writes SockJS lines into
//! the session's buffer and takes the frames `xhr_send` queued; a receive
//! request takes the buffer's lines as they come. Both directions are
//! bounded: the buffer holds at most what the socket task was allowed to
//! write past the point the receiver took (a task over it waits, and its
//! hub subscription's own bound decides what lag means, as for any slow
//! client), and the frame queue refuses when full. A session with no
//! receive request for `idle` has lost its client: the socket task hears it
//! and ends, leaving its channels. One receive request at a time: a new
//! one (pusher-js reopens its stream past 256 KB) takes over and the old one
//! ends. The ids are the client's own (`{server}/{session}` of the URL), so
//! a session answers only requests from the address that opened it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// Frames `xhr_send` may have queued ahead of the socket task.
pub const INBOUND_QUEUE: usize = 64;

/// Every live HTTP session of this instance, by `{key}/{server}/{session}`.
#[derive(Default)]
pub struct HttpSessions {
    map: Arc<Mutex<HashMap<Box<str>, Arc<HttpSession>>>>,
}

/// What a receive request found for its id.
pub enum Found {
    /// A live session: the request receives from it.
    Existing(Arc<HttpSession>),
    /// None was there; this one was made and registered. The socket task
    /// takes the frame queue and the registration (dropped when it ends).
    Created(Arc<HttpSession>, mpsc::Receiver<String>, Registered),
}

/// A session's place in [`HttpSessions`], given up on drop.
pub struct Registered {
    map: Arc<Mutex<HashMap<Box<str>, Arc<HttpSession>>>>,
    id: Box<str>,
    session: Arc<HttpSession>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        if map
            .get(&self.id)
            .is_some_and(|s| Arc::ptr_eq(s, &self.session))
        {
            map.remove(&self.id);
        }
    }
}

impl HttpSessions {
    /// The session `id` when `owner` opened it (another address's is not
    /// there for it).
    pub fn get(&self, id: &str, owner: IpAddr) -> Option<Arc<HttpSession>> {
        self.map
            .lock()
            .get(id)
            .filter(|s| s.owner == owner)
            .cloned()
    }

    /// The session `id` of `owner`, made when there is none; None when
    /// another address holds that id.
    pub fn get_or_create(&self, id: &str, owner: IpAddr) -> Option<Found> {
        let mut map = self.map.lock();
        if let Some(s) = map.get(id) {
            return (s.owner == owner).then(|| Found::Existing(s.clone()));
        }
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let session = Arc::new(HttpSession {
            owner,
            inbound: tx,
            inner: Mutex::new(Inner {
                out: BytesMut::new(),
                closed: false,
                receiver: 0,
                receivers: 0,
                idle_since: Instant::now(),
            }),
            to_receiver: Notify::new(),
            to_socket: Notify::new(),
        });
        map.insert(id.into(), session.clone());
        let registered = Registered {
            map: self.map.clone(),
            id: id.into(),
            session: session.clone(),
        };
        Some(Found::Created(session, rx, registered))
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct HttpSession {
    /// The client address that opened it.
    owner: IpAddr,
    inbound: mpsc::Sender<String>,
    inner: Mutex<Inner>,
    /// Rung when lines are owed, the session closed, or a receiver took over.
    to_receiver: Notify,
    /// Rung when lines were taken or a receiver came or went.
    to_socket: Notify,
}

struct Inner {
    /// SockJS lines not yet taken by a receiver.
    out: BytesMut,
    /// The close line is in `out`; nothing follows it.
    closed: bool,
    /// The receive request that holds the session (0: none).
    receiver: u64,
    receivers: u64,
    /// When the last receiver left (or the session was made).
    idle_since: Instant,
}

/// Why `xhr_send` frames were not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the connection is behind on what it was sent; slow down")]
    Full,
    #[error("the connection is closed")]
    Closed,
}

/// The session ended: no receiver for `idle`, or it was closed.
#[derive(Debug)]
pub struct Expired;

/// Why a write did not go into the session's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum NotWritten {
    /// No receiver for `idle`, or closed.
    Expired,
    /// A receiver holds the session but took nothing for `stuck` while the
    /// buffer was full (a stream the client does not drain).
    Stuck,
}

/// What a receive request is given next.
pub enum Chunk {
    Lines(Bytes),
    /// Nothing came for the heartbeat interval.
    Quiet,
    /// Closed (its close line already taken) or taken over by a newer
    /// receive request.
    End,
}

impl HttpSession {
    /// Queue `frames` of an `xhr_send` for the socket task, all or none.
    pub fn offer(&self, frames: Vec<String>) -> Result<(), Refused> {
        if self.inner.lock().closed || self.inbound.is_closed() {
            return Err(Refused::Closed);
        }
        if self.inbound.capacity() < frames.len() {
            return Err(Refused::Full);
        }
        for frame in frames {
            self.inbound.try_send(frame).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            })?;
        }
        Ok(())
    }

    /// Become the session's receiver; the one before it ends.
    pub fn attach(self: &Arc<Self>) -> Receiver {
        let id = {
            let mut inner = self.inner.lock();
            inner.receivers += 1;
            inner.receiver = inner.receivers;
            inner.receiver
        };
        self.to_receiver.notify_waiters();
        self.to_socket.notify_waiters();
        Receiver {
            session: self.clone(),
            id,
        }
    }

    /// Append `lines` once the buffer is under `cap` (past the point the
    /// receiver took); Err once the session has no receiver for `idle`, or
    /// the buffer stayed full for `stuck`.
    pub async fn write(
        &self,
        lines: &[u8],
        cap: usize,
        idle: Duration,
        stuck: Duration,
    ) -> Result<(), NotWritten> {
        let give_up = Instant::now() + stuck;
        loop {
            let notified = self.to_socket.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.inner.lock();
                if inner.closed {
                    return Err(NotWritten::Expired);
                }
                if inner.out.len() < cap {
                    inner.out.extend_from_slice(lines);
                    drop(inner);
                    self.to_receiver.notify_waiters();
                    return Ok(());
                }
            }
            tokio::select! {
                _ = notified => {}
                Expired = self.expired(idle) => return Err(NotWritten::Expired),
                _ = tokio::time::sleep_until(give_up) => return Err(NotWritten::Stuck),
            }
        }
    }

    /// Resolves once the session has had no receiver for `idle`.
    pub async fn expired(&self, idle: Duration) -> Expired {
        loop {
            let notified = self.to_socket.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deadline = {
                let inner = self.inner.lock();
                (inner.receiver == 0).then_some(inner.idle_since + idle)
            };
            match deadline {
                Some(at) if at <= Instant::now() => return Expired,
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Resolves once the session is closed: closed from outside its task
    /// (a request told 4100 over capacity), the task ends as for a
    /// vanished peer, and its presence and counts go with it.
    pub async fn closed(&self) {
        loop {
            let notified = self.to_socket.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.lock().closed {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once a receiver took every line written (the close line
    /// among them), or the session had no receiver for `idle`.
    pub async fn delivered(&self, idle: Duration) {
        loop {
            let notified = self.to_socket.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.lock().out.is_empty() {
                return;
            }
            tokio::select! {
                _ = notified => {}
                Expired = self.expired(idle) => return,
            }
        }
    }

    /// Put the close line last; nothing is written after it.
    pub fn close(&self, code: u16, reason: &str) {
        {
            let mut inner = self.inner.lock();
            if inner.closed {
                return;
            }
            inner
                .out
                .extend_from_slice(&super::sockjs::close(code, reason));
            inner.closed = true;
        }
        self.to_receiver.notify_waiters();
        self.to_socket.notify_waiters();
    }
}

/// One receive request's hold on its session; let go on drop.
pub struct Receiver {
    session: Arc<HttpSession>,
    id: u64,
}

impl Receiver {
    /// The lines owed, as soon as there are some; [`Chunk::Quiet`] after
    /// `heartbeat` without any.
    pub async fn next(&self, heartbeat: Duration) -> Chunk {
        let s = &self.session;
        let notified = s.to_receiver.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(chunk) = self.take() {
            return chunk;
        }
        tokio::select! {
            _ = notified => self.take().unwrap_or(Chunk::Quiet),
            _ = tokio::time::sleep(heartbeat) => self.take().unwrap_or(Chunk::Quiet),
        }
    }

    fn take(&self) -> Option<Chunk> {
        let mut inner = self.session.inner.lock();
        if inner.receiver != self.id {
            return Some(Chunk::End);
        }
        if !inner.out.is_empty() {
            let lines = inner.out.split().freeze();
            drop(inner);
            self.session.to_socket.notify_waiters();
            return Some(Chunk::Lines(lines));
        }
        inner.closed.then_some(Chunk::End)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut inner = self.session.inner.lock();
        if inner.receiver == self.id {
            inner.receiver = 0;
            inner.idle_since = Instant::now();
            drop(inner);
            self.session.to_socket.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound on a stuck writer no test reaches.
    const LONG: Duration = Duration::from_secs(3600);

    fn addr(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn created(
        sessions: &HttpSessions,
        id: &str,
    ) -> (Arc<HttpSession>, mpsc::Receiver<String>, Registered) {
        match sessions.get_or_create(id, addr(1)) {
            Some(Found::Created(s, rx, r)) => (s, rx, r),
            _ => panic!("a new session"),
        }
    }

    #[test]
    fn a_session_answers_its_owner_only_and_leaves_with_its_registration() {
        let sessions = HttpSessions::default();
        let (_s, _rx, registered) = created(&sessions, "k/1/a");
        assert!(sessions.get("k/1/a", addr(1)).is_some());
        assert!(sessions.get("k/1/a", addr(2)).is_none(), "another address");
        assert!(sessions.get_or_create("k/1/a", addr(2)).is_none());
        assert!(matches!(
            sessions.get_or_create("k/1/a", addr(1)),
            Some(Found::Existing(_))
        ));
        drop(registered);
        assert!(sessions.is_empty());
    }

    #[tokio::test]
    async fn frames_are_queued_all_or_none_up_to_the_bound() {
        let sessions = HttpSessions::default();
        let (s, mut rx, _r) = created(&sessions, "k/1/a");
        s.offer(vec!["a".into(), "b".into()]).unwrap();
        let many = vec![String::new(); INBOUND_QUEUE];
        assert_eq!(s.offer(many), Err(Refused::Full));
        assert_eq!(rx.recv().await.as_deref(), Some("a"));
        assert_eq!(rx.recv().await.as_deref(), Some("b"));
        s.close(4200, "bye");
        assert_eq!(s.offer(vec![]), Err(Refused::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_takes_lines_a_newer_one_takes_over_and_idle_expires() {
        let sessions = HttpSessions::default();
        let (s, _rx, _r) = created(&sessions, "k/1/a");
        let idle = Duration::from_secs(5);
        let first = s.attach();
        s.write(b"a[\"x\"]\n", 1024, idle, LONG).await.unwrap();
        let Chunk::Lines(l) = first.next(Duration::from_secs(1)).await else {
            panic!("lines");
        };
        assert_eq!(&l[..], b"a[\"x\"]\n");
        assert!(matches!(
            first.next(Duration::from_secs(1)).await,
            Chunk::Quiet
        ));
        let second = s.attach();
        assert!(matches!(
            first.next(Duration::from_secs(1)).await,
            Chunk::End
        ));
        drop(first);
        // The newer receiver holds it: not idle however long.
        let waited = tokio::time::timeout(Duration::from_secs(60), s.expired(idle)).await;
        assert!(waited.is_err(), "held by a receiver");
        drop(second);
        let started = Instant::now();
        s.expired(idle).await;
        assert!(started.elapsed() >= idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_holds_the_writer_until_taken_or_expired() {
        let sessions = HttpSessions::default();
        let (s, _rx, _r) = created(&sessions, "k/1/a");
        let idle = Duration::from_secs(5);
        let receiver = s.attach();
        s.write(&[b'x'; 10], 10, idle, LONG).await.unwrap();
        let blocked =
            tokio::time::timeout(Duration::from_secs(30), s.write(b"y", 10, idle, LONG)).await;
        assert!(blocked.is_err(), "over the cap, a receiver there: it waits");
        let _ = receiver.next(Duration::from_secs(1)).await;
        s.write(b"y", 10, idle, LONG).await.unwrap();
        s.write(&[b'z'; 10], 10, idle, LONG).await.unwrap();
        drop(receiver);
        assert!(
            s.write(b"w", 10, idle, LONG).await.is_err(),
            "no receiver for idle"
        );
        s.close(4009, "x");
        let late = s.attach();
        let Chunk::Lines(l) = late.next(Duration::from_secs(1)).await else {
            panic!("what was owed and the close line");
        };
        assert!(l.ends_with(b"c[4009,\"x\"]\n"));
        assert!(matches!(
            late.next(Duration::from_secs(1)).await,
            Chunk::End
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_line_is_delivered_when_taken_or_nobody_came_for_idle() {
        let sessions = HttpSessions::default();
        let (s, _rx, _r) = created(&sessions, "k/1/a");
        let idle = Duration::from_secs(5);
        s.close(4001, "no app");
        let waiting = tokio::time::timeout(Duration::from_secs(1), s.delivered(idle)).await;
        assert!(waiting.is_err(), "the close line is still owed");
        let poll = s.attach();
        let Chunk::Lines(l) = poll.next(Duration::from_secs(1)).await else {
            panic!("the close line");
        };
        assert!(l.starts_with(b"c[4001"));
        tokio::time::timeout(Duration::from_millis(1), s.delivered(idle))
            .await
            .expect("taken: delivered at once");
        let (s, _rx, _r) = created(&sessions, "k/1/b");
        s.close(4009, "x");
        let started = Instant::now();
        s.delivered(idle).await;
        assert!(
            started.elapsed() >= idle,
            "nobody came: given up after idle"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_that_takes_nothing_leaves_the_writer_stuck_after_the_bound() {
        let sessions = HttpSessions::default();
        let (s, _rx, _r) = created(&sessions, "k/1/a");
        let (idle, stuck) = (Duration::from_secs(5), Duration::from_secs(30));
        let _receiver = s.attach();
        s.write(&[b'x'; 10], 10, idle, stuck).await.unwrap();
        let started = Instant::now();
        let wrote = tokio::time::timeout(stuck * 2, s.write(b"y", 10, idle, stuck)).await;
        assert_eq!(wrote.ok(), Some(Err(NotWritten::Stuck)));
        assert!(started.elapsed() >= stuck);
    }
}
