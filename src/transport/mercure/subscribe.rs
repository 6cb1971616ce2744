//! `GET {mercure.path}`: a subscriber's selectors (1.0 `match=`,
//! `match_exact=`, `match_urlpattern=`; 0.x `topic=`), its token, the
//! gateway's limits, and where its stream starts (`Last-Event-ID`, or
//! `last_event_id` / 0.x `lastEventID` in the query).
//!
//! Resuming: a hub id (`#{epoch}-{seq}`) names its place at once; a
//! publisher's id is looked for in the hub channel's history, the earliest
//! update bearing it; `earliest`, an id of another epoch or one no longer
//! in history start from the oldest update kept, and the response's
//! `Last-Event-ID` (and `Mercure-Last-Event-ID`) then says `earliest`.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, header};
use url::Url;

use super::stream::{Filter, MercureStream};
use super::{Presented, Refused, hub_url, presented};
use crate::broker::Replay;
use crate::config::Mercure;
use crate::conn_info::ConnInfo;
use crate::hub::Cursor;
use crate::limits::ClientKey;
use crate::mercure::selector::{Selector, Selectors};
use crate::mercure::update::{self, HUB_CHANNEL};
use crate::state::{AppState, Settings};
use crate::transport::session::{Session, SubscriptionPolicy};
use crate::transport::sse::Chunks;

/// Most selectors one subscription may name.
pub(crate) const MAX_SELECTORS: usize = 2000;

/// Most URL Patterns and URI Templates one subscription may name: each is
/// tried one by one against every update (exact selectors are one hash
/// lookup), and each costs a compiled matcher.
pub(crate) const MAX_PATTERNS: usize = 64;

/// History read at a time while looking for a publisher's id.
const SEARCH_PAGE: usize = 256;

/// The newest updates searched for a publisher's id: anyone may ask for an
/// id that was never published, so the search is bounded; an id older than
/// these is answered as unknown (`earliest`).
pub(crate) const SEARCH_LIMIT: usize = 1024;

/// An opened subscriber's stream and the headers of its answer (200).
pub(super) struct Opened {
    pub(super) headers: HeaderMap,
    pub(super) chunks: Chunks,
    pub(super) span: tracing::Span,
}

/// Open a subscriber's stream, or say why not.
pub(super) async fn open<B>(
    state: AppState,
    settings: &Settings,
    config: &Mercure,
    req: &Request<B>,
) -> Result<Opened, Refused> {
    let base = hub_url(config, req)?;
    // Admission (token, limits) before a selector is compiled: compiling
    // costs, and the rate limits are what bound an anonymous client.
    let keys = settings.mercure.as_ref();
    let (rights, expires, token) = match (
        presented(req.headers()),
        keys.and_then(|k| k.subscriber.as_ref()),
    ) {
        (Presented::Bearer(t) | Presented::Cookie(t), Some(verifier)) => {
            let (rights, expires) = verifier
                .verify(t, &base)
                .map_err(|e| Refused::InvalidToken(e.to_string()))?;
            (Some(rights), expires, Some(t.to_string()))
        }
        _ if config.anonymous => (None, None, None),
        _ => return Err(Refused::NoToken),
    };
    let info = req.extensions().get::<ConnInfo>();
    let addr = info.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.client);
    let key = match rights.as_ref().and_then(|r| r.subject.as_deref()) {
        Some(sub) => ClientKey::Subject(Arc::from(sub)),
        None => ClientKey::Anonymous {
            addr,
            conn: info.map_or(0, |c| c.id),
        },
    };
    let limited = |l: crate::limits::Limited| {
        state.metrics.limited(l.kind.label());
        Refused::Limited(crate::transport::limited(l))
    };
    state.limits.subscribe(&key, 1).map_err(limited)?;
    let slot = state.limits.open_connection(&key).map_err(limited)?;
    let (selectors, raw, last_event_id) =
        parse_query(req.uri().query().unwrap_or_default(), &base)?;
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(last_event_id)
        .filter(|id| !id.is_empty());

    let channel: Arc<str> = Arc::from(HUB_CHANNEL);
    let history = settings.rules.history_for(HUB_CHANNEL);
    let (cursor, answered) = resume_point(&state, &channel, history.ttl, last_event_id).await?;
    let mut session = Session::new(&state, settings.config.realtime.client_queue);
    session.set_subject(rights.as_ref().and_then(|r| r.subject.clone()));
    let policy = SubscriptionPolicy {
        slow_client: Default::default(),
        presence: false,
        history,
        checked: 0,
    };
    let mut out = Vec::new();
    session
        .subscribe(&channel, policy, cursor.as_ref(), &mut out)
        .await
        .map_err(|e| Refused::Unavailable(e.to_string()))?;
    // Without a requested id: where the stream starts, as an id that resumes.
    let answered = answered.unwrap_or_else(|| {
        let head = session.cursor().get(HUB_CHANNEL).unwrap_or(0);
        update::hub_id(session.cursor().epoch, head)
    });
    // The connection is cut when this stream falls behind only where it is
    // the stream's alone (HTTP/1); an HTTP/2 connection carries other
    // streams, which go on: there the evicted stream ends by itself (its
    // body's next turn finds the eviction), or, never read again, its
    // connection is cut `backend.timeout` later, as pushgate's SSE does.
    let kill = crate::transport::sse::EvictionKill::for_request(
        req,
        state.settings().config.backend.timeout,
    );
    let span = tracing::debug_span!(
        "session",
        transport = "mercure",
        client = %addr,
        subject = rights.as_ref().and_then(|r| r.subject.as_deref()),
    );
    // Announced once the stream is sure to start; ended when it is dropped.
    let announced = if config.subscriptions {
        let payload = rights.as_ref().and_then(|r| r.payload.clone());
        Some(super::subscriptions::arrive(&state, config, raw, payload).await)
    } else {
        None
    };
    let filter = Filter {
        selectors,
        rights,
        token,
        base,
    };
    let chunks = MercureStream::new(state.clone(), session, out, filter, expires, kill, slot)
        .announced(announced)
        .into_chunks();
    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(&answered) {
        headers.insert("last-event-id", v.clone());
        headers.insert("mercure-last-event-id", v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(Opened {
        headers,
        chunks,
        span,
    })
}

/// The selectors and `last_event_id` of a query.
fn parse_query(
    query: &str,
    base: &Url,
) -> Result<(Selectors, Vec<String>, Option<String>), Refused> {
    let mut selectors = Selectors::default();
    let mut raw = Vec::new();
    let mut count = 0;
    let mut patterns = 0;
    let mut last_event_id = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let costly = match &*name {
            "match_urlpattern" => &*value != "*",
            "topic" => value.contains('{'),
            _ => false,
        };
        if costly {
            patterns += 1;
            if patterns > MAX_PATTERNS {
                return Err(Refused::BadRequest(format!(
                    "at most {MAX_PATTERNS} URL Patterns and URI Templates per subscription \
                     (exact selectors are not counted)"
                )));
            }
        }
        let selector = match &*name {
            "match" | "match_exact" => Selector::exact(&value),
            "match_urlpattern" => Selector::url_pattern(&value, base),
            "topic" => Selector::legacy(&value),
            "last_event_id" | "lastEventID" => {
                last_event_id.get_or_insert_with(|| value.into_owned());
                continue;
            }
            other
                if other
                    .get(..5)
                    .is_some_and(|p| p.eq_ignore_ascii_case("match")) =>
            {
                return Err(Refused::BadRequest(format!(
                    "unsupported topic matcher {other:?} (use match, match_exact or match_urlpattern)"
                )));
            }
            _ => continue,
        };
        count += 1;
        if count > MAX_SELECTORS {
            return Err(Refused::BadRequest(format!(
                "at most {MAX_SELECTORS} topic selectors per subscription"
            )));
        }
        selectors.push(selector.map_err(|e| Refused::BadRequest(e.to_string()))?);
        raw.push(value.into_owned());
    }
    if count == 0 {
        return Err(Refused::BadRequest(
            "missing topic selector (match=, match_urlpattern= or topic=)".into(),
        ));
    }
    Ok((selectors, raw, last_event_id))
}

/// Where to start: the cursor to resume from (None: live) and the id the
/// answer names (None: decided once the session knows its head).
async fn resume_point(
    state: &AppState,
    channel: &Arc<str>,
    ttl: std::time::Duration,
    requested: Option<String>,
) -> Result<(Option<Cursor>, Option<String>), Refused> {
    let Some(requested) = requested else {
        return Ok((None, None));
    };
    let epoch = state.broker.epoch();
    let at = |seq: u64| {
        let mut c = Cursor::new(epoch);
        c.set(channel, seq);
        Some(c)
    };
    let (_, oldest) = state.broker.history_info(channel).await;
    if let Some((e, seq)) = update::parse_hub_id(&requested) {
        // Still in history (or nothing was dropped after it), and not past
        // the newest update (a place never reached would hide every live
        // update up to it): resumed exactly.
        let (_following, head) = crate::broker::follow(&state.broker, channel)
            .await
            .map_err(|e| Refused::Unavailable(e.to_string()))?;
        let kept = oldest.is_none_or(|o| seq.saturating_add(1) >= o) && seq <= head;
        if e == epoch && kept {
            return Ok((at(seq), Some(requested)));
        }
    } else if requested != "earliest" {
        if let Some(seq) = find(state, channel, ttl, &requested).await? {
            return Ok((at(seq), Some(requested)));
        }
    }
    // The earliest update kept.
    let cursor = oldest.and_then(|o| at(o.saturating_sub(1)));
    Ok((cursor, Some("earliest".into())))
}

/// The seq of the earliest update in history with the publisher's `id`.
async fn find(
    state: &AppState,
    channel: &Arc<str>,
    ttl: std::time::Duration,
    id: &str,
) -> Result<Option<u64>, Refused> {
    let (len, oldest) = state.broker.history_info(channel).await;
    let Some(oldest) = oldest else {
        return Ok(None);
    };
    // The newest SEARCH_LIMIT updates kept, at most SEARCH_LIMIT read.
    let skipped = len.saturating_sub(SEARCH_LIMIT) as u64;
    let mut after = oldest.saturating_sub(1).saturating_add(skipped);
    let mut read = 0;
    while read < SEARCH_LIMIT {
        let page = state
            .broker
            .replay(channel, after, ttl, SEARCH_PAGE)
            .await
            .map_err(|e| Refused::Unavailable(e.to_string()))?;
        let Replay::Messages(page) = page else {
            return Ok(None);
        };
        let Some(last) = page.last() else {
            return Ok(None);
        };
        after = last.seq;
        read += page.len();
        if let Some(m) = page.iter().find(|m| update::id_of(m) == Some(id)) {
            return Ok(Some(m.seq));
        }
    }
    Ok(None)
}
