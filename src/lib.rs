#![forbid(unsafe_code)]
//! pushgate: a TLS-terminating reverse proxy that adds realtime delivery.

pub mod conn_info;
pub mod reply;
