//! The backend's answer on its way to the client: its head and the body's
//! start in one write, then the body as it arrives, with its own framing.
//!
//! The rule: the backend connection goes back to the pool only when its
//! answer ended exactly where its framing said, nothing followed it, and
//! that end was not the backend's guess (`h1/response.rs` marks answers to `HEAD`,
//! 204s, 304s, answers after a 1xx and those with both framings as not
//! reusable);
//! a body that stalls past `backend.timeout`, breaks off or turns malformed
//! ends the client's connection without a clean close, so a body delimited
//! by the close can never pass for complete.

use std::io;
use std::time::Duration;

use crate::upstream::backend_conn::BackendConn;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use super::Next;
use crate::h1::chunked::{ChunkedEnd, Malformed, Scanned};
use crate::upstream::pool::BackendPool;

/// An answer whose head (and the body's start) is ready for the client.
pub(super) struct Answer {
    /// The head and what has come of the body so far.
    pub(super) first: Vec<u8>,
    /// The body is complete in `first`.
    pub(super) done: bool,
    pub(super) body: Body,
    /// The backend connection may carry another request afterwards.
    pub(super) reusable: bool,
}

/// The part of a backend's answer still to come.
pub(super) enum Body {
    Length(u64),
    /// Chunked; `trailers`: the client takes them (`TE: trailers`).
    Chunked {
        scan: ChunkedEnd,
        trailers: bool,
    },
    UntilClose,
}

/// What [`Body::take`] found in the bytes read.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Taken {
    /// Bytes that belong to the body.
    pub(super) used: usize,
    /// The first `keep` of them go to the client.
    pub(super) keep: usize,
    /// The body ends within them.
    pub(super) end: bool,
}

/// What ends a chunked body whose trailers were left out.
pub(super) const NO_TRAILERS: &[u8] = b"\r\n";

impl Body {
    /// How many of `bytes` belong to the body, how many of those the client
    /// gets (a client that did not ask for trailers gets none: the body's
    /// last empty line, [`NO_TRAILERS`], is written once it `end`s), and
    /// whether it ends there.
    ///
    /// Trailers the client takes are passed with their names in lowercase
    /// (`ChunkedEnd::feed_lowering`), as hyper's engine writes them.
    pub(super) fn take(&mut self, bytes: &mut [u8]) -> Result<Taken, Malformed> {
        let len = bytes.len();
        let all = |end| Taken {
            used: len,
            keep: len,
            end,
        };
        match self {
            Body::Length(left) => {
                let n = (*left).min(bytes.len() as u64);
                *left -= n;
                let n = n as usize;
                Ok(Taken {
                    used: n,
                    keep: n,
                    end: *left == 0,
                })
            }
            Body::Chunked {
                scan,
                trailers: true,
            } => Ok(match scan.feed_lowering(bytes)? {
                Some(n) => Taken {
                    used: n,
                    keep: n,
                    end: true,
                },
                None => all(false),
            }),
            Body::Chunked { scan, .. } => {
                let start = if scan.in_trailers() {
                    0
                } else {
                    match scan.feed_to_trailers(bytes)? {
                        Scanned::More => return Ok(all(false)),
                        Scanned::Ends(n) => {
                            return Ok(Taken {
                                used: n,
                                keep: n,
                                end: true,
                            });
                        }
                        Scanned::Trailers(t) => t,
                    }
                };
                Ok(match scan.feed(&bytes[start..])? {
                    Some(n) => Taken {
                        used: start + n,
                        keep: start,
                        end: true,
                    },
                    None => Taken {
                        used: bytes.len(),
                        keep: start,
                        end: false,
                    },
                })
            }
            Body::UntilClose => Ok(all(false)),
        }
    }

    /// What the client gets after the body's last byte.
    pub(super) fn tail(&self) -> &'static [u8] {
        match self {
            Body::Chunked {
                trailers: false, ..
            } => NO_TRAILERS,
            _ => b"",
        }
    }
}

/// Write the answer head, then the body as it arrives, to the client. The
/// backend connection goes back to the pool if its answer ended cleanly.
pub(super) async fn pass_on<I>(
    io: &mut I,
    mut backend: BackendConn,
    answer: Answer,
    mut rbuf: BytesMut,
    idle: Duration,
    pool: &BackendPool,
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
    // Bytes after a complete answer: the backend is out of step.
    let mut surplus = !rbuf.is_empty();
    if write(io, &first).await.is_err() {
        return Next::Abort;
    }
    drop(first);
    while !done {
        rbuf.clear();
        match tokio::time::timeout(idle, backend.read_buf(&mut rbuf)).await {
            Err(_) => {
                warn!(?idle, "backend response stalled; closing it");
                return Next::Abort;
            }
            Ok(Ok(0)) if matches!(body, Body::UntilClose) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                debug!("backend closed in the middle of an answer");
                return Next::Abort;
            }
            Ok(Ok(_)) => {}
        }
        let Ok(taken) = body.take(&mut rbuf) else {
            warn!("backend sent a malformed chunked body");
            return Next::Abort;
        };
        if taken.end && !body.tail().is_empty() {
            let mut last = rbuf[..taken.keep].to_vec();
            last.extend_from_slice(body.tail());
            if write(io, &last).await.is_err() {
                return Next::Abort;
            }
        } else if taken.keep > 0 && write(io, &rbuf[..taken.keep]).await.is_err() {
            return Next::Abort;
        }
        done = taken.end;
        surplus = taken.used < rbuf.len();
    }
    if matches!(body, Body::UntilClose) {
        return Next::Close;
    }
    if reusable && !surplus {
        pool.give(backend);
    }
    Next::KeepAlive
}

/// Write `bytes` to the client. A client that stops taking them is cut off
/// by the `SendTimeout` around its socket (`server/send_timeout.rs`).
pub(super) async fn write<I: AsyncWrite + Unpin>(io: &mut I, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    // TLS keeps written bytes until flushed.
    io.flush().await
}
