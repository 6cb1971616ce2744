//! One connection to a server, the unit of its pool (`pool.rs`) whichever
//! engine carries the request: plain TCP, TLS over it for an `https://`
//! server (verified with the upstream's `tls:` settings, `tls.rs`), or a
//! unix socket for a `unix:` one.
//!
//! Whether an idle one may carry the next request ([`BackendConn::is_quiet`])
//! is asked of both layers: the socket (bytes the kernel holds, seen with
//! `MSG_PEEK`) and, for TLS, what rustls has already taken in and decrypted.
//! A hostile server's extra bytes must never be read as the next client's
//! answer: a TLS record is either still in the socket, or decrypted (and
//! then seen here); one half taken in cannot become plaintext without the
//! rest, which comes through the socket.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How an `https://` server is reached (TLS over each pooled connection).
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ClientConfig>,
    /// Sent as SNI and verified: `tls.server_name`, else the URL's host.
    pub name: ServerName<'static>,
    /// The server as logs name it (its URL).
    pub shown: String,
}

pub enum BackendConn {
    Tcp(TcpStream),
    /// Boxed: a TLS session is a kilobyte, a socket a few words.
    Tls(Box<TlsStream<TcpStream>>),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl BackendConn {
    fn socket(&self) -> socket2::SockRef<'_> {
        match self {
            BackendConn::Tcp(s) => socket2::SockRef::from(s),
            BackendConn::Tls(s) => socket2::SockRef::from(s.get_ref().0),
            #[cfg(unix)]
            BackendConn::Unix(s) => socket2::SockRef::from(s),
        }
    }

    /// The same connection, registered with this thread's reactor instead
    /// of the one it was opened on (`loops.rs`). A TLS one is left as it
    /// is: rustls's stream cannot be taken apart and put together again,
    /// so the pool never moves one.
    pub fn moved_here(self) -> io::Result<BackendConn> {
        match self {
            BackendConn::Tcp(s) => Ok(BackendConn::Tcp(TcpStream::from_std(s.into_std()?)?)),
            #[cfg(unix)]
            BackendConn::Unix(s) => Ok(BackendConn::Unix(tokio::net::UnixStream::from_std(
                s.into_std()?,
            )?)),
            tls => Ok(tls),
        }
    }

    /// Whether nothing has come that no request asked for (and the
    /// connection is not closed): the kernel holds no byte, and rustls no
    /// decrypted one.
    pub fn is_quiet(&mut self) -> bool {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        // Asked of the socket itself, not through tokio's readiness flag,
        // which a short read cleared (see `pool.rs`).
        match self.socket().peek(&mut probe) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            _ => return false,
        }
        match self {
            BackendConn::Tls(s) => {
                let conn = s.get_mut().1;
                if conn.process_new_packets().is_err() {
                    return false;
                }
                let mut byte = [0u8; 1];
                matches!(conn.reader().read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            _ => true,
        }
    }
}

impl AsyncRead for BackendConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendConn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            BackendConn::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            #[cfg(unix)]
            BackendConn::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendConn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            BackendConn::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            #[cfg(unix)]
            BackendConn::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendConn::Tcp(s) => Pin::new(s).poll_flush(cx),
            BackendConn::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            #[cfg(unix)]
            BackendConn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendConn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            BackendConn::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            #[cfg(unix)]
            BackendConn::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendConn::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            BackendConn::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            #[cfg(unix)]
            BackendConn::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BackendConn::Tcp(s) => s.is_write_vectored(),
            BackendConn::Tls(s) => s.is_write_vectored(),
            #[cfg(unix)]
            BackendConn::Unix(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS connection to a server that writes `first`, then `then`, and
    /// keeps the connection open.
    async fn tls_pair(first: &'static [u8], then: &'static [u8]) -> BackendConn {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = CertificateDer::from(key.cert.der().to_vec());
        let private =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], private)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut req = [0u8; 1];
            tls.read_exact(&mut req).await.unwrap();
            // One write, one TLS record: taken in whole, it is decrypted
            // whole, and what the client does not read stays in rustls.
            tls.write_all(&[first, then].concat()).await.unwrap();
            tls.flush().await.unwrap();
            std::future::pending::<()>().await;
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = BackendConn::Tls(Box::new(
            tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(name, tcp)
                .await
                .unwrap(),
        ));
        conn.write_all(b"?").await.unwrap();
        let mut answer = vec![0u8; first.len()];
        conn.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer, first);
        // What else the server sent has had time to arrive.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        conn
    }

    #[tokio::test]
    async fn a_quiet_tls_connection_is_quiet() {
        let mut conn = tls_pair(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", b"").await;
        assert!(conn.is_quiet());
    }

    #[tokio::test]
    async fn bytes_after_the_answer_are_seen_in_the_socket_or_in_rustls() {
        let mut conn = tls_pair(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray",
        )
        .await;
        assert!(
            !conn.is_quiet(),
            "a stray answer would reach the next client"
        );
    }
}
