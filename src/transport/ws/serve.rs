//! The session loop of one WebSocket connection, and its writes.
//!
//! One `select` waits on shutdown, reloads, the token's expiry, deliveries,
//! backend answers, client frames and the heartbeat, biased in that order: a
//! flooding client cannot hold up a shutdown, its own deliveries or its
//! eviction, and its frames are read only while nothing of ours is owed, so
//! tungstenite's pong replies never land inside one of our frames. Every
//! write races the eviction signal, so a client that stops reading is cut off
//! rather than waited for; and every way out of the loop is an [`Ending`]
//! handed to `close`, the one place a session is counted and said goodbye to.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame};

use super::ending::{Ending, Inbound};
use super::outgoing::Outgoing;
use super::{FLOOD_CLOSE_AFTER, WsSession};
use crate::broker::BrokerError;
use crate::transport::ops;
use crate::transport::session::{BATCH_BYTES, Delivery, reset_json};

/// Wait for `timer`, or forever without one.
async fn timer_opt(timer: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A timer only when there is a deadline (most connections have none).
fn timer_at(at: Option<tokio::time::Instant>) -> Option<std::pin::Pin<Box<tokio::time::Sleep>>> {
    at.map(|at| Box::pin(tokio::time::sleep_until(at)))
}

impl WsSession {
    /// Count the ending and, when owed, send the close frame and wait for
    /// the peer's.
    pub(super) async fn close(&mut self, ending: Ending) {
        self.state.metrics.disconnect("ws", ending.reason());
        let (code, reason) = match ending {
            Ending::Close(code, reason) => (code, reason),
            Ending::Kicked => (CloseCode::Policy, "disconnected by the operator".into()),
            Ending::Gone => {
                // The peer closed: tungstenite queued our Close reply when it
                // read theirs; send it, so the closing handshake completes.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.flush()).await;
                return;
            }
            Ending::Stuck => return,
        };
        // Frames of ours the socket has not taken go before the Close.
        let owed = tokio::time::timeout(Duration::from_secs(2), self.write_owed()).await;
        if !matches!(owed, Ok(Ok(()))) {
            return;
        }
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            self.socket.send(Frame::Close(Some(frame))),
        )
        .await;
        if matches!(sent, Ok(Ok(()))) {
            // Closing handshake: keep reading (and discarding) until the peer's
            // Close, so unread frames do not turn our close into a reset.
            // After a frame tungstenite refused (too big, not UTF-8) it reads
            // no more: the rest of what the peer sent is discarded raw, up
            // to a bound, for the same reason (the peer then reads our
            // Close instead of a reset).
            let drain = async {
                loop {
                    match self.socket.next().await {
                        Some(Ok(Frame::Close(_))) => return,
                        Some(Ok(_)) => continue,
                        Some(Err(_)) | None => break,
                    }
                }
                let raw = self.socket.get_mut().raw_mut();
                // On the heap, and only here: in the future it would make
                // every close (boxed by the connection task) allocate 4 KiB
                // more, even the ones that return at once.
                let mut scrap = vec![0u8; 4096];
                let mut left: usize = 1 << 20;
                while left > 0 {
                    match raw.read(&mut scrap).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
    }

    /// Subscribe to the channels asked for on the URL and send the replay.
    /// Begin with what subscribing to the URL's channels gave (`ws.rs`,
    /// before the 101): its replay, or the broker's refusal.
    pub(super) async fn start(
        &mut self,
        subscribed: Result<(), BrokerError>,
    ) -> Result<(), Ending> {
        subscribed.map_err(|e| Ending::Close(CloseCode::Again, e.to_string()))?;
        if self.flush_out().await.is_err() {
            // Evicted during a long replay: the notice still goes out.
            return Err(if self.session.inbox().is_evicted() {
                self.slow_consumer().await
            } else {
                Ending::Gone
            });
        }
        Ok(())
    }

    pub(super) async fn serve(&mut self) -> Ending {
        let mut last_seen = Instant::now();
        let heartbeat = self.settings.config.realtime.heartbeat;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let inbox = self.session.inbox().clone();
        // Listeners, not token futures: this select runs once per delivery
        // (see `alarm.rs`).
        let mut stopping = self.state.lifecycle.stopping().listen_from_start();
        // A reload since the handshake took its settings is heard at once.
        let mut reloaded = self.state.reload_listener(&self.settings);
        // One timer for the token's expiry, re-armed only when an `auth` op
        // changes the token (not one timer per delivery).
        let mut expires = self.expires();
        let mut expiry = timer_at(self.expiry());
        // The application's login and resource answers, asked again.
        let every = self.settings.checks.terms.recheck;
        // Armed only once a recheck is needed (most sessions never).
        let mut recheck = crate::transport::login::RecheckTimer::new(every);
        loop {
            if self.expires() != expires {
                expires = self.expires();
                expiry = timer_at(self.expiry());
            }
            let step = tokio::select! {
                biased;
                _ = stopping.rung() => return Box::pin(self.restart()).await,
                // Rare handlers are boxed: their state would otherwise
                // size the session's future for its whole life.
                _ = reloaded.rung() => Box::pin(self.on_reload()).await,
                _ = timer_opt(&mut expiry) => match Box::pin(self.on_expiry()).await {
                    Ok(step) => step,
                    Err(ending) => return ending,
                },
                _ = recheck.tick(), if crate::transport::login::needs_recheck(&self.client, &self.session) => {
                    match Box::pin(self.on_recheck()).await {
                        Ok(Ok(unconfirmed)) => {
                            if unconfirmed {
                                recheck.reset_after(crate::transport::login::retry_after(every));
                            }
                            Ok(())
                        }
                        Ok(Err(error)) => Err(error),
                        Err(ending) => return ending,
                    }
                }
                // Deliveries before client frames: a client that floods
                // cannot hold up its own deliveries or its eviction.
                // Not while a replay is owed: it goes first (`drain` waits).
                _ = inbox.ready(), if !self.session.is_replaying() => match self.on_delivery(&inbox).await {
                    Ok(step) => step,
                    Err(ending) => return ending,
                },
                Some(reply) = next_reply(&mut self.replies) => {
                    self.pending_sends = self.pending_sends.saturating_sub(1);
                    // Boxed, as the rare handlers above: only `send` ops
                    // have answers.
                    Box::pin(self.send_text(reply)).await
                }
                Some(checked) = next_reply(&mut self.checked) => Box::pin(self.on_checked(*checked)).await,
                // Only with nothing of ours owed: tungstenite writes its pong
                // replies while reading, and they must not land inside a frame.
                read = self.socket.next(), if self.outgoing.is_empty() => {
                    self.outgoing.after_read();
                    last_seen = Instant::now();
                    match self.on_read(read).await {
                        Ok(step) => step,
                        Err(ending) => return ending,
                    }
                }
                // Last: a frame waiting to be read proves the peer alive.
                _ = tick.tick() => {
                    if last_seen.elapsed() > 3 * heartbeat {
                        return Ending::Close(CloseCode::Away, "no pong".into());
                    }
                    self.outgoing.ping();
                    self.write().await
                }
                // The next page of a replay, once everything else had its turn.
                _ = std::future::ready(()), if self.session.is_replaying() => {
                    if inbox.is_kicked() {
                        return Ending::Kicked;
                    }
                    // Live messages overflowed the queue while the replay
                    // was being sent: cut off now, with the cursor reached,
                    // rather than after the rest of the replay.
                    if inbox.is_evicted() {
                        return Box::pin(self.slow_consumer()).await;
                    }
                    match Box::pin(self.replay_step()).await {
                        Ok(step) => step,
                        Err(ending) => return ending,
                    }
                }
            };
            if let Err(error) = step {
                return self.failed(error, &inbox).await;
            }
        }
    }

    /// The gateway is stopping: say so with the cursor to resume from.
    async fn restart(&mut self) -> Ending {
        // Each client its own delay: a restart is not a herd.
        let after = crate::transport::resume::come_back_in(
            self.state.settings().config.realtime.reconnect_spread,
        );
        let frame = json!({"type": "reconnect", "reason": "restart", "cursor": self.session.cursor_text(), "retry": after});
        self.outgoing.text(&frame.to_string());
        let _ = tokio::time::timeout(Duration::from_secs(1), self.write_owed()).await;
        Ending::Close(
            CloseCode::Restart,
            "server restart: reconnect and resume".into(),
        )
    }

    /// Messages are waiting in the inbox (or the operator's word is).
    async fn on_delivery(
        &mut self,
        inbox: &crate::hub::Inbox,
    ) -> Result<Result<(), WsError>, Ending> {
        if inbox.is_kicked() {
            // Boxed: its timer would otherwise size the session's future
            // (every idle WebSocket's) for a path taken once, at the end.
            return Err(Box::pin(self.kicked()).await);
        }
        if inbox.is_evicted() {
            return Err(Box::pin(self.slow_consumer()).await);
        }
        self.session.drain(&mut self.out);
        Ok(self.flush_out().await)
    }

    /// An operator disconnected the session: what was published before
    /// the operator's word still goes out (within a second), so the
    /// client's cursor covers it, and a client that comes back resumes
    /// after it instead of losing it.
    async fn kicked(&mut self) -> Ending {
        self.session.drain(&mut self.out);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush_out()).await;
        Ending::Kicked
    }

    /// One frame (or the end) from the client. Every frame counts against
    /// the client's rate, control frames too: a ping flood is a flood.
    async fn on_read(
        &mut self,
        read: Option<Result<tokio_tungstenite::tungstenite::Message, WsError>>,
    ) -> Result<Result<(), WsError>, Ending> {
        Ok(match Inbound::from_read(read) {
            Inbound::Text(_) | Inbound::Binary(_) | Inbound::Control if !self.allow_frame() => {
                if self.refused > FLOOD_CLOSE_AFTER {
                    return Err(Ending::Close(CloseCode::Again, "rate limited".into()));
                }
                // Boxed: a flooding client's refusal would otherwise size
                // the session's future (every idle WebSocket's).
                Box::pin(self.send_text(ops::error(
                    None,
                    "rate_limited",
                    "too many frames; slow down",
                )))
                .await
            }
            Inbound::Text(t) => Box::pin(self.on_text(&t)).await,
            Inbound::Control => Ok(()),
            Inbound::Binary(frame) => Box::pin(self.on_binary(frame)).await,
            Inbound::End(Some((code, why))) => return Err(Ending::Close(code, why.into())),
            Inbound::End(None) => return Err(Ending::Gone),
        })
    }

    /// How a session whose write or read failed ends.
    async fn failed(&mut self, error: WsError, inbox: &crate::hub::Inbox) -> Ending {
        if inbox.is_evicted() {
            // Cut off mid-write: the notice still goes out if the
            // socket takes it within a second.
            return Box::pin(self.slow_consumer()).await;
        }
        if matches!(&error, WsError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut) {
            // The socket took nothing for the send timeout
            // (`server/send_timeout.rs`): as stuck as an eviction.
            return Ending::Stuck;
        }
        Ending::Gone
    }

    /// Send the next part of the replay; a broker failure ends the session
    /// (the client resumes from its cursor).
    async fn replay_step(&mut self) -> Result<Result<(), WsError>, Ending> {
        if let Err(e) = self.session.replay_next(&mut self.out).await {
            return Err(Ending::Close(CloseCode::Again, e.to_string()));
        }
        Ok(self.flush_out().await)
    }

    /// A new configuration is in force: adopt it, and close the subscriptions
    /// its rules no longer allow (only those).
    async fn on_reload(&mut self) -> Result<(), WsError> {
        self.settings = self.state.settings();
        self.revoke_forbidden("subscription closed: the channel rules changed")
            .await
            .map(|_| ())
    }

    /// When the connection's token stops being valid, as a Tokio instant.
    fn expires(&self) -> Option<std::time::SystemTime> {
        self.client.identity.as_ref()?.expires
    }

    fn expiry(&self) -> Option<tokio::time::Instant> {
        let at = self.expires()?;
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        // A far expiry (a token's `exp` is bounded, but not by much) must
        // not overflow the clock: past its range, it never fires.
        let now = tokio::time::Instant::now();
        Some(
            now.checked_add(left)
                .unwrap_or(now + crate::config::MAX_DURATION),
        )
    }

    /// Send everything in `self.out`, a batch of about [`BATCH_BYTES`] at
    /// a time: the next batch is rendered only once the socket took this one.
    pub(super) async fn flush_out(&mut self) -> Result<(), WsError> {
        while !self.out.is_empty() {
            self.render_batch();
            self.write().await?;
        }
        Ok(())
    }

    /// Encode the next batch of `self.out` into `outgoing`. A short cursor
    /// rides in every message; a long one only in the batch's last frame
    /// (a reset ends a batch, so its cursor is exact), so a client that
    /// resumes mid-batch sees again the messages after its cursor, which
    /// carry their ids.
    ///
    /// On a connection that negotiated permessage-deflate and reads cursor
    /// frames (`?cursor_frames=1`), every message that goes compressed is
    /// the message's one shared payload, without a cursor, and the batch
    /// ends with the cursor: in its last message when that one goes plain,
    /// else in a `{"type":"cursor"}` frame of its own. A client that did not
    /// ask for cursor frames gets its cursors inline, so its messages go
    /// plain: compressing them per connection would cost every delivery.
    fn render_batch(&mut self) {
        let shared = self.outgoing.deflates() && self.cursor_frames;
        let short = self.session.cursor_is_short() && !shared;
        let cursor_len = self.session.cursor().encoded_len_hint();
        let start = self.outgoing.len();
        let mut held = Vec::new();
        let mut held_bytes = 0;
        let mut taken = 0;
        let mut delivered = 0u64;
        for (i, item) in self.out.iter().enumerate() {
            if self.outgoing.len() - start + held_bytes >= BATCH_BYTES {
                break;
            }
            taken = i + 1;
            if !self.session.advance(item) {
                continue;
            }
            if matches!(item, Delivery::Message(_)) {
                delivered += 1;
            }
            if short {
                let cursor = self.session.cursor_text();
                self.outgoing.reserve(message_len(item) + cursor_len);
                render(&mut self.outgoing, item, Some(cursor), self.binary, shared);
                continue;
            }
            held.push(i);
            held_bytes += message_len(item);
            if matches!(item, Delivery::Reset { .. }) {
                break;
            }
        }
        if let Some((&last, rest)) = held.split_last() {
            self.outgoing.reserve(held_bytes + cursor_len);
            for &i in rest {
                render(&mut self.outgoing, &self.out[i], None, self.binary, shared);
            }
            let cursor = self.session.cursor_text();
            render(
                &mut self.outgoing,
                &self.out[last],
                Some(cursor),
                self.binary,
                shared,
            );
        }
        self.out.drain(..taken);
        self.state
            .metrics
            .observe_batch(self.outgoing.len() - start);
        self.state.count_delivered(delivered);
    }

    pub(super) async fn send_text(&mut self, text: String) -> Result<(), WsError> {
        self.outgoing.text(&text);
        self.write().await
    }

    /// Write what is owed, unless the connection is evicted first.
    async fn write(&mut self) -> Result<(), WsError> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let evicted = &mut self.evicted;
        tokio::select! {
            biased;
            r = self.outgoing.write_after_replies(&mut self.socket) => r,
            _ = evicted.rung() => Err(WsError::ConnectionClosed),
        }
    }

    /// Write what is owed, however long the socket takes (callers bound it).
    async fn write_owed(&mut self) -> Result<(), WsError> {
        self.outgoing.write_after_replies(&mut self.socket).await
    }

    /// The connection fell too far behind: tell it where to resume, then close.
    async fn slow_consumer(&mut self) -> Ending {
        self.state.stats.evicted.fetch_add(1, Ordering::Relaxed);
        let frame = json!({
            "type": "error",
            "code": "slow_consumer",
            "message": "too far behind; reconnect and resume with this cursor",
            "cursor": self.session.cursor_text(),
        });
        // After the rest of a write the eviction cut short, if any.
        self.outgoing.text(&frame.to_string());
        match tokio::time::timeout(Duration::from_secs(1), self.write_owed()).await {
            Ok(Ok(())) => {
                Ending::Close(CloseCode::Again, "slow consumer: resume with cursor".into())
            }
            // The socket is stuck: no notice, no closing handshake.
            _ => Ending::Stuck,
        }
    }
}

/// Encode one item as a frame: text (JSON), or, for a connection that
/// asked for them (`?binary=1`), a binary frame for a message of bytes
/// (`Message::write_binary`). With `shared`, a message may go as its shared
/// compressed form, its cursor (when it carries one) in a frame after it.
fn render(
    outgoing: &mut Outgoing,
    item: &Delivery,
    cursor: Option<&str>,
    binary: bool,
    shared: bool,
) {
    match item {
        Delivery::Message(m) if binary && m.has_bytes() => outgoing.binary_with(|b| {
            m.write_binary(cursor, b);
        }),
        Delivery::Message(m) if shared && outgoing.compressed_message(m) => {
            if let Some(cursor) = cursor {
                // Plain: a frame of this connection's own, small, and one
                // per batch; compressing it would cost every socket a
                // compressor once cursors grow long.
                // Written in place, as `Message::write_json` writes its
                // cursor (the cursor's characters need no escaping).
                outgoing.text_with(|b| {
                    b.extend_from_slice(b"{\"type\":\"cursor\",\"cursor\":\"");
                    b.extend_from_slice(cursor.as_bytes());
                    b.extend_from_slice(b"\"}");
                });
            }
        }
        Delivery::Message(m) => outgoing.text_with(|b| m.write_json(cursor, b)),
        Delivery::Reset { channels, reason } => {
            outgoing.text_with(|b| reset_json(channels, reason, cursor.unwrap_or_default(), b))
        }
    }
}

/// About the length of an item's frame, without the cursor.
fn message_len(item: &Delivery) -> usize {
    match item {
        Delivery::Message(m) => m.wire_prefix().len() + 24,
        Delivery::Reset { .. } => 256,
    }
}

/// The next answer from the application (to a `send` op, or to a
/// `subscribe` that asked it), if any channel was made.
async fn next_reply<T>(replies: &mut Option<(mpsc::Sender<T>, mpsc::Receiver<T>)>) -> Option<T> {
    match replies {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}
