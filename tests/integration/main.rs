//! Integration tests: the real gateway on port 0, real sockets, real clients.
//! One binary (one link) for the whole suite keeps CI fast.

mod common;

mod abuse;
mod admin_browsers;
mod auth;
mod binary;
mod buffering;
mod cli;
mod client_http;
mod cluster;
mod cors;
mod delivered;
mod differential;
mod hardening;
mod ingest;
mod jwt_claims;
mod limits;
mod live_state;
mod mercure;
mod poll;
mod presence;
mod proxy;
mod publish;
mod pusher_api;
mod pusher_channels;
mod pusher_e2e;
mod pusher_ws;
mod pusher_xhr;
mod queue;
mod relay;
mod reload;
mod reload_safety;
mod replay;
mod routes;
mod session;
mod shutdown;
mod slow;
mod sse;
mod upstreams;
mod upstreams_tls;
mod ws;
mod ws_deflate;
mod ws_h2;
mod ws_h2_limits;
mod ws_h2_tunnels;
