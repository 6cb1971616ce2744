//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`: Pusher
//! triggers, checked whole before anything is published (a bad event in a
//! batch publishes nothing), then published through the gateway's one
//! publish entry into the hub channels of the app (`App::hub_channel`), so
//! pushgate's own subscribers of those channels get them too.
//!
//! Pusher's rules: `name` and `data` (a string) required; `channels` (at
//! most 100) or the singular `channel` that pusher-php sends for one; a
//! batch of at most 10 events, each with its `channel`; `data` over the
//! app's `max_message` is 413; `socket_id` leaves that connection out (the
//! message's origin); `info` asks for counts in the answer.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::info::{Counts, Info};
use super::refusal::{Refused, bad};
use crate::model::{Origin, Publish, valid_event};
use crate::pusher::{App, data, users, valid_socket_id};
use crate::rules::ChannelRules;
use crate::state::AppState;

/// Most channels one event may name.
pub(crate) const MAX_CHANNELS: usize = 100;
/// Most events one batch may carry.
pub(crate) const MAX_BATCH: usize = 10;

/// One event's fields as a library sends them. Fields Pusher does not
/// define are passed over (libraries add their own).
#[derive(Debug, Deserialize)]
struct Fields {
    name: Option<String>,
    data: Option<Box<RawValue>>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    info: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Batch {
    batch: Option<Vec<Fields>>,
}

/// One checked event, ready to publish.
#[derive(Debug)]
pub(crate) struct Trigger {
    event: Arc<str>,
    /// The message's JSON (`data::to_hub` of the string sent).
    data: Box<RawValue>,
    /// (Pusher name, hub channel), each once, in the order sent.
    channels: Vec<(String, Arc<str>)>,
    origin: Option<Origin>,
    info: Info,
}

impl Trigger {
    /// How many messages publishing it makes.
    pub(crate) fn len(&self) -> usize {
        self.channels.len()
    }

    /// The messages, one per channel.
    fn publishes<'a>(&'a self, rules: &'a ChannelRules) -> impl Iterator<Item = Publish> + 'a {
        self.channels.iter().map(move |(_, hub)| Publish {
            channel: hub.clone(),
            event: self.event.clone(),
            data: self.data.clone(),
            key: None,
            history: if users::is_user_hub(hub) {
                users::NO_HISTORY
            } else {
                rules.history_for(hub)
            },
            origin: self.origin.clone(),
            binary: false,
        })
    }
}

fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|e| bad(format!("Invalid JSON body: {e}")))
}

/// The body of `POST /events`.
pub(crate) fn parse_event(body: &[u8], app: &App) -> Result<Trigger, Refused> {
    check(json(body)?, app, None)
}

/// The body of `POST /batch_events`.
pub(crate) fn parse_batch(body: &[u8], app: &App) -> Result<Vec<Trigger>, Refused> {
    let batch = json::<Batch>(body)?
        .batch
        .ok_or_else(|| bad("Missing parameter: batch"))?;
    if batch.is_empty() {
        return Err(bad("Invalid parameter: batch is empty"));
    }
    if batch.len() > MAX_BATCH {
        return Err(bad(format!(
            "Batch too large: {} events, at most {MAX_BATCH} per request",
            batch.len()
        )));
    }
    batch
        .into_iter()
        .enumerate()
        .map(|(i, fields)| check(fields, app, Some(i)))
        .collect()
}

/// Check one event; `at` is its place in a batch, where `channel` is the
/// one way to name the channel.
fn check(f: Fields, app: &App, at: Option<usize>) -> Result<Trigger, Refused> {
    let whose = |what: &str| match at {
        Some(i) => format!("{what} (batch event {i})"),
        None => what.to_owned(),
    };
    let name = f
        .name
        .ok_or_else(|| bad(whose("Missing parameter: name")))?;
    if !valid_event(&name) {
        return Err(bad(whose(
            "Invalid event name: 1-200 printable characters, no spaces or quotes",
        )));
    }
    let data = match f.data.as_deref().map(RawValue::get) {
        None | Some("null") => return Err(bad(whose("Missing parameter: data"))),
        Some(text) => serde_json::from_str::<String>(text)
            .map_err(|_| bad(whose("Invalid parameter: data must be a string")))?,
    };
    if data.len() > app.config.max_message {
        return Err(Refused::TooLarge(whose(&format!(
            "Payload too large: data is {} bytes, over this app's limit of {} bytes",
            data.len(),
            app.config.max_message
        ))));
    }
    let names = match (f.channels, f.channel, at) {
        (Some(_), Some(_), _) => {
            return Err(bad(whose("Give `channels` or `channel`, not both")));
        }
        (Some(list), None, None) => list,
        (None, Some(one), _) => vec![one],
        (Some(_), None, Some(_)) => {
            return Err(bad(whose("Missing parameter: channel")));
        }
        (None, None, _) => return Err(bad(whose("Missing parameter: channels"))),
    };
    if names.is_empty() {
        return Err(bad(whose("Missing parameter: channels")));
    }
    if names.len() > MAX_CHANNELS {
        return Err(bad(whose(&format!(
            "Too many channels: {}, at most {MAX_CHANNELS} per event",
            names.len()
        ))));
    }
    let mut seen = HashSet::new();
    let mut channels = Vec::with_capacity(names.len());
    for name in names {
        let Some(hub) = users::trigger_hub(app, &name) else {
            return Err(bad(whose(&format!(
                "Invalid channel name {:?}: 1-164 of A-Z a-z 0-9 _ - = @ . :",
                name.chars().take(200).collect::<String>()
            ))));
        };
        if seen.insert(hub.clone()) {
            channels.push((name, hub));
        }
    }
    let origin = match f.socket_id {
        Some(id) if valid_socket_id(&id) => Some(Origin {
            socket_id: id.into(),
            user_id: None,
        }),
        Some(_) => return Err(bad(whose("Invalid socket_id"))),
        None => None,
    };
    Ok(Trigger {
        event: name.into(),
        data: data::to_hub(&data),
        channels,
        origin,
        info: Info::parse(f.info.as_deref()),
    })
}

/// Publish every message of `triggers`, in order; then the answer: `{}`,
/// or the counts `info` asked for (`channels` by name for one event,
/// `batch` by place for a batch).
pub(crate) async fn publish(
    state: &AppState,
    rules: &ChannelRules,
    triggers: &[Trigger],
    batch: bool,
) -> Result<Value, Refused> {
    let mut done = 0usize;
    for t in triggers {
        for p in t.publishes(rules) {
            if let Err(e) = state.publish(p).await {
                return Err(Refused::Unavailable(format!(
                    "Publishing failed: {e}; {done} of the messages were published"
                )));
            }
            done += 1;
        }
    }
    if !triggers.iter().any(|t| t.info.any()) {
        return Ok(Value::Object(Map::new()));
    }
    if batch {
        let mut out = Vec::with_capacity(triggers.len());
        for t in triggers {
            let mut attributes = Map::new();
            if let Some((name, hub)) = t.channels.first() {
                attributes = Counts::of(state, name, hub).await.attributes(t.info);
            }
            out.push(Value::Object(attributes));
        }
        return Ok(serde_json::json!({ "batch": out }));
    }
    let mut channels = Map::new();
    for t in triggers {
        for (name, hub) in &t.channels {
            let attributes = Counts::of(state, name, hub).await.attributes(t.info);
            channels.insert(name.clone(), Value::Object(attributes));
        }
    }
    Ok(serde_json::json!({ "channels": channels }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pusher as PusherConfig;
    use crate::pusher::Apps;

    fn app(extra: &str) -> Arc<App> {
        let config: PusherConfig = serde_yaml::from_str(&format!(
            "apps:\n  - {{ id: 1, key: k, secret: s{extra} }}\n"
        ))
        .unwrap();
        Apps::new(Some(&config)).by_id("1").unwrap().clone()
    }

    fn refusal(r: Result<impl std::fmt::Debug, Refused>) -> (u16, String) {
        let e = r.unwrap_err();
        (e.status().as_u16(), e.to_string())
    }

    #[test]
    fn a_socket_id_becomes_the_messages_origin() {
        let body = br#"{"name":"e","data":"{\"a\":1}","channels":["c"],"socket_id":"123.456"}"#;
        let t = parse_event(body, &app("")).unwrap();
        let rules = ChannelRules::new(&[], &Default::default());
        let published: Vec<Publish> = t.publishes(&rules).collect();
        assert_eq!(published.len(), 1);
        assert_eq!(
            published[0].origin,
            Some(Origin {
                socket_id: "123.456".into(),
                user_id: None
            })
        );
        assert_eq!(published[0].data.get(), r#"{"a":1}"#);
        let none = parse_event(br#"{"name":"e","data":"x","channel":"c"}"#, &app("")).unwrap();
        assert_eq!(none.publishes(&rules).next().unwrap().origin, None);
        assert_eq!(
            refusal(parse_event(
                br#"{"name":"e","data":"x","channel":"c","socket_id":"1"}"#,
                &app("")
            )),
            (400, "Invalid socket_id".into())
        );
    }

    #[test]
    fn channels_map_to_the_apps_hub_channels_once_each() {
        let t = parse_event(
            br#"{"name":"e","data":"x","channels":["a","b","a"]}"#,
            &app(", channel_prefix: 'p:'"),
        )
        .unwrap();
        let hubs: Vec<&str> = t.channels.iter().map(|(_, h)| &**h).collect();
        assert_eq!(hubs, ["p:a", "p:b"]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn each_bad_event_is_refused_with_its_status() {
        let a = app(", max_message: 4");
        let cases: [(&[u8], u16, &str); 9] = [
            (b"{not json", 400, "Invalid JSON body"),
            (
                br#"{"data":"x","channel":"c"}"#,
                400,
                "Missing parameter: name",
            ),
            (
                br#"{"name":"e","channel":"c"}"#,
                400,
                "Missing parameter: data",
            ),
            (
                br#"{"name":"e","data":{"a":1},"channel":"c"}"#,
                400,
                "Invalid parameter: data",
            ),
            (
                br#"{"name":"e","data":"12345","channel":"c"}"#,
                413,
                "Payload too large",
            ),
            (
                br#"{"name":"e","data":"x"}"#,
                400,
                "Missing parameter: channels",
            ),
            (
                br#"{"name":"e","data":"x","channels":[]}"#,
                400,
                "Missing parameter: channels",
            ),
            (
                br#"{"name":"e","data":"x","channel":"a b"}"#,
                400,
                "Invalid channel name",
            ),
            (
                br#"{"name":"a b","data":"x","channel":"c"}"#,
                400,
                "Invalid event name",
            ),
        ];
        for (body, status, text) in cases {
            let (got, message) = refusal(parse_event(body, &a));
            assert_eq!(got, status, "{}", String::from_utf8_lossy(body));
            assert!(message.starts_with(text), "{message}");
        }
        let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        let body = serde_json::json!({"name": "e", "data": "x", "channels": many}).to_string();
        let (status, message) = refusal(parse_event(body.as_bytes(), &a));
        assert_eq!(
            (status, message.starts_with("Too many channels: 101")),
            (400, true)
        );
    }

    #[test]
    fn a_batch_holds_one_to_ten_events_each_with_its_channel() {
        let a = app("");
        let event = serde_json::json!({"name": "e", "data": "x", "channel": "c"});
        let body = |n: usize| serde_json::json!({ "batch": vec![event.clone(); n] }).to_string();
        assert_eq!(parse_batch(body(10).as_bytes(), &a).unwrap().len(), 10);
        let (status, message) = refusal(parse_batch(body(11).as_bytes(), &a));
        assert_eq!(status, 400);
        assert!(
            message.starts_with("Batch too large: 11 events"),
            "{message}"
        );
        assert_eq!(refusal(parse_batch(body(0).as_bytes(), &a)).0, 400);
        assert_eq!(refusal(parse_batch(b"{}", &a)).0, 400);
        let (status, message) = refusal(parse_batch(
            br#"{"batch":[{"name":"e","data":"x","channel":"c"},{"name":"e","data":"x","channels":["c"]}]}"#,
            &a,
        ));
        assert_eq!(status, 400);
        assert_eq!(message, "Missing parameter: channel (batch event 1)");
    }
}
