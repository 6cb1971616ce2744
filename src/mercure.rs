//! The Mercure protocol's parts, without I/O: topic selectors (exact, URI
//! Templates of the 0.x generation, WHATWG URL Patterns of 1.0), the
//! tokens' claims of both generations, the publish form, and an update's
//! life as a pushgate message (`update.rs`: the hub channel, ids, the SSE
//! event). The endpoints that use them are `transport/mercure`.

pub(crate) mod channels;
pub(crate) mod claims;
pub(crate) mod form;
pub(crate) mod selector;
pub(crate) mod subscriptions;
pub(crate) mod token;
pub(crate) mod update;
pub(crate) mod uri_template;

pub use token::KeyFileError;
