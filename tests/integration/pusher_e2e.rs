//! Pusher end to end, with the real clients: the stand-in application
//! (`tests/pusher/app.js`, the official Node `pusher` library) behind the
//! gateway, Laravel Echo's authorization road through the proxy, and the
//! application's webhooks checked by the library's own validator.

mod auth_road;
mod cluster;
mod counts;
mod cross;
pub(crate) mod standin;
mod users;
mod webhooks;

pub use crate::common::*;
pub use standin::{APP_KEY, APP_SECRET, StandIn, gateway, gateway_in};
