//! The plain types every layer shares: a message on its way in ([`Publish`])
//! and out ([`Message`]), channel and event names, the [`Cursor`], the parsed
//! form of templates and path patterns, and [`SlowClient`].
//!
//! The rule this module keeps: no I/O, no configuration, no imports from the
//! rest of the crate. Anything here can be used from any layer.

pub mod cursor;
pub mod deflated;
pub mod message;
pub mod path_pattern;
pub mod publish;
pub mod slow_client;
pub mod template;
pub mod topic_channel;
pub mod topic_update;

pub use cursor::Cursor;
pub use deflated::Deflated;
pub use message::{Message, valid_channel, valid_event};
pub use path_pattern::PathPattern;
pub use publish::{HistoryPolicy, Origin, Publish};
pub use slow_client::SlowClient;
pub use topic_channel::TopicChannel;
pub use topic_update::TopicUpdate;
