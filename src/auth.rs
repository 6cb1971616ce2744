//! Who a client is. Token verification fills an [`Identity`]; channel rules
//! (`rules.rs`) decide what that identity may do.

use std::time::SystemTime;

/// A verified client identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Token subject (`sub`): the client key for limits and `owner` rules.
    pub subject: String,
    /// Channel patterns from the token's `channels` claim.
    pub channels: Vec<String>,
    /// When the token stops being valid.
    pub expires: Option<SystemTime>,
}
