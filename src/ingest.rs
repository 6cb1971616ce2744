//! Ways in for messages besides the publish API: webhook rules (the
//! application's existing callbacks, turned into channel messages) and
//! response taps (publish when a proxied request succeeds). Both use the
//! template language in `template.rs`.

pub mod tap;
pub use crate::model::template;
pub mod webhook;

use crate::model::Publish;
use crate::model::{valid_channel, valid_event};
use crate::rules::ChannelRules;
use template::{Input, Template};

/// Largest admin request body (publish, webhooks): room for a big batch of
/// small messages, or one maximal message.
pub fn body_limit(max_message: usize) -> usize {
    max_message.saturating_mul(2).max(8 * 1024 * 1024)
}

/// The templates of one rule (webhook or tap) that make a message.
pub struct MessageTemplates {
    pub channel: Template,
    pub event: Option<Template>,
    pub data: Template,
}

/// Why a rule's templates could not make a message from one request.
#[derive(Debug, thiserror::Error)]
pub enum Unfilled {
    #[error("{key}: {reason}")]
    Template { key: &'static str, reason: String },
    #[error("data is {0} bytes, over realtime.max_message")]
    TooLarge(usize),
}

impl MessageTemplates {
    /// Fill the templates from `input` into a message ready for the broker.
    pub fn fill(
        &self,
        input: &Input<'_>,
        max_message: usize,
        rules: &ChannelRules,
    ) -> Result<Publish, Unfilled> {
        let bad = |key, reason: String| Unfilled::Template { key, reason };
        let channel = self
            .channel
            .render_text(input)
            .map_err(|e| bad("channel", e.to_string()))?;
        if !valid_channel(&channel) {
            return Err(bad(
                "channel",
                format!("{channel:?} is not a valid channel name"),
            ));
        }
        let event = match &self.event {
            Some(t) => t
                .render_text(input)
                .map_err(|e| bad("event", e.to_string()))?,
            None => "message".to_string(),
        };
        if !valid_event(&event) {
            return Err(bad("event", format!("{event:?} is not a valid event name")));
        }
        let data = self
            .data
            .render_json(input)
            .map_err(|e| bad("data", e.to_string()))?;
        let data =
            serde_json::value::to_raw_value(&data).map_err(|e| bad("data", e.to_string()))?;
        if data.get().len() > max_message {
            return Err(Unfilled::TooLarge(data.get().len()));
        }
        Ok(Publish {
            history: rules.history_for(&channel),
            channel: channel.into(),
            event: event.into(),
            data,
            key: None,
            origin: None,
            binary: false,
        })
    }
}
