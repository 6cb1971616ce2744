//! The demo's "application": serves the demo page and answers the messages
//! browsers send through the gateway (`client_messages.forward_to: /inbound`).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

const PAGE: &str = include_str!("../../assets/demo.html");

/// Listen on a loopback port and serve until the process ends.
pub async fn start() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(serve);
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(%error, "demo application connection");
                }
            });
        }
    });
    Ok(addr)
}

async fn serve(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/" | "/index.html" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(PAGE.as_bytes()),
        ),
        "/inbound" => {
            let connection = req
                .headers()
                .get("x-pushgate-connection")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let data: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let answer = serde_json::json!({
                "received": data,
                "connection": connection,
                "answered_at": super::agents::now_ms(),
            });
            (
                StatusCode::OK,
                "application/json",
                Bytes::from(answer.to_string()),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found"),
        ),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(r)
}
