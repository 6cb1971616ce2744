//! A stand-in application with ONE worker, as a gunicorn sync worker or a
//! one-process PHP-FPM pool: it accepts a connection, serves its one
//! request to the end (the whole answer written to the socket), closes it,
//! and only then accepts the next. Whatever holds its request holds it for
//! everybody.
//!
//! Paths: `/ping` answers `pong`; `/big` sends [`BIG`] bytes of
//! [`pattern`] (with a length, or chunked with `?chunked`; as an event
//! stream with `?sse`, marked `X-Accel-Buffering: no` with `?accel`, and
//! that field named in `Connection` too with `?accel-named`); `/upload`
//! answers `{length}:{sum of the bytes}` of the body it read; `/events`
//! (an event stream), `/drip` (`X-Accel-Buffering: no`) and `/plain-drip`
//! send a first part, wait for a permit of `release`, then end; `/die`
//! promises [`BIG`] bytes, sends 1 MiB, and at a permit of `release`
//! drops the connection.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tokio::sync::Semaphore;

use crate::common::TestApp;
use crate::common::app::{Body, BoxError, Context};

/// The one-worker application: a [`TestApp`] whose `finished()` counts the
/// connections it has finished with (answer written, socket closed) and
/// whose `release` ends `/events`, `/drip` and `/plain-drip`.
pub(crate) type Worker = TestApp;

/// The size of `/big`: more than every socket buffer between the worker
/// and a client that stopped reading can take (loopback autotuning lets
/// them take about 8 MiB), so that an unbuffered answer surely holds the
/// worker.
pub(crate) const BIG: usize = 32 * 1024 * 1024;

/// The bytes of `/big`, made once.
pub(crate) fn big_body() -> &'static Bytes {
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    BODY.get_or_init(|| (0..BIG).map(pattern).collect::<Vec<u8>>().into())
}

type B = Body;

/// The byte at `i` of `/big`.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// The one-worker application: the common [`TestApp`] in HTTP mode, one
/// connection at a time.
pub(crate) async fn one_worker() -> TestApp {
    // Made before the first request: making 32 MiB in an unoptimised test
    // build on a loaded machine can take longer than the upstream's 2 s
    // timeout, which turned the first `/big` into a 504.
    big_body();
    TestApp::http(handle).one_at_a_time().start().await
}

fn full(b: impl Into<Bytes>) -> B {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn big(chunked: bool) -> Response<B> {
    let chunks = (0..BIG / 65536)
        .map(|k| Ok::<_, BoxError>(Frame::data(big_body().slice(k * 65536..(k + 1) * 65536))));
    let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed();
    let mut resp = Response::new(body);
    if !chunked {
        resp.headers_mut()
            .insert("content-length", BIG.to_string().parse().unwrap());
    }
    resp
}

/// `/big` as an event stream (`?sse`) or marked `X-Accel-Buffering: no`
/// (`?accel`; `?accel-named` also names it in `Connection`).
fn marked(query: &str) -> Response<B> {
    let mut resp = big(false);
    let (name, value) = match query {
        "sse" => ("content-type", "text/event-stream"),
        _ => ("x-accel-buffering", "no"),
    };
    resp.headers_mut().insert(name, value.parse().unwrap());
    if query == "accel-named" {
        // The switch also named hop-by-hop: still the application's word
        // to the proxy, on both engines alike.
        resp.headers_mut()
            .insert("connection", "close, x-accel-buffering".parse().unwrap());
    }
    resp
}

/// A first part, then the end once a permit of `release` is given.
fn drip(release: Arc<Semaphore>, first: &'static str, last: &'static str) -> B {
    let stream = futures_util::stream::unfold(0u8, move |n| {
        let release = release.clone();
        async move {
            match n {
                0 => Some((Ok::<_, BoxError>(Frame::data(Bytes::from(first))), 1)),
                1 => {
                    release.acquire().await.ok()?.forget();
                    Some((Ok(Frame::data(Bytes::from(last))), 2))
                }
                _ => None,
            }
        }
    });
    StreamBody::new(stream).boxed()
}

async fn handle(s: Context, req: Request<Incoming>) -> Response<B> {
    let chunked = req.uri().query() == Some("chunked");
    let path = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
    match path.as_str() {
        "ping" => Response::new(full("pong")),
        "big" => match req.uri().query() {
            Some(q @ ("sse" | "accel" | "accel-named")) => marked(q),
            _ => big(chunked),
        },
        "upload" => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Response::new(full("broken")),
            };
            let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
            Response::new(full(format!("{}:{sum}", body.len())))
        }
        "events" => {
            let mut resp = Response::new(drip(s.release, "data: one\n\n", "data: two\n\n"));
            resp.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            resp
        }
        "drip" | "plain-drip" => {
            let mut resp = Response::new(drip(s.release, "first|", "last"));
            if path == "drip" {
                resp.headers_mut()
                    .insert("x-accel-buffering", "no".parse().unwrap());
            }
            resp
        }
        "die" => {
            let release = s.release.clone();
            let stream = futures_util::stream::unfold(0u8, move |n| {
                let release = release.clone();
                async move {
                    match n {
                        0 => Some((Ok(Frame::data(Bytes::from(vec![7u8; 1024 * 1024]))), 1)),
                        1 => {
                            release.acquire().await.ok()?.forget();
                            Some((
                                Err::<Frame<Bytes>, BoxError>("the application died".into()),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            let mut resp = Response::new(StreamBody::new(stream).boxed());
            resp.headers_mut()
                .insert("content-length", BIG.to_string().parse().unwrap());
            resp
        }
        _ => {
            let mut resp = Response::new(full("no such path"));
            *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
            resp
        }
    }
}
