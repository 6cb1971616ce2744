//! TLS toward an upstream's `https://` servers: the rustls client
//! configuration its `tls:` implies. Servers are always verified — against
//! `tls.ca`, or the system's roots — and there is no setting that turns
//! verification off: a certificate that does not verify fails the connect
//! (a 502 naming the server), never falls back to trusting it.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;

use crate::config::{self, TlsFileError, TlsMaterial};

/// Why an upstream's TLS settings cannot be put in force.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("tls.{0}")]
    File(#[from] TlsFileError),
    #[error("tls.ca: {0}")]
    Ca(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}: its host is no name TLS can verify; set tls.server_name")]
    Name(String),
}

/// The client side of TLS to one upstream's servers.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// `tls.server_name`: the name sent and verified instead of each
    /// server's host.
    pub server_name: Option<ServerName<'static>>,
    /// What the configuration was built from (file contents and names), so
    /// a reload tells whether connections made with the old one still fit.
    pub fingerprint: u64,
}

impl TlsClient {
    pub fn new(tls: &config::UpstreamTls) -> Result<TlsClient, UpstreamTlsError> {
        let TlsMaterial {
            ca,
            client,
            server_name,
        } = config::read_upstream_tls(tls)?;
        let mut hash = std::collections::hash_map::DefaultHasher::new();
        tls.hash(&mut hash);
        let mut roots = RootCertStore::empty();
        match ca {
            Some(certs) => {
                for cert in certs {
                    cert.as_ref().hash(&mut hash);
                    roots
                        .add(cert)
                        .map_err(|e| UpstreamTlsError::Ca(e.to_string()))?;
                }
            }
            None => {
                let (added, _) =
                    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                if added == 0 {
                    return Err(UpstreamTlsError::Ca(
                        "the system offers no root certificates".into(),
                    ));
                }
            }
        }
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots);
        let mut config = match client {
            Some((chain, key)) => {
                for cert in &chain {
                    cert.as_ref().hash(&mut hash);
                }
                key.secret_der().hash(&mut hash);
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        // The gateway speaks HTTP/1.1 to the application.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
            fingerprint: hash.finish(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Upstream;
    use crate::config;

    fn upstream(yaml: &str) -> Upstream {
        let c = config::parse(yaml, Path::new("gateway.yaml")).unwrap();
        Upstream::new(&c.backend, &crate::lifecycle::Lifecycle::new()).unwrap()
    }

    /// Whether `now` took over `was`'s servers (and so its connections).
    fn kept(was: &Upstream, mut now: Upstream) -> bool {
        now.keep_connections_of(was, true);
        std::sync::Arc::ptr_eq(&now.servers.list[0], &was.servers.list[0])
    }

    #[test]
    fn a_reload_keeps_connections_only_to_servers_reached_the_same_way() {
        let guard = tempfile::Builder::new()
            .prefix("pushgate-up-tls-")
            .tempdir()
            .unwrap();
        let dir = guard.path();
        let ca = dir.join("ca.pem");
        let write_ca = || {
            let pair = rcgen::generate_simple_self_signed(vec!["api.internal".into()]).unwrap();
            std::fs::write(&ca, pair.cert.pem()).unwrap();
        };
        write_ca();
        let https = |extra: &str| {
            format!(
                "backend: {{ url: https://127.0.0.1:1, tls: {{ ca: {}{extra} }} }}\n",
                ca.display()
            )
        };
        let was = upstream(&https(""));
        assert!(was.relayable(), "the relay speaks TLS too");
        assert!(kept(&was, upstream(&https(""))));
        assert!(!kept(&was, upstream(&https(", server_name: api.internal"))));
        // The same path with another CA in it: new connections verify by it.
        write_ca();
        assert!(!kept(&was, upstream(&https(""))));

        // Both sockets are `unix-0.localhost` to hyper; they are not the same server.
        let unix = |name: &str| format!("backend: {{ url: \"unix:{}/{name}\" }}\n", dir.display());
        let was = upstream(&unix("a.sock"));
        assert!(was.is_unix() && !was.relayable() && was.base_path().is_empty());
        assert!(kept(&was, upstream(&unix("a.sock"))));
        assert!(!kept(&was, upstream(&unix("b.sock"))));

        let plain = upstream("backend: { url: http://127.0.0.1:1/app }\n");
        assert!(plain.relayable() && plain.base_path() == "/app");
        assert!(kept(
            &plain,
            upstream("backend: { url: http://127.0.0.1:1/app }\n")
        ));
    }
}
