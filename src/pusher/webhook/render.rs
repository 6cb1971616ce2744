//! An app event as Pusher's webhook body writes it: `{"name":…,"channel":…}`
//! and the fields of its kind, rendered once when it enters a batch; and the
//! body around a request's events, written again at each attempt so its
//! `time_ms` is the attempt's (the libraries' validators refuse old bodies).

use crate::pusher::AppEvent;
use crate::pusher::data::to_pusher;

/// One event as the body writes it, with its name (what an app's
/// `webhook.events` selects by).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rendered {
    pub name: &'static str,
    pub json: String,
}

/// The webhook body: `{"time_ms":…,"events":[…]}`.
pub(super) fn body<'a>(time_ms: u128, events: impl Iterator<Item = &'a Rendered>) -> String {
    let mut body = String::from("{\"time_ms\":");
    body.push_str(&time_ms.to_string());
    body.push_str(",\"events\":[");
    for (i, event) in events.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&event.json);
    }
    body.push_str("]}");
    body
}

/// An event as Pusher's webhook body writes it, with its name.
pub(super) fn render(event: &AppEvent) -> Rendered {
    use serde_json::json;
    let (name, value) = match event {
        AppEvent::ChannelOccupied { channel } => (
            "channel_occupied",
            json!({"name": "channel_occupied", "channel": channel}),
        ),
        AppEvent::ChannelVacated { channel } => (
            "channel_vacated",
            json!({"name": "channel_vacated", "channel": channel}),
        ),
        AppEvent::MemberAdded { channel, user_id } => (
            "member_added",
            json!({"name": "member_added", "channel": channel, "user_id": user_id}),
        ),
        AppEvent::MemberRemoved { channel, user_id } => (
            "member_removed",
            json!({"name": "member_removed", "channel": channel, "user_id": user_id}),
        ),
        AppEvent::ClientEvent {
            channel,
            event,
            data,
            socket_id,
            user_id,
        } => {
            // `data` is a string, as the HTTP API's is: a client's object
            // travels as its JSON text.
            let mut value = json!({
                "name": "client_event",
                "channel": channel,
                "event": event,
                "data": to_pusher(data),
                "socket_id": socket_id,
            });
            if let (Some(user), Some(map)) = (user_id, value.as_object_mut()) {
                map.insert("user_id".into(), user.as_str().into());
            }
            ("client_event", value)
        }
        AppEvent::SubscriptionCount {
            channel,
            subscription_count,
        } => (
            "subscription_count",
            json!({"name": "subscription_count", "channel": channel, "subscription_count": subscription_count}),
        ),
        AppEvent::CacheMiss { channel } => (
            "cache_miss",
            json!({"name": "cache_miss", "channel": channel}),
        ),
    };
    Rendered {
        name,
        json: value.to_string(),
    }
}
