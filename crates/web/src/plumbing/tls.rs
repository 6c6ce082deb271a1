//! TLS terminated by the server itself (`serve --tls-cert --tls-key`), with rustls and the ring
//! provider the process already uses. The certificate and key are read from PEM files and read
//! again on [`Tls::reload`] (the binary calls it on SIGHUP): a renewed certificate is served to new
//! connections without a restart, and a broken pair on disk keeps the old one in service.
//!
//! Only TLS 1.2 and 1.3 with rustls' default (modern, forward-secret) cipher suites; ALPN offers
//! `http/1.1` only, matching the transport.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The server's TLS settings: where the PEM files are, and the configuration read from them.
#[derive(Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the certificate chain and private key.
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate or key, or a key that does not match the
    /// certificate: the message names the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        let config = server_config(cert, key)?;
        Ok(Arc::new(Self { cert: cert.to_owned(), key: key.to_owned(), config: RwLock::new(config) }))
    }

    /// Reads the files again; new connections get the new certificate. On error the current one
    /// stays in service.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.cert, &self.key)?;
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("TLS certificate {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("TLS certificate {}: no PEM certificate in the file", cert_path.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| format!("TLS private key {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("TLS: the key {} does not fit the certificate {}: {e}", key_path.display(), cert_path.display())
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
