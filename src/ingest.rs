//! Ways in for messages besides the publish API: webhook rules (the
//! application's existing callbacks, turned into channel messages) and
//! response taps (publish when a proxied request succeeds). Both use the
//! template language in `template.rs`.

pub mod tap;
pub mod template;
pub mod webhook;
