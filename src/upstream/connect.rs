//! How hyper's client reaches one upstream's servers: plain TCP for
//! `http://`, TCP then TLS for `https://` (verified, see `tls.rs`), or a
//! unix socket for `unix:`. A unix server has no host to put in a URI, so
//! each gets a made-up authority (`unix-0.localhost`, …) that only this
//! connector knows and maps back to its path; the `Host` an application
//! sees is the one the proxy rules set, never that name.
//!
//! Every failure here is a connect failure to hyper (`is_connect()`): no
//! byte of the request reached an application, so the server is marked
//! down and the request may go to the next one. A handshake that fails
//! verification is one of them.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use http::uri::Authority;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::tls::TlsClient;

/// A unix server's made-up authority.
pub fn unix_authority(index: usize) -> Authority {
    // `unix-N.localhost` is always a valid authority.
    format!("unix-{index}.localhost")
        .parse()
        .unwrap_or_else(|_| Authority::from_static("unix.localhost"))
}

/// Why a server could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Tcp(Box<dyn std::error::Error + Send + Sync>),
    #[error("TLS handshake with {server} failed: {reason}")]
    Tls { server: String, reason: io::Error },
    #[error("TLS handshake with {server} timed out")]
    TlsTimeout { server: String },
    #[error("an https:// URI for an upstream without TLS settings")]
    NoTls,
    #[error("cannot connect to unix socket {path}: {reason}")]
    Unix { path: String, reason: io::Error },
    #[error("connect to unix socket {path} timed out")]
    UnixTimeout { path: String },
}

/// The connector of one upstream's hyper client.
#[derive(Clone)]
pub struct Connector {
    tcp: HttpConnector,
    tls: Option<TlsClient>,
    /// Made-up authority → socket path, for `unix:` servers.
    unix: Arc<[(Authority, PathBuf)]>,
    connect_timeout: Duration,
}

impl Connector {
    pub fn new(
        connect_timeout: Duration,
        tls: Option<TlsClient>,
        unix: Vec<(Authority, PathBuf)>,
    ) -> Connector {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_nodelay(true);
        // `https://` URIs come here too; TLS is layered on below.
        tcp.enforce_http(false);
        tcp.set_keepalive(Some(Duration::from_secs(60)));
        Connector {
            tcp,
            tls,
            unix: unix.into(),
            connect_timeout,
        }
    }

    fn socket_of(&self, uri: &Uri) -> Option<PathBuf> {
        let authority = uri.authority()?;
        self.unix
            .iter()
            .find(|(a, _)| a == authority)
            .map(|(_, p)| p.clone())
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.tcp, cx)
            .map_err(|e| ConnectError::Tcp(Box::new(e)))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let timeout = self.connect_timeout;
        if let Some(path) = self.socket_of(&uri) {
            return Box::pin(unix(path, timeout));
        }
        let tcp = tower_service::Service::call(&mut self.tcp, uri.clone());
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let tls = self.tls.clone();
        Box::pin(async move {
            let stream = tcp.await.map_err(|e| ConnectError::Tcp(Box::new(e)))?;
            if !https {
                return Ok(Conn::Tcp(stream));
            }
            let tls = tls.ok_or(ConnectError::NoTls)?;
            let host = uri.host().unwrap_or_default();
            let server = uri.authority().map_or(host, Authority::as_str).to_owned();
            let name = match &tls.server_name {
                Some(name) => name.clone(),
                None => ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                    .map_err(|e| ConnectError::Tls {
                        server: server.clone(),
                        reason: io::Error::new(io::ErrorKind::InvalidInput, e),
                    })?
                    .to_owned(),
            };
            let handshake = TlsConnector::from(tls.config).connect(name, stream.into_inner());
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(stream)) => Ok(Conn::Tls(Box::new(TokioIo::new(stream)))),
                Ok(Err(reason)) => Err(ConnectError::Tls { server, reason }),
                Err(_) => Err(ConnectError::TlsTimeout { server }),
            }
        })
    }
}

#[cfg(unix)]
async fn unix(path: PathBuf, timeout: Duration) -> Result<Conn, ConnectError> {
    let shown = path.display().to_string();
    match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(&path)).await {
        Ok(Ok(stream)) => Ok(Conn::Unix(TokioIo::new(stream))),
        Ok(Err(reason)) => Err(ConnectError::Unix {
            path: shown,
            reason,
        }),
        Err(_) => Err(ConnectError::UnixTimeout { path: shown }),
    }
}

#[cfg(not(unix))]
async fn unix(path: PathBuf, _: Duration) -> Result<Conn, ConnectError> {
    Err(ConnectError::Unix {
        path: path.display().to_string(),
        reason: io::Error::new(io::ErrorKind::Unsupported, "no unix sockets here"),
    })
}

/// One connection to a server, whichever way it was reached.
pub enum Conn {
    Tcp(TokioIo<TcpStream>),
    /// Boxed: a TLS session is a kilobyte, the other streams a few words.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
    #[cfg(unix)]
    Unix(TokioIo<tokio::net::UnixStream>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Tcp(s) => s.connected(),
            Conn::Tls(s) => s.inner().get_ref().0.connected(),
            #[cfg(unix)]
            Conn::Unix(_) => Connected::new(),
        }
    }
}

/// The same call on whichever stream it is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Tcp($s) => $e,
            Conn::Tls(boxed) => {
                let $s = &mut **boxed;
                $e
            }
            #[cfg(unix)]
            Conn::Unix($s) => $e,
        }
    };
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Tcp(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Conn::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
}
