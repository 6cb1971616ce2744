//! A presence announcement as a Pusher socket reads it: the data of the
//! hub's `presence` event (`broker/presence.rs`). Its own module because
//! two readers share it: a presence channel's member added or removed
//! (`deliver.rs`) and a watched user's online or offline (`user.rs`).

use serde::Deserialize;
use serde_json::value::RawValue;

/// `{"action":"join"|"leave","subject":…,"info":…}`.
#[derive(Deserialize)]
pub(super) struct Announcement<'a> {
    pub(super) action: &'a str,
    pub(super) subject: String,
    /// What a joining member shows (a JSON value, kept as its text).
    #[serde(default, borrow)]
    pub(super) info: Option<&'a RawValue>,
}
