//! The stand-in application's HTTP mode: hyper reads each request (bodies
//! chunked or not, upgrades included) and a handler answers it, as a real
//! application framework does. Every target is recorded before the
//! handler runs, so a test can wait until a request has reached the
//! application instead of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use super::Record;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every answer in HTTP mode.
pub type Body = BoxBody<Bytes, BoxError>;

/// Any body as an answer's [`Body`].
pub fn body<B>(b: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed()
}

/// What a handler may use of its application.
#[derive(Clone)]
pub struct Context {
    /// The application's [`TestApp::release`](super::TestApp::release).
    pub release: Arc<Semaphore>,
}

type Answering = Pin<Box<dyn Future<Output = hyper::Response<Body>> + Send>>;

/// A handler, its body type erased.
pub(crate) type Handler = Arc<dyn Fn(Context, hyper::Request<Incoming>) -> Answering + Send + Sync>;

pub(crate) fn handler<F, Fut, B>(f: F) -> Handler
where
    F: Fn(Context, hyper::Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Arc::new(move |cx, req| {
        let answer = f(cx, req);
        Box::pin(async move { answer.await.map(body) })
    })
}

/// Serve one connection with hyper; `keep_alive` off closes it after one
/// request.
pub(crate) async fn serve<S>(stream: S, handler: &Handler, keep_alive: bool, app: &Record)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (handler, app) = (handler.clone(), app.clone());
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        if let Some(pq) = req.uri().path_and_query() {
            app.seen.lock().unwrap().push(pq.to_string());
        }
        let cx = Context {
            release: app.release.clone(),
        };
        let answer = handler(cx, req);
        async move { Ok::<_, std::convert::Infallible>(answer.await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(keep_alive)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await;
}
