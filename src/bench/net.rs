//! Client-side connections for the load generator: TCP from a chosen
//! loopback source address (one address has ~28k ephemeral ports), optionally
//! wrapped in TLS that trusts a given CA file or, with `--insecure` and for
//! benchmarks only, any certificate.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

/// A byte stream to the server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Which server certificates an `https://`/`wss://` run accepts.
#[derive(Clone, Debug)]
pub enum Trust {
    /// The system's roots (a real certificate).
    System,
    /// The certificates of a PEM file (a test CA, or a self-signed
    /// development certificate itself).
    CaFile(PathBuf),
    /// Anything: a local benchmark against a development certificate.
    /// Never for a server reached over a network one does not own.
    Insecure,
}

/// The rustls client for a run: ALPN offers `h2` only when the run asks for
/// HTTP/2 (so an HTTP/1.1 run is never upgraded behind its back).
pub fn client_config(trust: &Trust, h2: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder();
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth(),
        Trust::System | Trust::CaFile(_) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = match trust {
                Trust::CaFile(path) => CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("--ca {}: {e}", path.display()))?,
                _ => rustls_native_certs::load_native_certs().certs,
            };
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err("no usable CA certificate (give --ca FILE, or --insecure for a local benchmark)".into());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

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
    /// `tls`: `None` for `http://`/`ws://`.
    pub fn new(addr: SocketAddr, host: String, tls: Option<Arc<rustls::ClientConfig>>) -> Dialer {
        let tls = tls.map(tokio_rustls::TlsConnector::from);
        Dialer { addr, host, tls }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
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

/// `--insecure`: benchmarks run against local servers with development
/// certificates.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_follows_the_run_and_a_bad_ca_file_is_an_error() {
        crate::tls::install_crypto_provider();
        let h2 = client_config(&Trust::Insecure, true).unwrap();
        assert_eq!(h2.alpn_protocols, vec![b"h2".to_vec()]);
        let h1 = client_config(&Trust::Insecure, false).unwrap();
        assert_eq!(h1.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let missing = Trust::CaFile("/nonexistent/ca.pem".into());
        assert!(client_config(&missing, false).is_err());
    }
}
