//! An upstream's `tls:` (how the gateway verifies its `https://` servers and
//! which certificate it shows them): the PEM files are read and parsed here,
//! once at load to refuse a file that cannot work (`files.rs`) and again for
//! each configuration put in force (`read`), so a certificate rotated on
//! disk is what the next reload uses.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

/// `tls:` of an upstream with `https://` servers. Paths are resolved
/// against the config file's directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM certificates the servers' chains must lead to; the system's
    /// roots when absent.
    pub ca: Option<PathBuf>,
    /// The name sent as SNI and verified in the servers' certificates;
    /// each server URL's host when absent.
    pub server_name: Option<String>,
    /// A PEM chain shown to servers that ask for one (mutual TLS), with
    /// `client_key`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// What `tls:` names, read from disk.
#[derive(Debug)]
pub struct TlsMaterial {
    /// The certificates of `ca`; `None`: the system's roots.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// `client_cert` and `client_key`, checked to belong together.
    pub client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// The name of `server_name`, parsed.
    pub server_name: Option<ServerName<'static>>,
}

/// A file of `tls:` that cannot be used, by key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TlsFileError {
    /// `ca`, `client_cert`, `client_key` or `server_name`.
    pub key: &'static str,
    pub message: String,
}

fn fail(key: &'static str, message: impl Into<String>) -> TlsFileError {
    TlsFileError {
        key,
        message: message.into(),
    }
}

/// Read and check the files `tls` names.
pub fn read(tls: &UpstreamTls) -> Result<TlsMaterial, TlsFileError> {
    let ca = tls
        .ca
        .as_deref()
        .map(|p| certificates(p).map_err(|m| fail("ca", m)))
        .transpose()?;
    let client = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(client_pair(cert, key)?),
        (None, None) => None,
        (Some(_), None) => return Err(fail("client_key", "client_cert needs client_key")),
        (None, Some(_)) => return Err(fail("client_cert", "client_key needs client_cert")),
    };
    let server_name = tls
        .server_name
        .as_deref()
        .map(|name| {
            ServerName::try_from(name.to_owned()).map_err(|_| {
                fail(
                    "server_name",
                    format!("{name:?} is not a DNS name or IP address"),
                )
            })
        })
        .transpose()?;
    Ok(TlsMaterial {
        ca,
        client,
        server_name,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{shown} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{shown} contains no certificate"));
    }
    Ok(certs)
}

fn client_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsFileError> {
    let chain = certificates(cert).map_err(|m| fail("client_cert", m))?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        fail(
            "client_key",
            format!("no usable private key in {}: {e}", key.display()),
        )
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(der.clone_key())
        .map_err(|e| fail("client_key", format!("unsupported private key: {e}")))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signer)
        .keys_match()
        .map_err(|_| {
            fail(
                "client_key",
                format!("does not match client_cert {}", cert.display()),
            )
        })?;
    Ok((chain, der))
}

/// Whether the system offers roots to verify servers by.
pub fn system_roots_usable() -> bool {
    !rustls_native_certs::load_native_certs().certs.is_empty()
}
