//! SSE subscribers over HTTP/2 (`--h2 --streams N`): N streams share one
//! connection, as a browser's tabs share one connection to a site. One task
//! per connection dials and handshakes; each stream is a task of its own
//! with its own tally, so order and duplicates are still checked per
//! subscriber.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;

use super::net::Dialer;
use super::progress::Progress;
use super::subscriber::{Outcome, Ready, Tally};

/// One connection and its streams: `paths[k]` is stream k's request path,
/// `readies[k]` its connected signal. Returns every stream's tally.
pub async fn connection(
    dialer: Arc<Dialer>,
    i: usize,
    paths: Vec<String>,
    readies: Vec<Ready>,
    epoch: Instant,
    stop: CancellationToken,
    progress: Arc<Progress>,
) -> Vec<Tally> {
    let fail = |readies: Vec<Ready>, n: usize| {
        for r in readies {
            let _ = r.send(Outcome::Failed);
        }
        (0..n).map(|_| Tally::new(progress.clone())).collect()
    };
    let Ok(io) = dialer.dial(i).await else {
        return fail(readies, paths.len());
    };
    progress
        .sockets
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Ok((sender, conn)) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(io),
    )
    .await
    else {
        return fail(readies, paths.len());
    };
    let driver = tokio::spawn(conn);
    let scheme = if dialer.is_tls() { "https" } else { "http" };
    let authority = format!("{}:{}", dialer.host, dialer.addr.port());
    let mut streams = tokio::task::JoinSet::new();
    for (path, ready) in paths.into_iter().zip(readies) {
        let uri = format!("{scheme}://{authority}{path}");
        let (sender, stop, progress) = (sender.clone(), stop.clone(), progress.clone());
        streams.spawn(async move {
            let mut tally = Tally::new(progress);
            stream(sender, &uri, &mut tally, epoch, ready, &stop).await;
            tally
        });
    }
    let mut tallies = Vec::new();
    while let Some(t) = streams.join_next().await {
        if let Ok(t) = t {
            tallies.push(t);
        }
    }
    driver.abort();
    tallies
}

async fn stream(
    mut sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    uri: &str,
    tally: &mut Tally,
    epoch: Instant,
    ready: Ready,
    stop: &CancellationToken,
) -> Option<()> {
    let req = http::Request::get(uri)
        .header("accept", "text/event-stream")
        .body(Empty::new())
        .ok();
    let resp = match req {
        Some(req) => sender.send_request(req).await.ok(),
        None => None,
    };
    let Some(resp) = resp else {
        let _ = ready.send(Outcome::Failed);
        return None;
    };
    if !resp.status().is_success() {
        let _ = ready.send(Outcome::Status(resp.status().as_u16()));
        return None;
    }
    let _ = ready.send(Outcome::Connected);
    let mut body = resp.into_body();
    let mut pending: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let frame = tokio::select! {
            biased;
            f = body.frame() => f?.ok()?,
            _ = stop.cancelled() => return Some(()),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        record_lines(&mut pending, tally, epoch);
    }
}

/// Record the `data:` lines complete in `pending`, keeping a partial last
/// line for the next DATA frame (a frame boundary may split an event).
fn record_lines(pending: &mut Vec<u8>, tally: &mut Tally, epoch: Instant) {
    let Some(end) = memchr::memrchr(b'\n', pending) else {
        return;
    };
    for line in pending[..end].split(|b| *b == b'\n') {
        if line.starts_with(b"data:") {
            tally.record(line, epoch);
        }
    }
    pending.drain(..=end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_split_over_frames_is_counted_once() {
        let mut tally = Tally::new(Arc::new(Progress::default()));
        let mut pending = Vec::new();
        let event = b"id: 1\ndata: {\"n\":1,\"t\":5,\"p\":\"xx\"}\n\ndata: {\"n\":2,\"t\":6}\n\n";
        let (a, b) = event.split_at(20);
        pending.extend_from_slice(a);
        record_lines(&mut pending, &mut tally, Instant::now());
        assert_eq!(tally.received, 0);
        pending.extend_from_slice(b);
        record_lines(&mut pending, &mut tally, Instant::now());
        assert_eq!(tally.received, 2);
        assert!(pending.is_empty());
    }
}
