//! The relay's answer under `buffering.response` (nginx `proxy_buffering`):
//! the backend's answer is read as fast as the backend sends it, into a
//! spool (`proxy/spool.rs`), while the client is written to at its own
//! pace. Once the answer is complete the backend connection goes back to
//! its pool and the request stops counting in flight on its server; the
//! client goes on reading from the spool.
//!
//! The same rules as `answer.rs` otherwise: what reaches the client is
//! byte for byte what the unbuffered relay would write (framing, trailers
//! or their absence), a backend that breaks off, turns malformed or stalls
//! past `backend.timeout` ends the client's connection without a clean
//! close, and at most `buffering.max_body` is held in all (read by the
//! client or not) before the backend is read only as fast as the client
//! takes, as it is once the gateway's disk bound (`limits.buffers.disk`)
//! is spent; the spool is emptied each time the client catches up, so its
//! file never holds more than `max_body` and a read. A client that takes
//! nothing while bytes wait for it is cut off by the send timeout on its
//! socket (`server/send_timeout.rs`), and its spool goes with it.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::Next;
use super::answer::{Answer, Body};
use crate::proxy::spool::{CHUNK, Spool};
use crate::upstream::backend_conn::BackendConn;
use crate::upstream::pool::BackendPool;
use crate::upstream::server::InFlight;

/// Room kept free in the read buffer for each read from the backend.
const READ_ROOM: usize = 16 * 1024;

/// What the buffered relay holds the answer in: the spool, how much may
/// wait in it for the client, and how long the backend may go quiet.
pub(super) struct Holding {
    pub(super) spool: Spool,
    pub(super) cap: u64,
    pub(super) idle: Duration,
}

/// The backend and what it owes until its answer is complete.
struct Backend {
    conn: BackendConn,
    _in_flight: InFlight,
}

/// Write the answer to the client while reading the rest of it from the
/// backend into `holding`; see the module's doc.
pub(super) async fn pass_on<I>(
    io: &mut I,
    conn: BackendConn,
    in_flight: InFlight,
    answer: Answer,
    mut rbuf: BytesMut,
    pool: &BackendPool,
    holding: Holding,
) -> Next
where
    I: AsyncWrite + Unpin,
{
    let Answer {
        first,
        mut done,
        mut body,
        reusable,
    } = answer;
    let Holding {
        mut spool,
        cap,
        idle,
    } = holding;
    let until_close = matches!(body, Body::UntilClose);
    // Bytes after a complete answer: the backend is out of step.
    let mut surplus = !rbuf.is_empty();
    let mut backend = Some(Backend {
        conn,
        _in_flight: in_flight,
    });
    let mut pending = Bytes::from(first);
    // Where the client's next byte is in `spool`.
    let mut read: u64 = 0;
    let mut unflushed = false;
    let mut deadline = Instant::now() + idle;
    loop {
        if done {
            if let Some(Backend { conn, .. }) = backend.take() {
                if reusable && !surplus && !until_close {
                    pool.give(conn);
                }
            }
        }
        if read_back(&mut spool, &mut read, &mut pending).is_err() {
            return Next::Abort;
        }
        if pending.is_empty() && !unflushed && done {
            break;
        }
        let room = spool.len() < cap && (read == spool.len() || spool.fits(1));
        let reading = backend.is_some() && room;
        if backend.is_some() && !room {
            // Waiting on the client, not the backend: its silence starts
            // counting when it is read again.
            deadline = Instant::now() + idle;
        }
        if rbuf.capacity() - rbuf.len() < READ_ROOM {
            rbuf.reserve(READ_ROOM);
        }
        tokio::select! {
            got = tokio::time::timeout_at(deadline, read_some(backend.as_mut(), &mut rbuf)), if reading => {
                match got {
                    Err(_) => {
                        warn!(?idle, "backend response stalled; closing it");
                        return Next::Abort;
                    }
                    Ok(Ok(0)) if until_close => {
                        done = true;
                        continue;
                    }
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        debug!("backend closed in the middle of an answer");
                        return Next::Abort;
                    }
                    Ok(Ok(_)) => deadline = Instant::now() + idle,
                }
                match hold(&mut body, &mut rbuf, &mut spool) {
                    Ok((end, more)) => (done, surplus) = (end, more),
                    Err(Lost) => return Next::Abort,
                }
            }
            sent = send_some(io, &pending), if !pending.is_empty() || unflushed => match sent {
                // Flushed.
                Ok(0) if pending.is_empty() => unflushed = false,
                Ok(n) if n > 0 => {
                    pending.advance(n);
                    unflushed = true;
                }
                _ => return Next::Abort,
            },
            else => {
                // Nothing to write and the backend not to be read: cannot
                // happen (a full spool has bytes to write), but never spin.
                return Next::Abort;
            }
        }
    }
    if until_close {
        return Next::Close;
    }
    Next::KeepAlive
}

/// The answer could not be held or given back whole: the client's
/// connection is aborted.
struct Lost;

/// Once the client has taken what was `pending`, the next part of what is
/// held, from where it stands (`read`); when the client has caught up, what
/// was held is let go and the file emptied.
fn read_back(spool: &mut Spool, read: &mut u64, pending: &mut Bytes) -> Result<(), Lost> {
    if !pending.is_empty() || *read >= spool.len() {
        return Ok(());
    }
    match spool.read_at(*read, CHUNK) {
        Ok(data) if !data.is_empty() => {
            *read += data.len() as u64;
            *pending = data;
        }
        Ok(_) | Err(_) => {
            warn!("buffered answer could not be read back");
            return Err(Lost);
        }
    }
    if *read == spool.len() {
        spool.clear().map_err(|_| Lost)?;
        *read = 0;
    }
    Ok(())
}

/// Hold what the backend just sent of the body (in `rbuf`, emptied here):
/// whether the body ended, and whether bytes followed its end (the
/// backend is then out of step).
fn hold(body: &mut Body, rbuf: &mut BytesMut, spool: &mut Spool) -> Result<(bool, bool), Lost> {
    let Ok(taken) = body.take(rbuf) else {
        warn!("backend sent a malformed chunked body");
        return Err(Lost);
    };
    let surplus = taken.used < rbuf.len();
    let kept = rbuf.split_to(taken.keep).freeze();
    rbuf.clear();
    let tail = if taken.end { body.tail() } else { b"" };
    for part in [kept, Bytes::from_static(tail)] {
        if let Err(error) = spool.push(part) {
            warn!(%error, "answer could not be buffered");
            return Err(Lost);
        }
    }
    Ok((taken.end, surplus))
}

/// Write some of `pending` to the client (how much went), or, with
/// nothing pending, flush what was written (0): TLS holds written bytes
/// until flushed.
async fn send_some<I: AsyncWrite + Unpin>(io: &mut I, pending: &[u8]) -> std::io::Result<usize> {
    if pending.is_empty() {
        return io.flush().await.map(|()| 0);
    }
    io.write(pending).await
}

/// Read from the backend while there is one.
async fn read_some(backend: Option<&mut Backend>, rbuf: &mut BytesMut) -> std::io::Result<usize> {
    match backend {
        Some(b) => b.conn.read_buf(rbuf).await,
        None => std::future::pending().await,
    }
}
