//! The ops a client sends over its WebSocket, each checked and answered.
//!
//! Parsing is shared with the other transports (`transport/ops.rs`); what is
//! WebSocket-specific is the answer: every op gets its ack or its error frame
//! on the same connection, in the order the ops came (but for the two
//! below), and a refused op is refused with an error frame, never by
//! closing — only the session loop ends a session. Two ops wait on the application and are answered when it has:
//! a `send` (forwarded to `client_messages.forward_to`) and a `subscribe` to
//! a channel whose rule asks the application (`subscribe: { check }`). Both
//! go on without holding up the session, so deliveries, pings and other ops
//! carry on meanwhile, and their answers come back through the loop (match
//! them by `ref`).

use std::sync::Arc;

use futures_util::FutureExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::ending::Ending;
use super::{MAX_PENDING_CHECKS, MAX_PENDING_SENDS, WsSession};
use crate::auth::Identity;
use crate::hub::Cursor;
use crate::limits::ClientKey;
use crate::rules::Verdict;
use crate::session_auth::Asker;
use crate::state::Settings;
use crate::transport::admission::{self, Refusal, Wire};
use crate::transport::ops::{self, Op};
use crate::transport::session::SubscriptionPolicy;
use crate::transport::{login, publish, send};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

impl WsSession {
    /// Forward a `send` op to the backend without holding up this session:
    /// the answer arrives later through `replies`.
    pub(super) async fn on_send(
        &mut self,
        r: Option<&str>,
        data: send::Payload,
    ) -> Result<(), WsError> {
        if self.pending_sends >= MAX_PENDING_SENDS {
            return self
                .send_text(ops::error(
                    r,
                    "rate_limited",
                    "too many sends awaiting the application",
                ))
                .await;
        }
        if data.len() > self.settings.config.realtime.max_message {
            return self
                .send_text(ops::error(
                    r,
                    "too_large",
                    "data exceeds realtime.max_message",
                ))
                .await;
        }
        // The application is told who sends (`X-Pushgate-Subject`).
        if let Err(refusal) = self.login_now().await {
            return self.send_text(refusal.op(r)).await;
        }
        self.pending_sends += 1;
        let settings = self.settings.clone();
        let subject = self.client.identity.as_ref().map(|i| i.subject.clone());
        let connection = self.id;
        let tx = self
            .replies
            .get_or_insert_with(|| mpsc::channel(MAX_PENDING_SENDS))
            .0
            .clone();
        let reference = r.map(str::to_string);
        self.state.lifecycle.spawn(async move {
            let r = reference.as_deref();
            let reply = match send::forward(&settings, subject.as_deref(), connection, &data).await
            {
                Ok(answer) => ops::ack(r, json!({"op": "send", "data": answer})),
                Err(e) => ops::error(r, e.code(), &e.to_string()),
            };
            let _ = tx.send(reply).await;
        });
        Ok(())
    }

    /// Charge one inbound frame to the client's message limit.
    pub(super) fn allow_frame(&mut self) -> bool {
        crate::transport::admission::allow_frame(&self.state, &self.client.key, &mut self.refused)
    }

    async fn on_auth(&mut self, r: Option<&str>, token: String) -> Result<(), WsError> {
        match self.settings.auth.verify(&token) {
            Ok(identity) => {
                // The connection now counts against the new subject's
                // `per_client.connections`, not what it was counted as
                // before; over that limit, the auth is refused and the
                // connection goes on as it was.
                let key = ClientKey::Subject(Arc::from(identity.subject.as_str()));
                if key != self.client.key {
                    match self.state.limits.open_connection(&key) {
                        Ok(slot) => {
                            self.client.slot = Some(slot);
                            self.client.key = key;
                        }
                        Err(l) => {
                            self.state.metrics.limited(l.kind.label());
                            let refusal = admission::rate_limited(l);
                            return self.send_text(refusal.op(r)).await;
                        }
                    }
                }
                let expires = identity
                    .expires
                    .and_then(|e| e.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                let ack = ops::ack(
                    r,
                    json!({"op": "auth", "subject": &identity.subject, "expires": expires}),
                );
                self.session.set_subject(Some(identity.subject.clone()));
                self.state
                    .connections
                    .set_subject(self.id, Some(&identity.subject));
                self.client.identity = Some(identity);
                // A token wins over the application's login.
                self.client.by_session = false;
                self.client.login_deferred = false;
                self.send_text(ack).await?;
                // The new identity may follow less than the old one did.
                self.revoke_forbidden("subscription closed: the new token does not allow it")
                    .await
                    .map(|_| ())
            }
            Err(e) => self.send_text(admission::bad_token(&e).op(r)).await,
        }
    }

    /// Close the subscriptions the current rules and identity no longer
    /// allow, telling the client of each as `forbidden` with its channel;
    /// returns how many.
    pub(super) async fn revoke_forbidden(&mut self, why: &str) -> Result<usize, WsError> {
        self.judged += 1;
        let gone = self
            .session
            .revoke_forbidden(&self.settings.rules, self.client.identity.as_ref());
        for channel in &gone {
            let frame = json!({
                "type": "error",
                "code": "forbidden",
                "channel": &**channel,
                "message": why,
            });
            self.send_text(frame.to_string()).await?;
        }
        Ok(gone.len())
    }

    /// The token expired: the connection goes on without it when everything
    /// it follows allows that; a subscription that needs a token ends the
    /// session with `token_expired` and 1008.
    pub(super) async fn on_expiry(&mut self) -> Result<Result<(), WsError>, Ending> {
        let text = ops::error(
            None,
            "token_expired",
            "the token expired; send a fresh `auth` op to continue",
        );
        self.judged += 1;
        self.client.identity = None;
        self.session.set_subject(None);
        let needed_token = self
            .session
            .revoke_forbidden(&self.settings.rules, None)
            .len();
        if needed_token > 0 {
            let _ = self.send_text(text).await;
            return Err(Ending::Close(CloseCode::Policy, "token expired".into()));
        }
        Ok(self.send_text(text).await)
    }

    /// `recheck`: ask the application again. A login that ended closes the
    /// session with `token_expired` and 1008 when something needed it, as
    /// an expired token does; a subscription the application now refuses is
    /// closed with its error. `Ok(Ok(true))`: the application could not be
    /// asked, and should be again soon.
    pub(super) async fn on_recheck(&mut self) -> Result<Result<bool, WsError>, Ending> {
        self.judged += 1;
        let settings = self.settings.clone();
        let found =
            login::recheck(&self.state, &settings, &mut self.client, &mut self.session).await;
        if found.ended {
            let text = ops::error(
                None,
                "token_expired",
                "the login ended; log in again, or send a fresh `auth` op",
            );
            if !found.revoked.is_empty() {
                let _ = self.send_text(text).await;
                return Err(Ending::Close(CloseCode::Policy, "login ended".into()));
            }
            if let Err(e) = self.send_text(text).await {
                return Ok(Err(e));
            }
        }
        for (channel, code) in &found.revoked {
            let frame = json!({
                "type": "error",
                "code": code,
                "channel": &**channel,
                "message": "subscription closed: the application no longer allows it",
            });
            if let Err(e) = self.send_text(frame.to_string()).await {
                return Ok(Err(e));
            }
        }
        Ok(Ok(found.unconfirmed))
    }

    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), WsError> {
        let (op, reference) = match ops::parse(text) {
            Ok(x) => x,
            Err(e) => {
                return self
                    .send_text(ops::error(e.reference.as_deref(), e.code, &e.message))
                    .await;
            }
        };
        let r = reference.as_deref();
        match op {
            Op::Ping => self.send_text(ops::ack(r, json!({"op": "ping"}))).await,
            Op::Subscribe { channel, cursor } => self.on_subscribe(r, channel, cursor).await,
            Op::Unsubscribe { channel } => {
                // A subscribe still waiting on the application is called off.
                self.call_off(&channel).await?;
                self.session.unsubscribe(&channel);
                self.send_text(ops::ack(
                    r,
                    json!({"op": "unsubscribe", "channel": channel}),
                ))
                .await
            }
            Op::Publish {
                channel,
                event,
                data,
            } => self.on_publish(r, channel, event, data, false).await,
            Op::Send { data } => self.on_send(r, send::Payload::Json(data)).await,
            Op::Auth { token } => self.on_auth(r, token).await,
        }
    }

    async fn on_subscribe(
        &mut self,
        r: Option<&str>,
        channel: String,
        cursor: Option<String>,
    ) -> Result<(), WsError> {
        let max = self.settings.config.limits.max_channels_per_connection;
        let cursor = match admission::admit_cursor(cursor.as_deref(), max, Wire::WebSocket) {
            Ok(cursor) => cursor,
            Err(refusal) => return self.send_text(refusal.op(r)).await,
        };
        if let Err(l) = self.state.limits.subscribe(&self.client.key, 1) {
            let refusal = admission::subscribes_limited(l, Wire::WebSocket);
            return self.send_text(refusal.op(r)).await;
        }
        self.judge(r, channel, cursor).await
    }

    /// Subscribe by the channel's rule: at once, or once the application
    /// answered when the rule asks it (`ask_then_subscribe`).
    async fn judge(
        &mut self,
        r: Option<&str>,
        channel: String,
        cursor: Option<Cursor>,
    ) -> Result<(), WsError> {
        // The socket began anonymous with credentials the application was
        // not asked about; this channel depends on who the client is.
        if self.client.login_deferred && self.settings.rules.needs_identity(&channel) {
            return self.ask_then_subscribe(r, channel, cursor).await;
        }
        let who = self.client.identity.as_ref();
        let verdict = match admission::admit_channel(
            &self.settings.rules,
            &self.settings.pusher,
            &channel,
            who,
        ) {
            Ok(verdict) => verdict,
            Err(refusal) => return self.send_text(refusal.op(r)).await,
        };
        match verdict {
            Verdict::Allowed(rule) => {
                let terms = SubscriptionPolicy::from(rule);
                self.subscribe_with(r, channel, cursor, terms).await
            }
            Verdict::Ask(..) => self.ask_then_subscribe(r, channel, cursor).await,
        }
    }

    /// Ask the application about `channel` on a task of its own; the answer
    /// comes back through the session loop (`on_checked`). One ask per
    /// channel: another subscribe to a channel being asked about waits for
    /// the same answer. An unsubscribe calls the ask off (`call_off`).
    async fn ask_then_subscribe(
        &mut self,
        r: Option<&str>,
        channel: String,
        cursor: Option<Cursor>,
    ) -> Result<(), WsError> {
        let full = match self.pending_checks.get(&channel) {
            Some(pending) => pending.refs.len() >= MAX_PENDING_CHECKS,
            None => self.pending_checks.len() >= MAX_PENDING_CHECKS,
        };
        if full {
            return self
                .send_text(ops::error(
                    r,
                    "rate_limited",
                    "too many subscribes awaiting the application",
                ))
                .await;
        }
        if let Some(pending) = self.pending_checks.get_mut(&channel) {
            pending.refs.push(r.map(str::to_string));
            if cursor.is_some() {
                pending.cursor = cursor;
            }
            return Ok(());
        }
        // Refused now rather than after the application was asked for it.
        if !self.session.is_subscribed(&channel) {
            let max = self.settings.config.limits.max_channels_per_connection;
            let asked = self.session.channel_count() + self.pending_checks.len() + 1;
            if let Err(refusal) = admission::admit_channel_count(asked, max) {
                return self.send_text(refusal.op(r)).await;
            }
        }
        self.check_generation += 1;
        let generation = self.check_generation;
        let tx = self
            .checked
            .get_or_insert_with(|| mpsc::channel(MAX_PENDING_CHECKS))
            .0
            .clone();
        let question = Question {
            state: self.state.clone(),
            settings: self.settings.clone(),
            credential: self.client.credential.as_deref().cloned(),
            identity: self.client.identity.clone(),
            login_first: self.client.login_deferred,
            addr: self.client.addr,
            by_session: self.client.by_session,
            channel: channel.clone(),
        };
        let judged = self.judged;
        let task = self.state.lifecycle.spawn(async move {
            let settings = question.settings.clone();
            let asked = question.channel.clone();
            // A panic is an answer too: the subscribes waiting are told.
            let (identity, login, answer) = std::panic::AssertUnwindSafe(question.ask())
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    let failed = Err(admission::unavailable("the check failed"));
                    (None, None, failed)
                });
            let _ = tx
                .send(Box::new(Checked {
                    channel: asked,
                    generation,
                    settings,
                    identity,
                    login,
                    judged,
                    answer,
                }))
                .await;
        });
        self.pending_checks.insert(
            channel,
            Pending {
                generation,
                refs: vec![r.map(str::to_string)],
                cursor,
                task: task.abort_handle(),
            },
        );
        Ok(())
    }

    /// `channel` was unsubscribed: its ask, if any, is called off and the
    /// subscribes that waited on it are told so.
    async fn call_off(&mut self, channel: &str) -> Result<(), WsError> {
        // Dropped at the end: that stops its task (`Pending`'s drop).
        let Some(pending) = self.pending_checks.remove(channel) else {
            return Ok(());
        };
        for r in &pending.refs {
            self.send_text(ops::error(
                r.as_deref(),
                "cancelled",
                "unsubscribed before the application answered",
            ))
            .await?;
        }
        Ok(())
    }

    /// The application answered a subscribe (`ask_then_subscribe`): every
    /// subscribe that waited on this ask gets its answer.
    pub(super) async fn on_checked(&mut self, checked: Checked) -> Result<(), WsError> {
        let Checked {
            channel,
            generation,
            settings,
            identity,
            login,
            judged,
            answer,
        } = checked;
        if self
            .pending_checks
            .get(&channel)
            .is_none_or(|p| p.generation != generation)
        {
            // Called off; those who waited were told.
            return Ok(());
        }
        let Some(pending) = self.pending_checks.remove(&channel) else {
            return Ok(());
        };
        // The deferred login was answered: the connection is who the
        // application says from now on (a later answer for the same
        // credential finds it adopted already).
        if let (Some(found), true) = (login, self.client.login_deferred) {
            if let Err(refusal) = self.adopt_login(found) {
                for r in &pending.refs {
                    self.send_text(refusal.op(r.as_deref())).await?;
                }
                return Ok(());
            }
        }
        // The rules, who the client is, or what it may follow changed while
        // it was asked: judged again by what is in force now.
        let stale = !Arc::ptr_eq(&settings, &self.settings)
            || identity != self.client.identity
            || judged != self.judged;
        for r in &pending.refs {
            let (r, channel, cursor) = (r.as_deref(), channel.clone(), pending.cursor.clone());
            if stale {
                Box::pin(self.judge(r, channel, cursor)).await?;
                continue;
            }
            match &answer {
                Ok(terms) => self.subscribe_with(r, channel, cursor, *terms).await?,
                Err(refusal) => self.send_text(refusal.op(r)).await?,
            }
        }
        Ok(())
    }

    /// Subscribe to a channel its rule (and the application, if asked)
    /// allowed, within the connection's and the channel's limits.
    async fn subscribe_with(
        &mut self,
        r: Option<&str>,
        channel: String,
        cursor: Option<Cursor>,
        terms: SubscriptionPolicy,
    ) -> Result<(), WsError> {
        if !self.session.is_subscribed(&channel) {
            let max = self.settings.config.limits.max_channels_per_connection;
            let admitted = admission::admit_channel_count(self.session.channel_count() + 1, max)
                .and_then(|()| {
                    let room = self.settings.config.limits.max_subscribers_per_channel;
                    admission::admit_subscriber(&self.state.hub, room, &channel, Wire::WebSocket)
                });
            if let Err(refusal) = admitted {
                return self.send_text(refusal.op(r)).await;
            }
        }
        let channel: Arc<str> = channel.into();
        let mut replay = Vec::new();
        if let Err(e) = self
            .session
            .subscribe(&channel, terms, cursor.as_ref(), &mut replay)
            .await
        {
            return self.send_text(admission::unavailable(e).op(r)).await;
        }
        let ack = ops::ack(
            r,
            json!({"op": "subscribe", "channel": &*channel, "cursor": self.session.cursor_text()}),
        );
        self.send_text(ack).await?;
        self.out.append(&mut replay);
        self.flush_out().await
    }

    /// Take the application's answer to the login deferred at connect:
    /// a subject now counts under `per_client` (refused, with the message,
    /// when that is full: the connection goes on anonymous, the login
    /// still to ask) and is asked again at `recheck`.
    fn adopt_login(&mut self, found: Option<Identity>) -> Result<(), Refusal> {
        if let Some(identity) = &found {
            let key = ClientKey::Subject(Arc::from(identity.subject.as_str()));
            if key != self.client.key {
                let slot = self.state.limits.open_connection(&key).map_err(|l| {
                    self.state.metrics.limited(l.kind.label());
                    admission::rate_limited(l)
                })?;
                self.client.slot = Some(slot);
                self.client.key = key;
            }
            self.session.set_subject(Some(identity.subject.clone()));
            self.state
                .connections
                .set_subject(self.id, Some(&identity.subject));
        }
        self.client.by_session = found.is_some();
        self.client.identity = found;
        self.client.login_deferred = false;
        Ok(())
    }

    /// Ask the deferred login now, in line (an op answered in order:
    /// `publish`, `send`); `Err` is what the error op says. The session
    /// loop (deliveries, pings) waits on it at most a third of the
    /// heartbeat: past that the op is answered `auth_unavailable`, while
    /// the check goes on, on a task of its own, within its timeout, so its
    /// answer is kept for the client's next try.
    async fn login_now(&mut self) -> Result<(), Refusal> {
        if !self.client.login_deferred {
            return Ok(());
        }
        let Some(credential) = self.client.credential.clone() else {
            self.client.login_deferred = false;
            return Ok(());
        };
        let (state, settings) = (self.state.clone(), self.settings.clone());
        let asker = Asker::new(self.client.addr);
        let bound = settings.config.realtime.heartbeat / 3;
        let tasks = state.lifecycle.clone();
        let asking =
            tasks.spawn(async move { login::login(&state, &settings, &credential, asker).await });
        let slow = || {
            Refusal::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                "the application is slow to answer the check; try again shortly",
            )
        };
        let found = match tokio::time::timeout(bound, asking).await {
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => {
                return Err(Refusal::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "auth_unavailable",
                    "the check failed",
                ));
            }
            Err(_) => return Err(slow()),
        };
        self.adopt_login(found)
    }

    /// A `publish` op; `binary`: `data` is the base64 of a binary frame's
    /// bytes (`binary.rs`).
    pub(super) async fn on_publish(
        &mut self,
        r: Option<&str>,
        channel: String,
        event: Option<String>,
        data: Box<serde_json::value::RawValue>,
        binary: bool,
    ) -> Result<(), WsError> {
        if self.settings.rules.needs_identity_to_publish(&channel) {
            if let Err(refusal) = self.login_now().await {
                return self.send_text(refusal.op(r)).await;
            }
        }
        let published = publish::publish_as_client(
            &self.state,
            &self.settings,
            &self.client,
            channel,
            event,
            &data,
            binary,
        )
        .await;
        let frame = match published {
            Ok(m) => ops::ack(
                r,
                json!({"op": "publish", "channel": &*m.channel, "id": m.id()}),
            ),
            Err(e) => Refusal::from(e).op(r),
        };
        self.send_text(frame).await
    }
}

/// A subscribe's answer from the application, back to its session.
pub(super) struct Checked {
    channel: String,
    /// Which ask of the channel this answers (an ask called off and made
    /// again is another).
    generation: u64,
    /// The settings, identity and revocations it was judged by.
    settings: Arc<Settings>,
    identity: Option<Identity>,
    /// The application's answer to the deferred login, when it was asked.
    login: Option<Option<Identity>>,
    judged: u64,
    answer: Result<SubscriptionPolicy, Refusal>,
}

/// What a subscribe asks the application, on a task of its own: who the
/// client is (when its login was deferred) and whether it may have the
/// channel.
struct Question {
    state: crate::state::AppState,
    settings: Arc<Settings>,
    credential: Option<crate::session_auth::Credential>,
    identity: Option<Identity>,
    login_first: bool,
    addr: std::net::IpAddr,
    by_session: bool,
    channel: String,
}

type Answer = (
    Option<Identity>,
    Option<Option<Identity>>,
    Result<SubscriptionPolicy, Refusal>,
);

impl Question {
    /// The login first, when it was deferred (one question per credential
    /// however many channels ask it at once), then the channel's rule and
    /// the application's checks.
    async fn ask(self) -> Answer {
        let Question {
            state,
            settings,
            credential,
            mut identity,
            login_first,
            addr,
            by_session,
            channel,
        } = self;
        let mut login = None;
        let mut logged_in = by_session;
        if let (true, Some(c)) = (login_first, credential.as_ref()) {
            match login::login(&state, &settings, c, Asker::new(addr)).await {
                Ok(found) => {
                    logged_in = found.is_some();
                    identity = found.clone();
                    login = Some(found);
                }
                Err(denied) => return (identity, None, Err(denied)),
            }
        }
        let answer = match admission::admit_channel(
            &settings.rules,
            &settings.pusher,
            &channel,
            identity.as_ref(),
        ) {
            Err(refusal) => Err(refusal),
            Ok(verdict) => login::allow(
                &state,
                &settings,
                credential.as_ref(),
                Asker::for_resources(addr, logged_in),
                &channel,
                verdict,
            )
            .await
            .map(|(rule, checked)| SubscriptionPolicy {
                checked,
                ..SubscriptionPolicy::from(rule)
            }),
        };
        (identity, login, answer)
    }
}

/// A channel's ask of the application, and the subscribes waiting on it.
/// The channels whose subscribe awaits the application, by name. The map
/// is made by the first such subscribe: most sessions never make one, and
/// an empty map inline cost every open WebSocket 48 B.
// The box is the point: 8 B inline where an empty map takes 48.
#[allow(clippy::box_collection)]
#[derive(Default)]
pub(super) struct PendingChecks(Option<Box<std::collections::HashMap<String, Pending>>>);

impl PendingChecks {
    fn get(&self, channel: &str) -> Option<&Pending> {
        self.0.as_ref()?.get(channel)
    }

    fn get_mut(&mut self, channel: &str) -> Option<&mut Pending> {
        self.0.as_mut()?.get_mut(channel)
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    fn insert(&mut self, channel: String, pending: Pending) {
        self.0.get_or_insert_default().insert(channel, pending);
    }

    fn remove(&mut self, channel: &str) -> Option<Pending> {
        self.0.as_mut()?.remove(channel)
    }
}

pub(super) struct Pending {
    generation: u64,
    refs: Vec<Option<String>>,
    /// The last cursor one of them gave.
    cursor: Option<Cursor>,
    task: tokio::task::AbortHandle,
}

impl Drop for Pending {
    /// An ask nobody waits on any more (unsubscribed, the session over)
    /// stops, giving back its place among the application's checks.
    fn drop(&mut self) {
        self.task.abort();
    }
}
