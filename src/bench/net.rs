//! Client-side connections for the load generator: TCP from a chosen
//! loopback source address (one address has ~28k ephemeral ports), optionally
//! wrapped in TLS that trusts a given CA or, for local benchmarks, anything.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

/// A byte stream to the server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Dialer {
    pub addr: SocketAddr,
    pub host: String,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// Loopback source addresses used round-robin (127.0.0.1 ..= 127.0.0.16):
/// each has its own ephemeral ports, so sockets left in TIME_WAIT by an
/// earlier run do not exhaust them.
const SOURCES: usize = 16;

impl Dialer {
    pub fn new(addr: SocketAddr, host: String, tls: bool) -> Dialer {
        let tls = tls.then(|| {
            let config = rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert))
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        });
        Dialer { addr, host, tls }
    }

    /// Connect subscriber number `i`, spreading sources over 127.0.0.x.
    pub async fn dial(&self, i: usize) -> std::io::Result<Box<dyn Io>> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let IpAddr::V4(v4) = self.addr.ip() {
            if v4.is_loopback() {
                let n = (i % SOURCES) as u8;
                socket.bind(SocketAddr::new(IpAddr::from([127, 0, 0, 1 + n]), 0))?;
            }
        }
        let tcp: TcpStream = socket.connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(connector) => {
                let name =
                    ServerName::try_from(self.host.clone()).map_err(std::io::Error::other)?;
                Ok(Box::new(connector.connect(name, tcp).await?))
            }
        }
    }
}

/// Benchmarks run against local servers with development certificates.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
