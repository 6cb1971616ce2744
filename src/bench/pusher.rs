//! Pusher protocol 7 for the load generator, so that one generator measures
//! pushgate's Pusher road and other Pusher servers (sockudo, soketi) with the
//! same clients: a subscriber connects to `/app/{key}?protocol=7`, waits for
//! `pusher:connection_established`, subscribes (signing `private-` and
//! `presence-` channels with the app's secret), answers `pusher:ping` and
//! records the stamps of the events it receives. The presence step
//! (`--presence`) measures joins and leaves per second.
//!
//! A subscriber counts as connected only once the server confirmed its
//! subscription, so the publisher never starts before every one is in.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;

use super::net::{Dialer, Io};
use super::progress::Progress;
use super::subscriber::{Outcome, Ready, Tally, ws_config};
use crate::pusher::sign::Signer;

/// The event name the publisher triggers; a frame carrying it is a delivery.
pub const EVENT: &str = "bench";
/// How a delivery is recognised without parsing it as JSON: the generator
/// shares the cores with the server, and a parse per delivery would cost
/// the Pusher subscriber more than the WebSocket one it is compared with.
const DELIVERY: &[u8] = b"\"event\":\"bench\"";

/// One Pusher app of the server under test.
#[derive(Clone)]
pub struct App {
    pub id: String,
    pub key: String,
    pub signer: Signer,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl App {
    pub fn new(id: &str, key: &str, secret: &str) -> App {
        App {
            id: id.to_owned(),
            key: key.to_owned(),
            signer: Signer::new(key, secret),
        }
    }

    /// The socket path pusher-js connects to.
    pub fn socket_path(&self, base: &str) -> String {
        format!(
            "{}/{}?protocol=7&client=pushgate-bench&version=1.0",
            base.trim_end_matches('/'),
            self.key
        )
    }

    /// `pusher:subscribe` for `channel`, signed when the channel needs it;
    /// presence members are `user_id`.
    fn subscribe(&self, socket_id: &str, channel: &str, user_id: &str) -> String {
        let (auth, channel_data) = if channel.starts_with("presence-") {
            let data = serde_json::json!({ "user_id": user_id }).to_string();
            let auth = self.signer.channel_auth(socket_id, channel, Some(&data));
            (Some(auth), Some(data))
        } else if channel.starts_with("private-") {
            (
                Some(self.signer.channel_auth(socket_id, channel, None)),
                None,
            )
        } else {
            (None, None)
        };
        let mut data = serde_json::json!({ "channel": channel });
        if let Some(a) = auth {
            data["auth"] = a.into();
        }
        if let Some(d) = channel_data {
            data["channel_data"] = d.into();
        }
        serde_json::json!({ "event": "pusher:subscribe", "data": data }).to_string()
    }
}

/// What a server frame means to the generator.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A triggered event: carries stamps.
    Delivery,
    Established {
        socket_id: String,
    },
    Succeeded,
    /// `pusher:subscription_error`, with its status when it gives one.
    Refused(Option<u16>),
    /// `pusher:error`: its code (4004 over quota, 4100 over capacity …).
    Error(Option<u16>),
    Ping,
    MemberAdded,
    MemberRemoved,
    Other,
}

/// Reads one server frame. `data` is a JSON string on the wire (Pusher's
/// double encoding) but some servers send an object: both are read.
pub(crate) fn parse(frame: &[u8]) -> Event {
    if memchr::memmem::find(frame, DELIVERY).is_some() {
        return Event::Delivery;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(frame) else {
        return Event::Other;
    };
    let data = match &v["data"] {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or(serde_json::Value::Null),
        other => other.clone(),
    };
    let code = |key: &str| data[key].as_u64().and_then(|c| u16::try_from(c).ok());
    match v["event"].as_str().unwrap_or_default() {
        "pusher:connection_established" => match data["socket_id"].as_str() {
            Some(id) => Event::Established {
                socket_id: id.to_owned(),
            },
            None => Event::Other,
        },
        "pusher_internal:subscription_succeeded" => Event::Succeeded,
        "pusher:subscription_error" => Event::Refused(code("status")),
        "pusher:error" => Event::Error(code("code")),
        "pusher:ping" => Event::Ping,
        "pusher_internal:member_added" => Event::MemberAdded,
        "pusher_internal:member_removed" => Event::MemberRemoved,
        _ => Event::Other,
    }
}

const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

type Socket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// Dial and handshake; `Err` is how the attempt ended.
async fn open(
    dialer: &Dialer,
    i: usize,
    path: &str,
    progress: &Progress,
) -> Result<Socket, Outcome> {
    let io = dialer.dial(i).await.map_err(|_| Outcome::Failed)?;
    progress.sockets.fetch_add(1, Relaxed);
    let url = format!("ws://{}{path}", dialer.host);
    // The small read buffer of the pushgate subscribers (`ws_config`):
    // tungstenite's default zero-fills 128 KiB before every read.
    match tokio_tungstenite::client_async_with_config(url, io, Some(ws_config())).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            Err(Outcome::Status(resp.status().as_u16()))
        }
        Err(_) => Err(Outcome::Failed),
    }
}

/// The next text frame's meaning, answering pings on the way; `None` when
/// the socket ended.
async fn next(ws: &mut Socket) -> Option<(Event, Frame)> {
    loop {
        let frame = ws.next().await?.ok()?;
        let event = match &frame {
            Frame::Text(t) => parse(t.as_bytes()),
            Frame::Close(_) => return None,
            _ => continue,
        };
        if event == Event::Ping {
            ws.send(Frame::text(PONG)).await.ok()?;
            continue;
        }
        return Some((event, frame));
    }
}

/// Waits for `connection_established`: the socket id, or how it ended.
async fn established(ws: &mut Socket) -> Result<String, Outcome> {
    loop {
        match next(ws).await {
            Some((Event::Established { socket_id }, _)) => return Ok(socket_id),
            Some((Event::Error(Some(code)), _)) => return Err(Outcome::Status(code)),
            Some(_) => continue,
            None => return Err(Outcome::Failed),
        }
    }
}

/// Subscribes and waits for the answer.
async fn subscribe(
    ws: &mut Socket,
    app: &App,
    socket_id: &str,
    channel: &str,
    user: &str,
) -> Outcome {
    if ws
        .send(Frame::text(app.subscribe(socket_id, channel, user)))
        .await
        .is_err()
    {
        return Outcome::Failed;
    }
    loop {
        match next(ws).await {
            Some((Event::Succeeded, _)) => return Outcome::Connected,
            Some((Event::Refused(status), _)) => return Outcome::Status(status.unwrap_or(403)),
            Some(_) => continue,
            None => return Outcome::Failed,
        }
    }
}

/// One subscriber of `channel` at `path`: `ready` fires once it is
/// subscribed (or failed). Records until `stop`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    dialer: &Dialer,
    i: usize,
    path: &str,
    channel: &str,
    app: &App,
    epoch: Instant,
    ready: Ready,
    stop: CancellationToken,
    progress: Arc<Progress>,
) -> Tally {
    let mut tally = Tally::new(progress.clone());
    let mut ws = match open(dialer, i, path, &progress).await {
        Ok(ws) => ws,
        Err(outcome) => {
            let _ = ready.send(outcome);
            return tally;
        }
    };
    let outcome = match established(&mut ws).await {
        Ok(id) => subscribe(&mut ws, app, &id, channel, &format!("u{i}")).await,
        Err(outcome) => outcome,
    };
    let _ = ready.send(outcome);
    if outcome != Outcome::Connected {
        return tally;
    }
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let got = tokio::select! {
            biased;
            got = next(&mut ws) => got,
            _ = &mut stopped => return tally,
        };
        match got {
            Some((Event::Delivery, Frame::Text(t))) => tally.record_escaped(t.as_bytes(), epoch),
            Some(_) => {}
            None => return tally,
        }
    }
}

/// What the presence step measured.
#[derive(Debug, serde::Serialize)]
pub struct PresenceReport {
    pub members: usize,
    pub channels: usize,
    pub connected: usize,
    /// Members whose subscribe the server confirmed.
    pub joined: usize,
    /// `member_added` / `member_removed` the observers saw (one observer,
    /// itself a member, per channel).
    pub added_seen: usize,
    pub removed_seen: usize,
    pub joins_per_sec: f64,
    pub leaves_per_sec: f64,
    pub join_seconds: f64,
    pub leave_seconds: f64,
}

/// Counters the members and observers share.
#[derive(Default)]
struct Seen {
    joined: AtomicUsize,
    added: AtomicUsize,
    removed: AtomicUsize,
    notify: tokio::sync::Notify,
}

impl Seen {
    fn bump(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Relaxed);
        self.notify.notify_waiters();
    }

    /// Waits until `done` holds, or `limit` passed; the time it took.
    async fn until(&self, limit: Duration, done: impl Fn(&Seen) -> bool) -> Option<Duration> {
        let start = Instant::now();
        let deadline = start + limit;
        loop {
            let notified = self.notify.notified();
            if done(self) {
                return Some(start.elapsed());
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return done(self).then(|| start.elapsed());
            }
        }
    }
}

/// The presence step: `members` sockets connect (spread over `channels`
/// presence channels `presence-{prefix}.{k}`, one observer member in each
/// first), then all subscribe at once, then all unsubscribe at once. Joins
/// per second: members over the time until every subscribe was confirmed
/// and every observer saw every `member_added`; leaves per second: members
/// over the time until the observers saw every `member_removed`.
pub async fn presence(
    dialers: &[Arc<Dialer>],
    path: &str,
    app: &App,
    members: usize,
    channels: usize,
    prefix: &str,
) -> Result<PresenceReport, String> {
    let channels = channels.max(1);
    let seen = Arc::new(Seen::default());
    let progress = Arc::new(Progress::default());
    let (phase_tx, phase) = tokio::sync::watch::channel(Phase::Connect);
    let channel = |k: usize| format!("presence-{prefix}.{}", k % channels);
    let mut tasks = tokio::task::JoinSet::new();
    // Observers first, subscribed before any member connects.
    let mut readies = Vec::new();
    for k in 0..channels {
        let (tx, rx) = tokio::sync::oneshot::channel();
        readies.push(rx);
        let (dialer, app, seen, progress) = (
            dialers[k % dialers.len()].clone(),
            app.clone(),
            seen.clone(),
            progress.clone(),
        );
        let (path, ch, phase) = (path.to_owned(), channel(k), phase.clone());
        tasks.spawn(async move {
            observer(
                &dialer,
                members + k,
                &path,
                &ch,
                &app,
                tx,
                &seen,
                phase,
                &progress,
            )
            .await
        });
    }
    for rx in readies {
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Outcome::Connected)) => {}
            other => {
                return Err(format!(
                    "a presence observer could not subscribe: {other:?}"
                ));
            }
        }
    }
    let mut readies = Vec::with_capacity(members);
    for i in 0..members {
        let (tx, rx) = tokio::sync::oneshot::channel();
        readies.push(rx);
        let (dialer, app, seen, progress) = (
            dialers[i % dialers.len()].clone(),
            app.clone(),
            seen.clone(),
            progress.clone(),
        );
        let (path, ch, phase) = (path.to_owned(), channel(i), phase.clone());
        tasks.spawn(async move {
            member(&dialer, i, &path, &ch, &app, tx, &seen, phase, &progress).await
        });
        if i % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    let mut connected = 0;
    for rx in readies {
        if let Ok(Ok(Outcome::Connected)) = tokio::time::timeout(Duration::from_secs(30), rx).await
        {
            connected += 1;
        }
    }
    let limit = Duration::from_secs(60);
    let _ = phase_tx.send(Phase::Join);
    let join = seen
        .until(limit, |s| {
            s.joined.load(Relaxed) >= connected && s.added.load(Relaxed) >= connected
        })
        .await;
    let joined = seen.joined.load(Relaxed);
    let _ = phase_tx.send(Phase::Leave);
    let leave = seen
        .until(limit, |s| s.removed.load(Relaxed) >= joined)
        .await;
    let _ = phase_tx.send(Phase::Close);
    while tasks.join_next().await.is_some() {}
    let rate = |d: Option<Duration>| d.map_or(0.0, |d| joined as f64 / d.as_secs_f64().max(1e-6));
    let secs = |d: Option<Duration>| d.map_or(f64::INFINITY, |d| d.as_secs_f64());
    Ok(PresenceReport {
        members,
        channels,
        connected,
        joined,
        added_seen: seen.added.load(Relaxed),
        removed_seen: seen.removed.load(Relaxed),
        joins_per_sec: rate(join),
        leaves_per_sec: rate(leave),
        join_seconds: secs(join),
        leave_seconds: secs(leave),
    })
}

/// The steps of the presence run every socket follows together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connect,
    Join,
    Leave,
    Close,
}

async fn wait_for(phase: &mut tokio::sync::watch::Receiver<Phase>, want: Phase) -> bool {
    phase
        .wait_for(|p| *p == want || *p == Phase::Close)
        .await
        .is_ok_and(|p| *p == want)
}

/// A Pusher socket opened and past `pusher:connection_established`: the
/// socket and its id, or the outcome that stopped it.
async fn open_established(
    dialer: &Dialer,
    i: usize,
    path: &str,
    progress: &Progress,
) -> Result<(Socket, String), Outcome> {
    let mut ws = open(dialer, i, path, progress).await?;
    let id = established(&mut ws).await?;
    Ok((ws, id))
}

/// A member: connects, subscribes on `Join`, unsubscribes on `Leave`.
#[allow(clippy::too_many_arguments)]
async fn member(
    dialer: &Dialer,
    i: usize,
    path: &str,
    channel: &str,
    app: &App,
    ready: Ready,
    seen: &Seen,
    mut phase: tokio::sync::watch::Receiver<Phase>,
    progress: &Progress,
) {
    let (mut ws, socket_id) = match open_established(dialer, i, path, progress).await {
        Ok(opened) => opened,
        Err(o) => {
            let _ = ready.send(o);
            return;
        }
    };
    let _ = ready.send(Outcome::Connected);
    // Pings may come while waiting: answer them meanwhile.
    let joined = tokio::select! {
        go = wait_for(&mut phase, Phase::Join) => go,
        _ = async { while next(&mut ws).await.is_some() {} } => false,
    };
    if !joined {
        return;
    }
    if subscribe(&mut ws, app, &socket_id, channel, &format!("u{i}")).await == Outcome::Connected {
        seen.bump(&seen.joined);
    }
    let leave = tokio::select! {
        go = wait_for(&mut phase, Phase::Leave) => go,
        _ = async { while next(&mut ws).await.is_some() {} } => false,
    };
    if leave {
        let unsubscribe =
            serde_json::json!({ "event": "pusher:unsubscribe", "data": { "channel": channel } });
        let _ = ws.send(Frame::text(unsubscribe.to_string())).await;
        tokio::select! {
            _ = wait_for(&mut phase, Phase::Close) => {}
            _ = async { while next(&mut ws).await.is_some() {} } => {}
        }
    }
    let _ = ws.close(None).await;
}

/// An observer: a member of `channel` from the start that counts the
/// `member_added` and `member_removed` it is sent.
#[allow(clippy::too_many_arguments)]
async fn observer(
    dialer: &Dialer,
    i: usize,
    path: &str,
    channel: &str,
    app: &App,
    ready: Ready,
    seen: &Seen,
    mut phase: tokio::sync::watch::Receiver<Phase>,
    progress: &Progress,
) {
    let (mut ws, id) = match open_established(dialer, i, path, progress).await {
        Ok(opened) => opened,
        Err(o) => {
            let _ = ready.send(o);
            return;
        }
    };
    let outcome = subscribe(&mut ws, app, &id, channel, &format!("observer-{i}")).await;
    let _ = ready.send(outcome);
    if outcome != Outcome::Connected {
        return;
    }
    let closing = wait_for(&mut phase, Phase::Close);
    tokio::pin!(closing);
    loop {
        let got = tokio::select! {
            got = next(&mut ws) => got,
            _ = &mut closing => break,
        };
        match got {
            Some((Event::MemberAdded, _)) => seen.bump(&seen.added),
            Some((Event::MemberRemoved, _)) => seen.bump(&seen.removed),
            Some(_) => {}
            None => break,
        }
    }
    let _ = ws.close(None).await;
}

/// The presence step's table.
pub fn presence_table(r: &PresenceReport) -> String {
    format!(
        "| members | channels | connected | joined | added seen | removed seen | joins/s | leaves/s |\n|---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |\n",
        r.members,
        r.channels,
        r.connected,
        r.joined,
        r.added_seen,
        r.removed_seen,
        r.joins_per_sec,
        r.leaves_per_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_are_read() {
        let established = br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#;
        assert_eq!(
            parse(established),
            Event::Established {
                socket_id: "123.456".into()
            }
        );
        // data as an object, as some servers send it.
        let object = br#"{"event":"pusher:connection_established","data":{"socket_id":"1.2"}}"#;
        assert_eq!(
            parse(object),
            Event::Established {
                socket_id: "1.2".into()
            }
        );
        let no_id = br#"{"event":"pusher:connection_established","data":"{}"}"#;
        assert_eq!(parse(no_id), Event::Other);
        assert_eq!(
            parse(
                br#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#
            ),
            Event::Succeeded
        );
        assert_eq!(
            parse(br#"{"event":"pusher:subscription_error","channel":"c","data":"{\"type\":\"AuthError\",\"status\":429}"}"#),
            Event::Refused(Some(429))
        );
        assert_eq!(
            parse(br#"{"event":"pusher:subscription_error","data":"nope"}"#),
            Event::Refused(None)
        );
        assert_eq!(
            parse(br#"{"event":"pusher:error","data":{"code":4004,"message":"over quota"}}"#),
            Event::Error(Some(4004))
        );
        assert_eq!(
            parse(br#"{"event":"pusher:ping","data":"{}"}"#),
            Event::Ping
        );
        assert_eq!(
            parse(br#"{"event":"pusher_internal:member_added","channel":"presence-x","data":"{\"user_id\":\"u1\"}"}"#),
            Event::MemberAdded
        );
        assert_eq!(
            parse(br#"{"event":"pusher_internal:member_removed","channel":"presence-x","data":"{\"user_id\":\"u1\"}"}"#),
            Event::MemberRemoved
        );
        assert_eq!(
            parse(br#"{"event":"bench","channel":"b.0","data":"{\"n\":1,\"t\":2}"}"#),
            Event::Delivery
        );
        assert_eq!(parse(b"not json"), Event::Other);
        assert_eq!(parse(br#"{"event":7}"#), Event::Other);
    }

    #[test]
    fn subscriptions_are_signed_where_the_channel_needs_it() {
        let app = App::new("1", "key", "secret");
        let public: serde_json::Value =
            serde_json::from_str(&app.subscribe("1.2", "public.bench.0", "u1")).unwrap();
        assert_eq!(public["event"], "pusher:subscribe");
        assert_eq!(public["data"]["channel"], "public.bench.0");
        assert!(public["data"].get("auth").is_none());
        let presence: serde_json::Value =
            serde_json::from_str(&app.subscribe("1.2", "presence-b.0", "u1")).unwrap();
        let data = presence["data"]["channel_data"].as_str().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(data).unwrap()["user_id"],
            "u1"
        );
        let auth = presence["data"]["auth"].as_str().unwrap();
        assert!(
            app.signer
                .channel_auth_valid("1.2", "presence-b.0", Some(data), auth)
        );
        assert!(
            !app.signer
                .channel_auth_valid("1.3", "presence-b.0", Some(data), auth)
        );
        let private: serde_json::Value =
            serde_json::from_str(&app.subscribe("1.2", "private-b.0", "u1")).unwrap();
        let auth = private["data"]["auth"].as_str().unwrap();
        assert!(
            app.signer
                .channel_auth_valid("1.2", "private-b.0", None, auth)
        );
        assert_eq!(
            app.socket_path("/app/"),
            "/app/key?protocol=7&client=pushgate-bench&version=1.0"
        );
    }
}
