//! The echo application behind the gateway, the common [`TestApp`] in HTTP
//! mode with one behaviour per path:
//! `/echo` answers with what it received, `/slow` never answers in time,
//! `/events` streams SSE itself, `/ws` is a WebSocket echo, `/big` sends a
//! large body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::TestApp;

type B = BoxBody<Bytes, Infallible>;

/// The echo application (see the top of this file).
pub async fn app() -> TestApp {
    TestApp::http(|_, req| async move { handle(req).await.unwrap_or_else(|e| match e {}) })
        .start()
        .await
}

/// [`app`]'s address.
pub async fn start() -> SocketAddr {
    app().await.addr()
}

fn full(b: impl Into<Bytes>) -> B {
    Full::new(b.into()).boxed()
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<B>, Infallible> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(Response::new(full("late")))
        }
        "/fail" => {
            let mut resp = Response::new(full("{\"error\":\"boom\"}"));
            *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            Ok(resp)
        }
        "/delay" => {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(Response::new(full("done after delay")))
        }
        "/stall" => {
            // One chunk, then silence.
            let stream = futures_util::stream::unfold(0u32, |n| async move {
                if n > 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from("first\n"))),
                    n + 1,
                ))
            });
            Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))))
        }
        "/events" => {
            let stream = futures_util::stream::unfold(0u32, |n| async move {
                if n >= 3 {
                    return None;
                }
                if n > 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let chunk = Bytes::from(format!("data: tick {n}\n\n"));
                Some((Ok::<_, Infallible>(Frame::data(chunk)), n + 1))
            });
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            resp.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            Ok(resp)
        }
        "/ws" => {
            let key = req.headers().get("sec-websocket-key").cloned();
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                        TokioIo::new(up),
                        tokio_tungstenite::tungstenite::protocol::Role::Server,
                        None,
                    )
                    .await;
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_text() && ws.send(m).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                key.map(|k| k.as_bytes().to_vec())
                    .unwrap_or_default()
                    .as_slice(),
            );
            let resp = Response::builder()
                .status(101)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-accept", accept)
                .body(full(""))
                .unwrap();
            Ok(resp)
        }
        _ => {
            let method = req.method().to_string();
            let version = format!("{:?}", req.version());
            let uri = req.uri().to_string();
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let v = serde_json::json!({
                "method": method, "uri": uri, "version": version, "headers": headers,
                "body_len": body.len(), "body": String::from_utf8_lossy(&body[..body.len().min(1024)]),
            });
            let mut resp = Response::new(full(v.to_string()));
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp.headers_mut()
                .insert("x-backend", "yes".parse().unwrap());
            Ok(resp)
        }
    }
}
