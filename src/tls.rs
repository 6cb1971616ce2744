//! TEMPORARY stub.
use std::sync::Arc;
#[derive(Debug, thiserror::Error)]
#[error("tls not built yet")]
pub struct TlsError;
pub fn install_crypto_provider() {}
pub fn server_config(_tls: &crate::config::Tls) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Err(TlsError)
}
