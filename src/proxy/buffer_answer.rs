//! Answer buffering on hyper's path (`buffering.response`, nginx
//! `proxy_buffering`): a task takes the answer off the upstream as fast as
//! the upstream sends it, into a spool (`spool.rs`), while the client is
//! fed from the spool at its own pace. The upstream's connection goes back
//! to its pool, and its request stops counting in flight on its server,
//! when the answer is complete, not when the client has read it.
//!
//! The rules it keeps: at most `buffering.max_body` is held for the
//! client, counted in all (read or not), as nginx passes an answer on
//! once `proxy_max_temp_file_size` is reached; at that bound, or when the
//! gateway's disk bound (`limits.buffers.disk`) is spent, the task reads
//! only as the client takes, and the spool is emptied when the client has
//! caught up, so its file never holds more than `max_body` and a read. An
//! upstream that goes quiet for `backend.timeout` ends the answer with an
//! error (the client's connection is cut, never a short body passed for
//! whole); so does a client that takes nothing for `buffering.body_timeout`
//! while bytes wait for it: its spool is let go at once, so an HTTP/2
//! stream whose window is never opened (which blocks no socket, so the
//! socket's send timeout never sees it) holds neither memory nor a file. A client that goes away stops the task, which drops
//! the upstream's body (its connection closes) and the spool.
//!
//! An answer that has already arrived whole when its head is passed on
//! (most small ones) needs neither: its frames are copied out of hyper's
//! read buffer (at most [`READY_AT_ONCE`], counted against
//! `limits.buffers.memory`) and its connection is given back at once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, warn};

use super::spool::{Budget, CHUNK, Held, Planned, Spool};
use crate::config::Buffering;
use crate::reply::{Body, BoxError};

/// Between the task that reads the upstream and the body the client reads.
struct Pipe {
    state: Mutex<State>,
    /// Rung when the client took bytes: room for more.
    room: Notify,
    /// Cancelled when the client's body is dropped.
    gone: CancellationToken,
    /// The longest the client may take nothing while bytes wait for it
    /// (`buffering.body_timeout`).
    client_idle: Duration,
}

struct State {
    spool: Spool,
    /// Where the client's next byte is in `spool`.
    read: u64,
    /// How the upstream's answer ended, once it has.
    end: Option<Result<Option<HeaderMap>, String>>,
    reader: Option<Waker>,
    /// When the client last took bytes (or the answer began).
    taken_at: Instant,
}

impl State {
    /// Bytes wait for the client.
    fn waiting(&self) -> bool {
        self.read < self.spool.len()
    }

    /// The upstream may be read: less than `cap` held in all, and room
    /// under the disk bound (or nothing waits: then one read goes on at
    /// the client's pace).
    fn may_take(&self, cap: u64) -> bool {
        self.spool.len() < cap && (!self.waiting() || self.spool.fits(1))
    }
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// End the answer when the client has taken nothing for `client_idle` while
    /// bytes wait: the spool is let go and the client's next read fails.
    /// `true` when it was ended.
    fn end_if_stalled(&self) -> bool {
        let idle = self.client_idle;
        let mut state = self.lock();
        if !state.waiting() || state.taken_at.elapsed() < idle {
            return false;
        }
        warn!(?idle, "client took nothing of a buffered answer; ending it");
        state.spool.discard();
        state.read = 0;
        state.end = Some(Err("client idle past buffering.body_timeout".to_owned()));
        if let Some(waker) = state.reader.take() {
            waker.wake();
        }
        true
    }

    /// When the client will have been idle too long, while bytes wait for
    /// it: returns once the answer was ended for that.
    async fn client_stalled(&self) {
        loop {
            let since = {
                let state = self.lock();
                state.waiting().then_some(state.taken_at)
            };
            // Nothing waits: only the caller's push can change that, and
            // it is not running meanwhile.
            let Some(since) = since else {
                return std::future::pending().await;
            };
            tokio::time::sleep_until(since + self.client_idle).await;
            if self.end_if_stalled() {
                return;
            }
        }
    }
}

/// `body` taken off the upstream by a task of its own, to be read by the
/// client at its pace; `idle` bounds the upstream's silences.
pub(super) fn buffered<B>(
    mut body: B,
    policy: &Buffering,
    budget: Budget,
    idle: Duration,
    tasks: &TaskTracker,
) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let hint = body.size_hint();
    let (taken, end) = take_ready(&mut body);
    let size: usize = taken
        .iter()
        .filter_map(Frame::data_ref)
        .map(Bytes::len)
        .sum();
    let framed = hint.exact().is_some();
    let held = end
        .as_ref()
        .filter(|_| size <= READY_AT_ONCE)
        .and_then(|_| budget.hold(size));
    if let (Some(end), Some(held)) = (end.as_ref(), held) {
        // Already whole and small (most answers): the connection is given
        // back now, and nothing needs a task or a spool. The bytes are
        // copied, counted, so as not to pin hyper's larger read buffer.
        drop(body);
        let end = end.as_ref().map(|e| -> BoxError { e.to_string().into() });
        let frames = taken
            .into_iter()
            .map(|frame| frame.map_data(|d| Bytes::copy_from_slice(&d)))
            .collect();
        return Ready {
            frames,
            end,
            framed,
            _held: Some(held),
        }
        .boxed();
    }
    // Into the spool, counted: what has come so far, and the end when it
    // is in already (a large answer that arrived whole).
    let mut spool = Spool::new(budget, policy.memory);
    let mut trailers = None;
    for frame in taken {
        match frame.into_data() {
            Ok(data) => {
                if let Err(error) = spool.push(data) {
                    warn!(%error, "answer could not be buffered");
                    let end = Some(format!("answer could not be buffered: {error}").into());
                    return Ready {
                        frames: VecDeque::new(),
                        end,
                        framed: false,
                        _held: None,
                    }
                    .boxed();
                }
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    let end = end.map(|end| match end {
        None => Ok(trailers),
        Some(error) => Err(error.to_string()),
    });
    let whole = end.is_some();
    let pipe = Arc::new(Pipe {
        state: Mutex::new(State {
            spool,
            read: 0,
            end,
            reader: None,
            taken_at: Instant::now(),
        }),
        room: Notify::new(),
        gone: CancellationToken::new(),
        client_idle: policy.body_timeout,
    });
    if whole {
        drop(body);
        tasks.spawn(watch(pipe.clone()).in_current_span());
    } else {
        let cap = policy.max_body as u64;
        tasks.spawn(take(body, pipe.clone(), cap, idle).in_current_span());
    }
    Buffered {
        pipe,
        exact: hint.exact(),
        sent: 0,
    }
    .boxed()
}

/// At most this much of an answer that has already arrived whole is held
/// as its frames came, without a spool (copied, and counted against the
/// shared memory bound).
const READY_AT_ONCE: usize = 16 * 1024;

/// The frames of `body` that have already arrived, without waiting, up to
/// about [`READY_AT_ONCE`] bytes; with how the body ended (`None`: it has
/// not yet; `Some(None)`: whole; `Some(Some(error))`: failed).
#[allow(clippy::type_complexity)]
fn take_ready<B>(body: &mut B) -> (VecDeque<Frame<Bytes>>, Option<Option<BoxError>>)
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = VecDeque::new();
    let mut size = 0;
    loop {
        // The end first: trailers, the last frame, are never left out.
        if body.is_end_stream() {
            return (frames, Some(None));
        }
        if size > READY_AT_ONCE {
            return (frames, None);
        }
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(None) => return (frames, Some(None)),
            Poll::Ready(Some(Err(error))) => return (frames, Some(Some(error.into()))),
            Poll::Ready(Some(Ok(frame))) => {
                size += frame.data_ref().map_or(0, Bytes::len);
                let last = frame.is_trailers();
                frames.push_back(frame);
                if last {
                    return (frames, Some(None));
                }
            }
            Poll::Pending => return (frames, None),
        }
    }
}

/// An answer that had arrived whole: its frames, then its end.
struct Ready {
    frames: VecDeque<Frame<Bytes>>,
    /// `Some(error)`: how it failed, told after its frames.
    end: Option<BoxError>,
    /// The upstream stated its length: so does the client's answer (a
    /// chunked one stays chunked, as the relay passes it).
    framed: bool,
    /// The frames' memory, counted until they are dropped.
    _held: Option<Held>,
}

impl HttpBody for Ready {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Poll::Ready(self.end.take().map(Err))
    }

    /// Only for a stated length: an empty chunked answer told ended at
    /// once would go out with a length of 0 instead, unlike the relay's.
    fn is_end_stream(&self) -> bool {
        self.framed && self.frames.is_empty() && self.end.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let n: u64 = self
            .frames
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        if self.framed && self.end.is_none() {
            return SizeHint::with_exact(n);
        }
        let mut hint = SizeHint::new();
        hint.set_lower(n);
        hint
    }
}

/// Read `body` into the pipe until it ends, fails or stalls past `idle`,
/// or the client goes or stalls (`client_idle`); hold at most `cap` bytes
/// in all.
async fn take<B>(mut body: B, pipe: Arc<Pipe>, cap: u64, idle: Duration)
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        // Room for more: see `State::may_take`.
        loop {
            let since = {
                let state = pipe.lock();
                if state.may_take(cap) {
                    break;
                }
                state.taken_at
            };
            tokio::select! {
                _ = pipe.room.notified() => {}
                _ = pipe.gone.cancelled() => return,
                () = tokio::time::sleep_until(since + pipe.client_idle) => {
                    if pipe.end_if_stalled() {
                        return;
                    }
                }
            }
        }
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle, body.frame()) => frame,
            _ = pipe.gone.cancelled() => {
                debug!("client left during a buffered answer");
                return;
            }
            () = pipe.client_stalled() => return,
        };
        let ended = match frame {
            Err(_) => {
                warn!(?idle, "backend response stalled; closing it");
                Some(Err("backend response idle past backend.timeout".to_owned()))
            }
            Ok(None) => Some(Ok(None)),
            Ok(Some(Err(error))) => Some(Err(error.into().to_string())),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => match push(&pipe, data) {
                    Ok(()) => None,
                    Err(error) => {
                        warn!(%error, "answer could not be buffered");
                        Some(Err(format!("answer could not be buffered: {error}")))
                    }
                },
                Err(frame) => Some(Ok(frame.into_trailers().ok())),
            },
        };
        let mut state = pipe.lock();
        let done = ended.is_some();
        if done {
            state.end = ended;
        }
        if let Some(waker) = state.reader.take() {
            waker.wake();
        }
        if done {
            break;
        }
    }
    // `body` drops here: the connection goes back to its pool (a whole
    // answer) or closes.
    drop(body);
    watch(pipe).await;
}

/// Add `data` to the pipe's spool, writing what goes to its file outside
/// the lock (the client reads on meanwhile).
fn push(pipe: &Pipe, data: Bytes) -> std::io::Result<()> {
    let write = pipe.lock().spool.push_memory(data)?;
    let Some(write) = write else {
        return Ok(());
    };
    let done = write.run();
    pipe.lock().spool.written(write, done)
}

/// Once the upstream's answer is in: end it if the client takes nothing
/// for `client_idle` while bytes wait, until it has taken everything or
/// gone.
async fn watch(pipe: Arc<Pipe>) {
    tokio::select! {
        () = pipe.client_stalled() => {}
        _ = pipe.gone.cancelled() => {}
        () = taken_all(&pipe) => {}
    }
}

/// Returns once the client has taken every byte held.
async fn taken_all(pipe: &Pipe) {
    loop {
        let waiting = pipe.lock().waiting();
        if !waiting {
            return;
        }
        pipe.room.notified().await;
    }
}

/// The client's side: what the upstream sent, from the spool.
struct Buffered {
    pipe: Arc<Pipe>,
    /// The answer's length, when its framing stated one.
    exact: Option<u64>,
    sent: u64,
}

impl HttpBody for Buffered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let pipe = self.pipe.clone();
        let mut state = pipe.lock();
        if state.read < state.spool.len() {
            let data = match state.spool.read_plan(state.read, CHUNK) {
                Planned::Ready(data) => Ok(data),
                Planned::File(read) => {
                    // Read outside the lock; it counts only if the spool
                    // was not let go meanwhile (the answer was ended).
                    drop(state);
                    let data = read.run();
                    state = pipe.lock();
                    if !state.spool.still(&read) {
                        return Poll::Ready(Some(Err("buffered answer ended".into())));
                    }
                    data
                }
            };
            let data = match data {
                Ok(data) if !data.is_empty() => data,
                Ok(_) => return Poll::Ready(Some(Err("buffered answer ended early".into()))),
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            };
            let held = state.spool.len();
            state.read += data.len() as u64;
            state.taken_at = Instant::now();
            // Not while a write is out: it would land in an emptied file.
            if state.read == held && state.end.is_none() && !state.spool.writing() {
                // Caught up: what was held is let go, the file emptied.
                if let Err(error) = state.spool.clear() {
                    return Poll::Ready(Some(Err(error.into())));
                }
                state.read = 0;
            }
            drop(state);
            self.sent += data.len() as u64;
            pipe.room.notify_one();
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match state.end.take() {
            None => {
                state.reader = Some(cx.waker().clone());
                Poll::Pending
            }
            Some(Ok(trailers)) => {
                // Ended: `None` from here on.
                state.end = Some(Ok(None));
                Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
            }
            Some(Err(error)) => {
                state.end = Some(Ok(None));
                Poll::Ready(Some(Err(error.into())))
            }
        }
    }

    /// hyper stops polling a body that says it has ended (and a tap's tee
    /// fires then): once its stated length is sent, or the upstream's end
    /// is in and everything before it.
    fn is_end_stream(&self) -> bool {
        if self.exact.is_some_and(|n| self.sent >= n) {
            return true;
        }
        let state = self.pipe.lock();
        state.read >= state.spool.len() && matches!(state.end, Some(Ok(None)))
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n.saturating_sub(self.sent)),
            None => SizeHint::default(),
        }
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.pipe.gone.cancel();
    }
}
