//! The floor: the least a server on pushgate's runtime can spend per
//! delivery, for `bench/cpu.sh` to measure pushgate against.
//!
//! It serves the same subscribers as pushgate (`GET /realtime/sse?channels=C`
//! and `/realtime/ws?channels=C` over HTTP/1.1, plain or through rustls) on
//! the same runtime layout (`src/loops.rs`: one single-threaded tokio runtime
//! per core, each connection on one of them for its whole life), takes
//! messages from the same publish API (`POST /publish` with a JSON array of
//! `{"channel", "data"}`), renders each message's SSE and WebSocket frames
//! once, and writes the frame to each subscriber's socket from a task per
//! subscriber: one write per delivery (with TLS, one rustls record), no
//! batching, no cursor, no limits, no metrics, no logic. What pushgate spends above
//! it is what its features cost.
//!
//! It is a benchmark's tool, part of `pushgate bench` (which shares no code
//! path with the gateway), not of the gateway: the floor runs none of the
//! gateway's code, only the crate's dependencies.
//!
//! ```sh
//! pushgate bench --floor 127.0.0.1:18580 --publish http://127.0.0.1:18590 \
//!     [--cert gw.crt --key gw.key]
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// A subscriber's socket, plain or under TLS.
trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

/// A subscriber on a loop: the queue of its writer task.
type Subscriber = mpsc::UnboundedSender<Arc<Frames>>;

/// A subscriber's writer, a task of the loop: one write (and, under TLS,
/// one flush: one record) per delivery. A task per subscriber, so that a
/// subscriber whose socket is full delays only itself: writing to every
/// socket in turn from the loop's own task stalled them all behind the
/// slowest reader, and on a loaded machine the floor lost messages.
fn writer(kind: Kind, mut socket: Box<dyn Socket>) -> Subscriber {
    let (tx, mut rx) = mpsc::unbounded_channel::<Arc<Frames>>();
    tokio::spawn(async move {
        while let Some(frames) = rx.recv().await {
            let frame = match kind {
                Kind::Sse => &frames.sse,
                Kind::Ws => &frames.ws,
            };
            if socket.write_all(frame).await.is_err() || socket.flush().await.is_err() {
                return;
            }
        }
    });
    tx
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sse,
    Ws,
}

/// One message, rendered once for every subscriber of its channel.
struct Frames {
    channel: String,
    sse: Bytes,
    ws: Bytes,
}

/// What a loop is told.
enum Event {
    /// A new connection, to open on this loop.
    Accepted(std::net::TcpStream),
    /// A subscriber whose opening is done.
    Subscribed(String, Kind, Box<dyn Socket>),
    Deliver(Arc<Frames>),
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serve as the floor until killed: subscribers on `listen` (through
/// rustls when `tls` names a certificate and key file), publishes on
/// `publish`.
pub fn run(
    listen: SocketAddr,
    publish: SocketAddr,
    tls: Option<(&Path, &Path)>,
) -> Result<(), String> {
    let tls = match tls {
        Some((cert, key)) => Some(acceptor(cert, key)?),
        None => None,
    };
    let loops = (1..=std::thread::available_parallelism().map_or(1, |n| n.get()))
        .map(|n| start_loop(n, tls.clone()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(async move {
            let public = TcpListener::bind(listen).await?;
            let admin = TcpListener::bind(publish).await?;
            let loops = Arc::new(loops);
            tokio::spawn(publish_listener(admin, loops.clone()));
            accept(public, &loops).await
        })
        .map_err(|e| e.to_string())
}

/// One loop: a thread with a single-threaded runtime, its subscribers by
/// channel, and the events that reach it.
fn start_loop(n: usize, tls: Option<TlsAcceptor>) -> std::io::Result<mpsc::UnboundedSender<Event>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let opened = tx.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("floor-loop-{n}"))
        .spawn(move || {
            runtime.block_on(async move {
                let mut channels: HashMap<String, Vec<Subscriber>> = HashMap::new();
                while let Some(event) = rx.recv().await {
                    match event {
                        Event::Accepted(stream) => {
                            // The opening is a task of this loop; the
                            // subscriber comes back as an event.
                            let (tls, opened) = (tls.clone(), opened.clone());
                            tokio::spawn(async move {
                                let Ok(stream) = TcpStream::from_std(stream) else {
                                    return;
                                };
                                let subscriber = match tls {
                                    Some(acceptor) => match acceptor.accept(stream).await {
                                        Ok(s) => open(Box::new(s)).await,
                                        Err(_) => None,
                                    },
                                    None => open(Box::new(stream)).await,
                                };
                                if let Some((channel, kind, socket)) = subscriber {
                                    let _ = opened.send(Event::Subscribed(channel, kind, socket));
                                }
                            });
                        }
                        Event::Subscribed(channel, kind, socket) => {
                            channels
                                .entry(channel)
                                .or_default()
                                .push(writer(kind, socket));
                        }
                        Event::Deliver(frames) => {
                            if let Some(subs) = channels.get_mut(&frames.channel) {
                                // A subscriber whose writer ended (the
                                // socket failed) is dropped.
                                subs.retain(|tx| tx.send(frames.clone()).is_ok());
                            }
                        }
                    }
                }
            })
        })?;
    Ok(tx)
}

/// Accept, and hand each connection to the next loop in turn (registered
/// with that loop's reactor there, as pushgate does).
async fn accept(
    listener: TcpListener,
    loops: &[mpsc::UnboundedSender<Event>],
) -> std::io::Result<()> {
    let mut next = 0;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        if let Some(tx) = loops.get(next % loops.len().max(1)) {
            let _ = tx.send(Event::Accepted(stream));
        }
        next += 1;
    }
}

/// Read the request head, answer it (SSE headers, or the WebSocket
/// handshake), and say which channel the subscriber wants.
async fn open(mut socket: Box<dyn Socket>) -> Option<(String, Kind, Box<dyn Socket>)> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = std::str::from_utf8(&head).ok()?;
    let target = text.lines().next()?.split(' ').nth(1)?;
    let (path, query) = target.split_once('?')?;
    let channel = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("channels="))?
        .to_string();
    let kind = if path.ends_with("/ws") {
        Kind::Ws
    } else {
        Kind::Sse
    };
    let reply = match kind {
        Kind::Sse => {
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n"
                .to_string()
        }
        Kind::Ws => {
            let key = text.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim())
            })?;
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
            )
        }
    };
    socket.write_all(reply.as_bytes()).await.ok()?;
    socket.flush().await.ok()?;
    Some((channel, kind, socket))
}

/// `POST /publish`: render each message's frames once and hand them to
/// every loop.
async fn publish_listener(listener: TcpListener, loops: Arc<Vec<mpsc::UnboundedSender<Event>>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let loops = loops.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let loops = loops.clone();
                async move {
                    let status =
                        if req.method() == http::Method::POST && req.uri().path() == "/publish" {
                            match req.into_body().collect().await {
                                Ok(body) => match publish(&body.to_bytes(), &loops) {
                                    Ok(()) => http::StatusCode::OK,
                                    Err(()) => http::StatusCode::BAD_REQUEST,
                                },
                                Err(_) => http::StatusCode::BAD_REQUEST,
                            }
                        } else {
                            http::StatusCode::NOT_FOUND
                        };
                    let mut resp = http::Response::new(Full::new(Bytes::from_static(b"{}")));
                    *resp.status_mut() = status;
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    channel: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

fn publish(body: &[u8], loops: &[mpsc::UnboundedSender<Event>]) -> Result<(), ()> {
    let messages: Vec<Message> = serde_json::from_slice(body).map_err(|_| ())?;
    for (seq, m) in messages.iter().enumerate() {
        let frames = Arc::new(render(&m.channel, seq, m.data.get()));
        for tx in loops {
            let _ = tx.send(Event::Deliver(frames.clone()));
        }
    }
    Ok(())
}

/// The envelope pushgate writes (`{"type":"message","channel",…,"data"}`),
/// as an SSE event and as an unmasked WebSocket text frame.
fn render(channel: &str, seq: usize, data: &str) -> Frames {
    let json = format!(
        "{{\"type\":\"message\",\"channel\":\"{channel}\",\"id\":\"{seq}\",\"data\":{data}}}"
    );
    let sse = Bytes::from(format!("id: {seq}\ndata: {json}\n\n"));
    let mut ws = BytesMut::with_capacity(json.len() + 10);
    ws.put_u8(0x81);
    match json.len() {
        n if n < 126 => ws.put_u8(n as u8),
        n if n <= 0xffff => {
            ws.put_u8(126);
            ws.put_u16(n as u16);
        }
        n => {
            ws.put_u8(127);
            ws.put_u64(n as u64);
        }
    }
    ws.put_slice(json.as_bytes());
    Frames {
        channel: channel.to_string(),
        sse,
        ws: ws.freeze(),
    }
}
