//! Answer buffering on hyper's path (`buffering.response`, nginx
//! `proxy_buffering`): a task takes the answer off the upstream as fast as
//! the upstream sends it, into a spool (`spool.rs`), while the client is
//! fed from the spool at its own pace. The upstream's connection goes back
//! to its pool, and its request stops counting in flight on its server,
//! when the answer is complete, not when the client has read it.
//!
//! The rules it keeps: at most `buffering.max_body` waits for the client;
//! past it the task reads only as the client takes, as nginx passes an
//! answer on once `proxy_max_temp_file_size` is reached. The spool is
//! emptied each time the client has caught up, so its file never holds
//! more than that. An upstream that goes quiet for `backend.timeout` ends
//! the answer with an error (the client's connection is cut, never a short
//! body passed for whole); a client that goes away stops the task, which
//! drops the upstream's body (its connection closes) and the spool.
//!
//! An answer that has already arrived whole when its head is passed on
//! (most small ones) needs neither: its frames are held as they came (at
//! most [`READY_AT_ONCE`]) and its connection is given back at once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, warn};

use super::spool::{Budget, CHUNK, Spool};
use crate::config::Buffering;
use crate::reply::{Body, BoxError};

/// Between the task that reads the upstream and the body the client reads.
struct Pipe {
    state: Mutex<State>,
    /// Rung when the client took bytes: room for more.
    room: Notify,
    /// Cancelled when the client's body is dropped.
    gone: CancellationToken,
}

struct State {
    spool: Spool,
    /// Where the client's next byte is in `spool`.
    read: u64,
    /// How the upstream's answer ended, once it has.
    end: Option<Result<Option<HeaderMap>, String>>,
    reader: Option<Waker>,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
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
    if let Some(end) = end.as_ref().filter(|_| size <= READY_AT_ONCE) {
        // Already whole and small (most answers): the connection is given
        // back now, and nothing needs a task or a spool.
        drop(body);
        let end = end.as_ref().map(|e| -> BoxError { e.to_string().into() });
        return Ready {
            frames: taken,
            end,
            framed,
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
        }),
        room: Notify::new(),
        gone: CancellationToken::new(),
    });
    if whole {
        drop(body);
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
/// as it came, without a spool (and without counting in its bounds: it is
/// what hyper had read already).
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

/// Read `body` into the pipe until it ends, fails, stalls past `idle` or
/// the client goes; keep at most `cap` bytes waiting for the client.
async fn take<B>(mut body: B, pipe: Arc<Pipe>, cap: u64, idle: Duration)
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        // Room for more: the client has not fallen `cap` behind.
        loop {
            {
                let state = pipe.lock();
                if state.spool.len() - state.read < cap {
                    break;
                }
            }
            tokio::select! {
                _ = pipe.room.notified() => {}
                _ = pipe.gone.cancelled() => return,
            }
        }
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle, body.frame()) => frame,
            _ = pipe.gone.cancelled() => {
                debug!("client left during a buffered answer");
                return;
            }
        };
        let mut state = pipe.lock();
        let ended = match frame {
            Err(_) => {
                warn!(?idle, "backend response stalled; closing it");
                Some(Err("backend response idle past backend.timeout".to_owned()))
            }
            Ok(None) => Some(Ok(None)),
            Ok(Some(Err(error))) => Some(Err(error.into().to_string())),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => match state.spool.push(data) {
                    Ok(()) => None,
                    Err(error) => {
                        warn!(%error, "answer could not be buffered");
                        Some(Err(format!("answer could not be buffered: {error}")))
                    }
                },
                Err(frame) => Some(Ok(frame.into_trailers().ok())),
            },
        };
        let done = ended.is_some();
        if done {
            state.end = ended;
        }
        if let Some(waker) = state.reader.take() {
            waker.wake();
        }
        if done {
            // `body` drops here: the connection goes back to its pool (a
            // whole answer) or closes.
            return;
        }
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
        let held = state.spool.len();
        if state.read < held {
            let data = match state.spool.read_at(state.read, CHUNK) {
                Ok(data) if !data.is_empty() => data,
                Ok(_) => return Poll::Ready(Some(Err("buffered answer ended early".into()))),
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            };
            state.read += data.len() as u64;
            if state.read == held && state.end.is_none() {
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
