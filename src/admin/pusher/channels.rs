//! The Pusher API's channel queries: `GET /apps/{id}/channels`,
//! `/channels/{name}` and `/channels/{name}/users`, answered from this
//! instance's hub (subscriptions) and from presence (members, shared by
//! every instance when the broker shares presence).
//!
//! Pusher's rules: `user_count` exists only for presence channels, so
//! asking a channel list for it without `filter_by_prefix=presence-`, or a
//! non-presence channel for it, is 400; so is asking a non-presence channel
//! for its users.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::info::{Counts, Info};
use super::refusal::{Refused, bad};
use crate::pusher::{App, Apps, ChannelKind};
use crate::state::AppState;

/// The first value of query parameter `name`.
fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn hub_channel(app: &App, name: &str) -> Result<Arc<str>, Refused> {
    app.hub_channel(name)
        .ok_or_else(|| bad("Invalid channel name"))
}

/// `GET /channels`: the app's occupied channels (here), by prefix. The
/// channels of another app whose `channel_prefix` extends this app's (an
/// app without one and an app with `b:`) are that app's, not this one's.
pub(crate) async fn list(
    state: &AppState,
    apps: &Apps,
    app: &App,
    query: &[(String, String)],
) -> Result<Value, Refused> {
    let own = app.config.channel_prefix.as_str();
    let others: Vec<&str> = apps
        .iter()
        .map(|a| a.config.channel_prefix.as_str())
        .filter(|p| p.len() > own.len() && p.starts_with(own))
        .collect();
    let filter = param(query, "filter_by_prefix").unwrap_or("");
    let info = Info::parse(param(query, "info"));
    if info.user_count && !filter.starts_with("presence-") {
        return Err(bad(
            "user_count may only be requested for presence channels: \
             give filter_by_prefix=presence-",
        ));
    }
    let prefix = format!("{}{filter}", app.config.channel_prefix);
    let mut channels = Map::new();
    for (hub, _) in state.hub.occupied(&prefix) {
        if others.iter().any(|p| hub.starts_with(p)) {
            continue;
        }
        let Some(name) = app.pusher_channel(&hub) else {
            continue;
        };
        let attributes = if info.any() {
            Counts::of(state, name, &hub).await.attributes(info)
        } else {
            Map::new()
        };
        channels.insert(name.to_owned(), Value::Object(attributes));
    }
    Ok(serde_json::json!({ "channels": channels }))
}

/// `GET /channels/{name}`: `occupied` and the attributes asked for.
pub(crate) async fn one(
    state: &AppState,
    app: &App,
    name: &str,
    query: &[(String, String)],
) -> Result<Value, Refused> {
    let hub = hub_channel(app, name)?;
    let info = Info::parse(param(query, "info"));
    if info.user_count && ChannelKind::of(name) != ChannelKind::Presence {
        return Err(bad(
            "Cannot retrieve the user count unless the channel is a presence channel",
        ));
    }
    let counts = Counts::of(state, name, &hub).await;
    let mut out = counts.attributes(info);
    out.insert("occupied".into(), counts.occupied().into());
    Ok(Value::Object(out))
}

/// `GET /channels/{name}/users`: the ids of a presence channel's members.
pub(crate) async fn users(state: &AppState, app: &App, name: &str) -> Result<Value, Refused> {
    let hub = hub_channel(app, name)?;
    if ChannelKind::of(name) != ChannelKind::Presence {
        return Err(bad("Users can only be retrieved for presence channels"));
    }
    let users: Vec<Value> = state
        .presence
        .list(&hub)
        .await
        .into_iter()
        .map(|id| serde_json::json!({ "id": id }))
        .collect();
    Ok(serde_json::json!({ "users": users }))
}
