//! TLS termination with rustls: PEM loading, SNI certificate choice, ALPN
//! (`h2`, `http/1.1`), TLS 1.2 and 1.3 only, and the development certificate.
//!
//! Certificates are loaded into a fresh `ServerConfig` each time settings are
//! built, so a reload picks up files replaced on disk (certbot renewals) and
//! the next handshake uses them; handshakes in progress keep the old ones.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{}: generating the development certificate: {message}", path.display())]
    Generate { path: PathBuf, message: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Install aws-lc-rs as the process-wide crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Build the server configuration for `tls:`.
pub fn server_config(tls: &config::Tls) -> Result<Arc<ServerConfig>, TlsError> {
    if tls.self_signed_if_missing && (!tls.cert.exists() || !tls.key.exists()) {
        generate_dev_cert(&tls.cert, &tls.key)?;
    }
    let provider = provider();
    let default = load_key_pair(&provider, &tls.cert, &tls.key)?;
    let mut by_name = Vec::new();
    for entry in &tls.sni {
        let key = load_key_pair(&provider, &entry.cert, &entry.key)?;
        for host in &entry.hosts {
            by_name.push((host.to_ascii_lowercase(), key.clone()));
        }
    }
    let resolver = Arc::new(SniResolver { default, by_name });
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn load_key_pair(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, format!("cannot read certificate: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(file_error(
            cert,
            "no certificate found (expected a PEM chain)",
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error(key, format!("no usable private key: {e}")))?;
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| file_error(key, format!("unsupported private key: {e}")))?;
    let pair = CertifiedKey::new(chain, signer);
    pair.keys_match().map_err(|_| {
        file_error(
            key,
            format!("does not match the certificate {}", cert.display()),
        )
    })?;
    Ok(Arc::new(pair))
}

/// Picks a certificate by SNI server name: exact host, then `*.domain`
/// wildcard (one label), else the default.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some((_, k)) = self.by_name.iter().find(|(h, _)| *h == name) {
            return k.clone();
        }
        let parent = name.split_once('.').map(|(_, rest)| rest);
        self.by_name
            .iter()
            .find(|(h, _)| h.strip_prefix("*.").is_some_and(|d| Some(d) == parent))
            .map(|(_, k)| k.clone())
            .unwrap_or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Write a self-signed certificate for localhost into `cert` and `key`.
pub fn generate_dev_cert(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let err = |path: &Path, message: String| TlsError::Generate {
        path: path.to_path_buf(),
        message,
    };
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| err(cert, e.to_string()))?;
    for path in [cert, key] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(path, e.to_string()))?;
        }
    }
    std::fs::write(cert, generated.cert.pem()).map_err(|e| err(cert, e.to_string()))?;
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(key)
        .and_then(|mut f| f.write_all(generated.signing_key.serialize_pem().as_bytes()))
        .map_err(|e| err(key, e.to_string()))?;
    tracing::warn!(
        cert = %cert.display(),
        key = %key.display(),
        "GENERATED A SELF-SIGNED DEVELOPMENT CERTIFICATE for localhost: browsers will not trust it. \
         Do not use it in production: set tls.cert and tls.key to a real certificate and \
         self_signed_if_missing: false"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed when the guard drops.
    fn dir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("pushgate-tls-{tag}-"))
            .tempdir()
            .unwrap()
    }

    fn tls(d: &Path, sni: Vec<config::SniCert>) -> config::Tls {
        config::Tls {
            cert: d.join("a.crt"),
            key: d.join("a.key"),
            self_signed_if_missing: true,
            sni,
        }
    }

    #[test]
    fn generates_then_loads_and_refuses_bad_files() {
        install_crypto_provider();
        let d = dir("gen");
        let d = d.path();
        let cfg = server_config(&tls(d, vec![])).unwrap();
        assert_eq!(cfg.alpn_protocols[0], b"h2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.join("a.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut missing = tls(d, vec![]);
        missing.self_signed_if_missing = false;
        missing.cert = d.join("nope.crt");
        let e = server_config(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.crt"), "{e}");
        std::fs::write(d.join("bad.key"), "not a key").unwrap();
        let mut bad = tls(d, vec![]);
        bad.key = d.join("bad.key");
        let e = server_config(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.key"), "{e}");
    }

    #[test]
    fn sni_picks_by_name_and_wildcard() {
        install_crypto_provider();
        let d = dir("sni");
        let d = d.path();
        generate_dev_cert(&d.join("b.crt"), &d.join("b.key")).unwrap();
        generate_dev_cert(&d.join("a.crt"), &d.join("a.key")).unwrap();
        let p = provider();
        let a = load_key_pair(&p, &d.join("a.crt"), &d.join("a.key")).unwrap();
        let b = load_key_pair(&p, &d.join("b.crt"), &d.join("b.key")).unwrap();
        let r = SniResolver {
            default: a.clone(),
            by_name: vec![
                ("app.example.com".into(), b.clone()),
                ("*.other.org".into(), b.clone()),
            ],
        };
        assert!(Arc::ptr_eq(&r.pick(Some("APP.example.com")), &b));
        assert!(Arc::ptr_eq(&r.pick(Some("x.other.org")), &b));
        assert!(Arc::ptr_eq(&r.pick(Some("a.x.other.org")), &a));
        assert!(Arc::ptr_eq(&r.pick(None), &a));
        assert!(Arc::ptr_eq(&r.pick(Some("unknown.test")), &a));
    }
}
