//! `POST /apps/{id}/users/{user_id}/terminate_connections` (and the same
//! without `/apps/{id}`, as the Python library sends it): close every socket
//! signed in as the user, on every instance.
//!
//! The command is a message on the user's hub channel (`pusher/users.rs`)
//! with an event name no publisher may use, so it travels through the
//! broker like any message and reaches each instance that has a socket of
//! the user; sockets that are not signed in as the user never follow that
//! channel and stay open.

use serde_json::{Value, json};

use super::refusal::{Refused, bad};
use crate::model::Publish;
use crate::pusher::App;
use crate::pusher::users::{NO_HISTORY, TERMINATE_EVENT};
use crate::state::AppState;

/// Publish the terminate command of `user`; Pusher's answer, `{}`.
pub(crate) async fn terminate(state: &AppState, app: &App, user: &str) -> Result<Value, Refused> {
    let hub = app
        .user_hub(user)
        .ok_or_else(|| bad("Invalid user id: too long"))?;
    let publish = Publish {
        channel: hub,
        event: TERMINATE_EVENT.into(),
        data: crate::pusher::data::to_hub("{}"),
        key: None,
        history: NO_HISTORY,
        origin: None,
        binary: false,
    };
    state
        .publish(publish)
        .await
        .map_err(|e| Refused::Unavailable(format!("not delivered: {e}")))?;
    Ok(json!({}))
}
