//! What a full per-connection queue means for its subscriber. A plain type:
//! the channel rules choose it (config), the inbox carries it out (hub).

use serde::Deserialize;

/// What happens to a subscriber whose queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowClient {
    /// Close it with a resume cursor.
    #[default]
    Disconnect,
    DropOldest,
    /// Keep only the latest message per channel.
    Conflate,
}
