//! What every transport shares: a connection's subscriptions, its inbox and
//! its cursor, and the resume logic.
//!
//! The rule: a subscription is registered with the hub *before* history is
//! read, so nothing published in between can fall through; anything that then
//! arrives twice (once from history, once live) is dropped by comparing ids
//! with the cursor. A resume the broker cannot satisfy becomes an explicit
//! [`Delivery::Reset`], never a silent gap. A replay is read from history a page
//! at a time as the transport asks for it (`replay.rs`), and the inbox is
//! not drained until it is over, so replayed and live messages never cross.

mod replay;
#[cfg(test)]
mod tests;
mod wire;

use std::sync::Arc;

use crate::broker::{BrokerError, Replay};
use std::time::Duration;

use super::resume::{self, ResumeClock};
use crate::broker::HistoryPolicy;
use crate::config::SlowClient;
use crate::hub::{Cursor, Drained, Inbox, Message, Subscription};
use crate::rules::ChannelRule;
use crate::state::AppState;
use replay::Replays;
pub use wire::{BATCH_BYTES, INLINE_CURSOR_MAX, reset_json};

/// Something to send to the client, in order.
#[derive(Debug)]
pub enum Delivery {
    Message(Arc<Message>),
    /// Missed messages can't be replayed for these channels (history gone,
    /// other epoch, or dropped for a slow client); delivery continues live.
    Reset {
        channels: Vec<Arc<str>>,
        reason: &'static str,
    },
}

/// `read` (a history read), unless the session ends first: `None` when the
/// gateway began stopping or the inbox was kicked or evicted before it
/// answered. Without this a read waiting its turn held a shutdown or a
/// kick for up to the broker's timeout.
///
/// The inbox's wake-ups are how a kick is heard; one taken here for a
/// message is given back, or the message would wait for the next one.
async fn until_ended<T>(
    inbox: &Inbox,
    stopping: &Arc<crate::alarm::Alarm>,
    read: impl std::future::Future<Output = T>,
) -> Option<T> {
    use std::sync::atomic::{AtomicBool, Ordering};
    if stopping.has_rung() || inbox.is_kicked() || inbox.is_evicted() {
        return None;
    }
    let woke = AtomicBool::new(false);
    let ended = async {
        let mut stop = stopping.listen_from_start();
        loop {
            tokio::select! {
                () = stop.rung() => return,
                () = inbox.ready() => {
                    if inbox.is_kicked() || inbox.is_evicted() {
                        return;
                    }
                    woke.store(true, Ordering::Relaxed);
                }
            }
        }
    };
    let answer = tokio::select! {
        biased;
        answer = read => Some(answer),
        () = ended => None,
    };
    if woke.load(Ordering::Relaxed) {
        inbox.wake();
    }
    answer
}

/// What a channel's rule asks of a subscription.
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionPolicy {
    pub slow_client: SlowClient,
    pub presence: bool,
    pub history: HistoryPolicy,
    /// The application allowed it under these checks (`rules::checks_id`;
    /// 0: no check): asked again at `recheck`.
    pub checked: u64,
}

impl From<&ChannelRule> for SubscriptionPolicy {
    fn from(rule: &ChannelRule) -> SubscriptionPolicy {
        SubscriptionPolicy {
            slow_client: rule.slow_client,
            presence: rule.presence,
            history: rule.history,
            checked: 0,
        }
    }
}

/// One followed channel: the hub registration and the broker's follow,
/// each undone when dropped (in that order), and, on presence channels,
/// the member it counts as.
struct Followed {
    sub: Subscription,
    /// The broker confirmed it routes this channel here.
    follow: Option<crate::broker::Following>,
    terms: SubscriptionPolicy,
    member: Option<String>,
}

pub struct Session {
    /// The hub, broker, presence and metrics, through one handle: four
    /// clones of their own cost every open connection 32 B more.
    state: AppState,
    presence_grace: Duration,
    /// The token subject, for presence.
    subject: Option<String>,
    /// What the member shows others on presence channels (a Pusher
    /// member's `user_info` JSON).
    member_info: Option<Arc<str>>,
    inbox: Inbox,
    subs: Vec<Followed>,
    cursor: Cursor,
    scratch: String,
    replays: Replays,
    /// Messages of one channel read from history at a time.
    page: usize,
    /// Replayed messages handed to the transport at a time.
    queue: usize,
}

impl Session {
    pub fn new(state: &AppState, queue: usize) -> Session {
        let epoch = state.broker.epoch();
        let settings = state.settings();
        // Pages of all channels together hold about `client_queue` messages.
        let channels = settings.config.limits.max_channels_per_connection.max(1);
        Session {
            replays: Replays::default(),
            page: (queue / channels).clamp(8, 64),
            queue: queue.max(1),
            state: state.clone(),
            presence_grace: settings.config.realtime.presence_grace,
            subject: None,
            member_info: None,
            inbox: Inbox::new(queue),
            subs: Vec::new(),
            cursor: Cursor::new(epoch),
            scratch: String::new(),
        }
    }

    /// Who this connection is (presence counts subjects, not connections).
    pub fn set_subject(&mut self, subject: Option<String>) {
        self.subject = subject;
    }

    /// Who this connection is on the presence channels it subscribes from
    /// now on, and what it shows the other members (a Pusher socket names
    /// its member per subscription, in the signed `channel_data`).
    pub fn set_member(&mut self, subject: Option<String>, info: Option<Arc<str>>) {
        self.subject = subject;
        self.member_info = info;
    }

    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.subs.iter().any(|f| &*f.sub.channel == channel)
    }

    /// Drop subscriptions the current rules no longer allow for `who`;
    /// returns the channels dropped. One whose rule now asks the application
    /// stays only if the application allowed it (it is asked again at
    /// `recheck`); one it never was asked about goes.
    pub fn revoke_forbidden(
        &mut self,
        rules: &crate::rules::ChannelRules,
        who: Option<&crate::auth::Identity>,
    ) -> Vec<Arc<str>> {
        use crate::rules::Verdict;
        let gone: Vec<Arc<str>> = self
            .subs
            .iter()
            .filter(|f| match rules.check_subscribe(&f.sub.channel, who) {
                Err(_) => true,
                Ok(Verdict::Allowed(_)) => false,
                Ok(Verdict::Ask(_, checks)) => f.terms.checked != crate::rules::checks_id(&checks),
            })
            .map(|f| f.sub.channel.clone())
            .collect();
        for c in &gone {
            self.unsubscribe(c);
        }
        gone
    }

    /// Whether a subscription was allowed by the application.
    pub fn has_checked(&self) -> bool {
        self.subs.iter().any(|f| f.terms.checked != 0)
    }

    /// The channels the application allowed, to ask again.
    pub fn checked_channels(&self) -> Vec<Arc<str>> {
        self.subs
            .iter()
            .filter(|f| f.terms.checked != 0)
            .map(|f| f.sub.channel.clone())
            .collect()
    }

    pub fn channel_count(&self) -> usize {
        self.subs.len()
    }

    /// Subscribe to `channel`, resuming from `from` (a client cursor) when it
    /// names this channel. Replayed messages and resets are appended to `out`.
    pub async fn subscribe(
        &mut self,
        channel: &Arc<str>,
        terms: SubscriptionPolicy,
        from: Option<&Cursor>,
        out: &mut Vec<Delivery>,
    ) -> Result<(), BrokerError> {
        self.subscribe_clocked(channel, terms, from, out, None)
            .await
    }

    /// [`Session::subscribe`], marking the history read's stages on a
    /// resume's `clock`.
    async fn subscribe_clocked(
        &mut self,
        channel: &Arc<str>,
        terms: SubscriptionPolicy,
        from: Option<&Cursor>,
        out: &mut Vec<Delivery>,
        clock: Option<&ResumeClock>,
    ) -> Result<(), BrokerError> {
        if self.is_subscribed(channel) {
            return Ok(());
        }
        let resume = from.and_then(|c| c.get(channel).map(|pos| (c.epoch, pos)));
        // Hub first, then the broker: once `follow` resolves, every message
        // after `head` reaches this inbox, and history covers what came before.
        let sub = self
            .state
            .hub
            .subscribe(channel, &self.inbox, terms.slow_client);
        self.subs.push(Followed {
            sub,
            follow: None,
            terms,
            member: None,
        });
        let (following, head) = match crate::broker::follow(&self.state.broker, channel).await {
            Ok(followed) => followed,
            Err(e) => {
                self.unsubscribe(channel);
                return Err(e);
            }
        };
        let epoch = self.state.broker.epoch();
        self.rebase(epoch, out);
        if let Some(f) = self.subs.last_mut() {
            f.follow = Some(following);
            f.member = self.subject.clone().filter(|_| terms.presence);
            if let Some(m) = &f.member {
                self.state.presence.join(
                    channel,
                    m,
                    self.member_info.as_ref(),
                    terms.history,
                    self.presence_grace,
                );
            }
        }
        match resume {
            None => self.cursor.set(channel, head),
            Some((from_epoch, _)) if from_epoch != epoch => {
                self.state.metrics.replay("reset");
                self.cursor.set(channel, head);
                out.push(Delivery::Reset {
                    channels: vec![channel.clone()],
                    reason: "history",
                });
            }
            Some((_, pos)) => match self
                .first_page(channel, pos, terms.history.ttl, clock)
                .await
            {
                Ok(Replay::Messages(first)) => {
                    self.state.metrics.replay("hit");
                    self.cursor.set(channel, pos);
                    self.replays
                        .add(channel, terms.history.ttl, pos, head, first, self.page);
                }
                Ok(Replay::Gap) => {
                    self.state.metrics.replay("reset");
                    self.cursor.set(channel, head);
                    out.push(Delivery::Reset {
                        channels: vec![channel.clone()],
                        reason: "history",
                    });
                }
                Err(e) => {
                    self.unsubscribe(channel);
                    return Err(e);
                }
            },
        }
        Ok(())
    }

    /// A resume's first page of `channel` after `pos`, its read's start and
    /// answer marked on `clock`; given up when the session ends first.
    async fn first_page(
        &self,
        channel: &str,
        pos: u64,
        ttl: Duration,
        clock: Option<&ResumeClock>,
    ) -> Result<Replay, BrokerError> {
        resume::mark(clock, resume::stage::REPLAY_STARTED);
        let read = self.state.broker.replay(channel, pos, ttl, self.page);
        let read = until_ended(&self.inbox, self.state.lifecycle.stopping(), read)
            .await
            .unwrap_or_else(|| Err(BrokerError::Unavailable("the gateway is stopping".into())));
        resume::mark(clock, resume::stage::REPLAY_READ);
        read
    }

    /// Subscribe to several channels at once (a connect URL's `channels=`):
    /// resets go to `out` at once, what each missed follows through
    /// [`Session::replay_next`], merged into one publication order.
    /// A resume's `clock` hears when each channel's history read starts and answers.
    pub async fn subscribe_all(
        &mut self,
        channels: &[(Arc<str>, SubscriptionPolicy)],
        from: Option<&Cursor>,
        out: &mut Vec<Delivery>,
        clock: Option<&ResumeClock>,
    ) -> Result<(), BrokerError> {
        // Sized once: a connection keeps this list for its whole life.
        self.subs.reserve_exact(channels.len());
        for (channel, terms) in channels {
            self.subscribe_clocked(channel, *terms, from, out, clock)
                .await?;
        }
        Ok(())
    }

    /// Whether a replay is still owed: the transport sends it (through
    /// [`Session::replay_next`]) before it takes anything from the inbox.
    pub fn is_replaying(&self) -> bool {
        !self.replays.is_empty()
    }

    /// Append the next replayed messages (about `client_queue` of them) to
    /// `out`, reading history a page at a time; a channel whose history
    /// stopped reaching back meanwhile gets a reset and continues live.
    ///
    /// A read that waits (on a busy broker, or for its turn among a storm's
    /// replays) gives way when the session ends: the gateway stopping, an
    /// operator's kick, an eviction. It then returns at once with what it
    /// had, the session still replaying, and the caller's own checks of
    /// those alarms end the stream (a shutdown with its reconnect notice).
    pub async fn replay_next(&mut self, out: &mut Vec<Delivery>) -> Result<(), BrokerError> {
        let read = self
            .replays
            .next(&*self.state.broker, self.queue, self.page, out);
        let Some(gaps) = until_ended(&self.inbox, self.state.lifecycle.stopping(), read).await
        else {
            return Ok(());
        };
        let gaps = gaps?;
        for gap in gaps {
            if self.cursor.get(&gap.channel).is_some() {
                self.state.metrics.replay("reset");
                self.cursor.set(&gap.channel, gap.head);
                out.push(Delivery::Reset {
                    channels: vec![gap.channel],
                    reason: "history",
                });
            }
        }
        Ok(())
    }

    pub fn unsubscribe(&mut self, channel: &str) -> bool {
        let Some(i) = self.subs.iter().position(|f| &*f.sub.channel == channel) else {
            return false;
        };
        let followed = self.subs.swap_remove(i);
        self.forget(followed);
        self.cursor.remove(channel);
        self.replays.remove(channel);
        true
    }

    /// Move whatever the inbox holds into `out`, keeping only what this
    /// connection has not seen yet.
    /// Nothing while a replay is owed: a live message would move the cursor
    /// past replayed ones not yet sent.
    pub fn drain(&mut self, out: &mut Vec<Delivery>) {
        if self.is_replaying() {
            return;
        }
        // Messages go straight into `out` (no list of their own per
        // drain); any reset found below is put before them.
        let mut d = Drained::default();
        let first = out.len();
        self.inbox
            .drain_each(&mut d, |m| out.push(Delivery::Message(m)));
        let mut resets = Vec::new();
        // A rebase already resets every channel; a loss is then old news.
        let rebased = self.rebase(self.state.broker.epoch(), &mut resets);
        let lost: Vec<_> = d
            .lost
            .into_iter()
            .filter(|c| !rebased && self.is_subscribed(c))
            .collect();
        if !lost.is_empty() {
            self.state.metrics.replay("reset");
            resets.push(Delivery::Reset {
                channels: lost,
                reason: "history",
            });
        }
        if !d.gaps.is_empty() {
            let channels: Vec<_> = d
                .gaps
                .into_iter()
                .filter(|c| self.is_subscribed(c))
                .collect();
            if !channels.is_empty() {
                self.state
                    .metrics
                    .dropped
                    .get_or_create(&crate::metrics::ReasonLabel {
                        reason: "slow_client",
                    })
                    .inc();
                resets.push(Delivery::Reset {
                    channels,
                    reason: "slow_client",
                });
            }
        }
        if !resets.is_empty() {
            out.splice(first..first, resets);
        }
    }

    /// Account for `out` being sent: advances the cursor and observes the
    /// delivery's latency (the transport counts it, with
    /// `count_delivered`, once per batch). Returns false when the item must
    /// be skipped (a duplicate, or a channel no longer followed).
    pub fn advance(&mut self, item: &Delivery) -> bool {
        match item {
            Delivery::Message(m) => match self.cursor.get(&m.channel) {
                Some(pos) if m.seq > pos && m.epoch == self.cursor.epoch => {
                    self.cursor.set(&m.channel, m.seq);
                    self.state
                        .metrics
                        .observe_delivery(m.published_at.elapsed());
                    true
                }
                _ => false,
            },
            Delivery::Reset { .. } => true,
        }
    }

    /// Whether the cursor is short enough to repeat in every message.
    pub fn cursor_is_short(&self) -> bool {
        self.cursor.encoded_len_hint() <= INLINE_CURSOR_MAX
    }

    /// The current cursor, encoded into a buffer reused across deliveries.
    pub fn cursor_text(&mut self) -> &str {
        self.scratch.clear();
        self.cursor.encode_into(&mut self.scratch);
        &self.scratch
    }

    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The broker's id space changed under us (a Redis that lost its data):
    /// positions from the old epoch mean nothing now. Start every followed
    /// channel from the beginning of the new epoch and tell the client.
    fn rebase(&mut self, epoch: u64, out: &mut Vec<Delivery>) -> bool {
        if self.cursor.epoch == epoch {
            return false;
        }
        let channels: Vec<Arc<str>> = self.cursor.channels().cloned().collect();
        self.cursor = Cursor::new(epoch);
        self.replays.clear();
        for c in &channels {
            self.cursor.set(c, 0);
        }
        if !channels.is_empty() {
            self.state.metrics.replay("reset");
            out.push(Delivery::Reset {
                channels,
                reason: "history",
            });
        }
        true
    }
}

impl Session {
    /// Undo a followed channel: the guards take it off the hub and the
    /// broker; presence is told it left.
    fn forget(&self, f: Followed) {
        let Followed {
            sub,
            follow,
            terms,
            member,
        } = f;
        let channel = sub.channel.clone();
        drop(sub);
        drop(follow);
        if let Some(m) = &member {
            self.state
                .presence
                .leave(&channel, m, self.presence_grace, terms.history);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for f in std::mem::take(&mut self.subs) {
            self.forget(f);
        }
    }
}
