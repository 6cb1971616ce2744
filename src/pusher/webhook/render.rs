//! An app event as Pusher's webhook body writes it: `{"name":…,"channel":…}`
//! and the fields of its kind, rendered once when it enters a batch.

use crate::pusher::AppEvent;
use crate::pusher::data::to_pusher;

/// An event as Pusher's webhook body writes it, with its name.
pub(super) fn render(event: &AppEvent) -> (&'static str, String) {
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
    };
    (name, value.to_string())
}
