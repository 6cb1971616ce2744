//! The admin listener: where the application (or ops) talks to pushgate.
//! Plain HTTP, bound to loopback by default: `POST /publish`, `GET /healthz`,
//! `GET /readyz`, `GET /stats`, `GET /dashboard`, and the Pusher HTTP API
//! (`/apps/{id}/…`, `pusher.rs`) when Pusher apps are configured.
//!
//! Every request but the health probes is judged first as a browser's
//! (`browsers.rs`: Host, Origin, Sec-Fetch-Site), then by admin key or
//! loopback peer; the JSON endpoints take JSON bodies only. Pusher API
//! requests are judged as a browser's too, but their app's signature takes
//! the place of the admin key.

mod body;
mod browsers;
pub mod dashboard;
pub mod publish;
mod pusher;
pub mod webhook;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::auth::{AdminRefusal, Authenticator};
use crate::reply::{self, Body};
use crate::state::AppState;

pub async fn route(state: AppState, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    // Signed by the app's secret instead of an admin key (`pusher.rs`);
    // `/users/…` is a Pusher library's path without the app prefix.
    if (path.starts_with("/apps/") || path.starts_with("/users/"))
        && !state.settings().pusher.is_empty()
    {
        return pusher::serve(state, req).await;
    }
    // Health probes carry no secrets and must work for load balancers without a key.
    if path != "/healthz" && path != "/readyz" {
        let settings = state.settings();
        if let Err(refused) = browsers::check(&req, settings.auth.admin_keyless()) {
            return refused.response();
        }
        let peer = req
            .extensions()
            .get::<crate::conn_info::ConnInfo>()
            .map(|c| c.peer)
            // On a `[::]` listener an IPv4 peer shows as ::ffff:a.b.c.d,
            // and IPv4 loopback must count as loopback there too.
            .map(|p| std::net::SocketAddr::new(p.ip().to_canonical(), p.port()));
        let refused = match peer {
            Some(peer) => settings
                .auth
                .check_admin(&dashboard::auth_headers(&req), peer)
                .err(),
            None => Some(AdminRefusal::NotLoopback),
        };
        match refused {
            None => {}
            Some(AdminRefusal::BadKey) => {
                let mut r = reply::error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "admin key required: Authorization: Bearer <key>",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
            Some(AdminRefusal::NotLoopback) => {
                return reply::error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "no admin_keys configured: the admin API only answers loopback peers",
                );
            }
        }
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/publish") => publish(state, req).await,
        (&Method::POST, p) if p.starts_with("/publish/") => {
            let channel = p["/publish/".len()..].to_owned();
            publish_bytes(state, req, &channel).await
        }
        (&Method::GET, "/metrics") => {
            let mut text = state
                .metrics
                .encode(&state.stats, state.hub.channel_count());
            // Per upstream server, from the servers in force, before the end marker.
            let upstreams = state.settings().upstreams.encode_metrics();
            match text.rfind("# EOF") {
                Some(at) => text.insert_str(at, &upstreams),
                None => text.push_str(&upstreams),
            }
            let mut r = Response::new(reply::full(text));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::POST, "/disconnect") => disconnect(state, req).await,
        (&Method::GET, p) if p.starts_with("/channels/") => {
            channel_info(&state, &p["/channels/".len()..]).await
        }
        (&Method::GET, "/dashboard") => dashboard::page(),
        (&Method::GET, "/dashboard/events") => dashboard::events(state),
        (&Method::GET, "/healthz") => {
            reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (&Method::GET, "/readyz") => readyz(&state),
        (&Method::GET, "/stats") => {
            let mut v = state.stats.snapshot();
            v["channels"] = state.hub.channel_count().into();
            v["upstreams"] = state.settings().upstreams.snapshot();
            reply::json(StatusCode::OK, &v)
        }
        (_, "/publish" | "/healthz" | "/readyz" | "/stats" | "/metrics" | "/disconnect") => {
            reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "wrong method for this path",
            )
        }
        _ => webhook(state, req).await,
    }
}

/// `GET /channels/{name}`: local subscribers and retained history.
async fn channel_info(state: &AppState, name: &str) -> Response<Body> {
    if !crate::hub::message::valid_channel(name) {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_channel",
            "invalid channel name",
        );
    }
    let (history, oldest) = state.broker.history_info(name).await;
    let presence = match state.settings().rules.find(name) {
        Some(r) if r.presence => Some(state.presence.list(name).await),
        _ => None,
    };
    let settings = state.settings();
    let rule = settings.rules.find(name);
    reply::json(
        StatusCode::OK,
        &serde_json::json!({
            "channel": name,
            "subscribers": state.hub.subscriber_count(name),
            "queued": state.hub.queued(name),
            "history": { "length": history, "oldest_id": oldest.map(|o| o.to_string()) },
            "rule": rule.map(|r| r.source.as_str()),
            "presence": presence,
        }),
    )
}

/// `POST /disconnect` with `{"subject": "…"}` or `{"connection": id}`.
async fn disconnect(state: AppState, req: Request<Incoming>) -> Response<Body> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Target {
        subject: Option<String>,
        connection: Option<u64>,
    }
    if let Err(refused) = browsers::check_json(req.headers()) {
        return refused.response();
    }
    let (_, body) = match body::read(req, 64 * 1024).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let target: Target = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return reply::error(StatusCode::BAD_REQUEST, "bad_json", e),
    };
    let n = match (target.subject, target.connection) {
        (Some(s), None) => state.connections.disconnect_subject(&s),
        (None, Some(id)) => usize::from(state.connections.disconnect_id(id)),
        _ => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give exactly one of `subject` or `connection`",
            );
        }
    };
    reply::json(StatusCode::OK, &serde_json::json!({ "disconnected": n }))
}

/// Paths from `webhooks:` rules.
async fn webhook(state: AppState, req: Request<Incoming>) -> Response<Body> {
    let settings = state.settings();
    let path = req.uri().path().to_string();
    if let Some((rule, params)) = settings.webhooks.find(req.method(), &path) {
        return webhook::handle(&state, &settings, rule, params, req).await;
    }
    if settings.webhooks.path_known(&path) {
        return reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "wrong method for this webhook",
        );
    }
    reply::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such admin endpoint or webhook",
    )
}

fn readyz(state: &AppState) -> Response<Body> {
    let draining = state.lifecycle.draining().is_cancelled();
    let broker = state.broker.is_ready();
    let reload_failed = state
        .stats
        .reload_failed
        .load(std::sync::atomic::Ordering::Relaxed);
    // A refused reload leaves the previous config serving: report it, but stay in rotation.
    let ready = !draining && broker;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply::json(
        status,
        &serde_json::json!({"ready": ready, "draining": draining, "broker": broker, "last_reload_failed": reload_failed}),
    )
}

/// `POST /publish/{channel}`: the body, `application/octet-stream`, is
/// one binary message's bytes (`publish::raw`).
async fn publish_bytes(state: AppState, req: Request<Incoming>, channel: &str) -> Response<Body> {
    let settings = state.settings();
    let octets = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"));
    if !octets {
        return reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the bytes as Content-Type: application/octet-stream (or JSON to POST /publish)",
        );
    }
    let q = crate::model::template::query_of(req.uri());
    let named = |query: &str, field: &str| {
        q.get(query).cloned().or_else(|| {
            req.headers()
                .get(field)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
    };
    let (event, id) = (
        named("event", "x-pushgate-event"),
        named("id", "x-pushgate-id"),
    );
    let max = settings.config.realtime.max_message;
    let (parts, body) = match body::read(req, max).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let batch = match publish::raw(channel, event, id, &body, &settings) {
        Ok(batch) => batch,
        Err(publish::Rejected(status, code, msg)) => return reply::error(status, code, msg),
    };
    let key = Authenticator::admin_key_of(&parts.headers);
    if let Err(l) = state.limits.publish(key, batch.len()) {
        return reply::rate_limited(
            l.retry_after,
            &format!("rate limit exceeded ({})", l.kind.label()),
        );
    }
    match publish::publish_all(&state, batch).await {
        Ok(v) => reply::json(StatusCode::OK, &v),
        Err(publish::Rejected(status, code, msg)) => reply::error(status, code, msg),
    }
}

async fn publish(state: AppState, req: Request<Incoming>) -> Response<Body> {
    let settings = state.settings();
    if let Err(refused) = browsers::check_json(req.headers()) {
        return refused.response();
    }
    let limit = crate::ingest::body_limit(settings.config.realtime.max_message);
    let (parts, body) = match body::read(req, limit).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let headers = parts.headers;
    let batch = match publish::parse(&body, &settings) {
        Ok(batch) => batch,
        Err(publish::Rejected(status, code, msg)) => return reply::error(status, code, msg),
    };
    let key = Authenticator::admin_key_of(&headers);
    if let Err(l) = state.limits.publish(key, batch.len()) {
        return reply::rate_limited(
            l.retry_after,
            &format!("rate limit exceeded ({})", l.kind.label()),
        );
    }
    let result = publish::publish_all(&state, batch).await;
    match result {
        Ok(v) => reply::json(StatusCode::OK, &v),
        Err(publish::Rejected(status, code, msg)) => reply::error(status, code, msg),
    }
}
