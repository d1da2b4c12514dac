//! TLS for the host's NATS connections: one rustls client configuration (ring), built once at
//! start and used by every connection that asks for TLS or meets a server that requires it —
//! the control plane's (async-nats) and the shards' own ([`crate::shard`], either backend).
//!
//! Trust: the system's roots plus an optional private CA (`--tls-ca-file`, PEM). A server that
//! verifies clients (`tls { verify: true }`) gets the certificate and key of
//! `--tls-client-cert`/`--tls-client-key` (PEM). Unreadable or empty files stop the start with
//! a line that names the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {path}: {reason}")]
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--tls-client-cert and --tls-client-key must be given together")]
    HalfClientIdentity,
    #[error("no trust roots: the system has none and no --tls-ca-file was given")]
    NoRoots,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The files behind the TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// The client certificate chain (PEM) and its private key (PEM), for servers that verify
    /// clients.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |reason: String| TlsError::File {
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if certs.is_empty() {
        return Err(failed("holds no PEM certificate".to_string()));
    }
    Ok(certs)
}

/// The trust roots: the system's, then the CA file's.
fn roots(files: &TlsFiles) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        system_roots = added,
        errors = native.errors.len(),
        "TLS trust roots loaded"
    );
    if let Some(path) = &files.ca_file {
        for cert in certificates("--tls-ca-file", path)? {
            roots.add(cert).map_err(|e| TlsError::File {
                flag: "--tls-ca-file",
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(roots)
}

/// The client configuration for `files`.
pub fn client_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(files)?);
    let config = match (&files.client_cert, &files.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates("--tls-client-cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                flag: "--tls-client-key",
                path: key.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => return Err(TlsError::HalfClientIdentity),
    };
    Ok(Arc::new(config))
}

/// A server configuration from a certificate chain and its private key (PEM files): the
/// built-in HTTP server's HTTPS (a link's `tls.cert_file`/`tls.priv_key_file`), HTTP/1.1 by
/// ALPN. `what` names the setting in errors.
pub fn server_config(what: &'static str, cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(what, cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
        flag: what,
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            ca_file: Some(dir.path().join("nope.pem")),
            ..TlsFiles::default()
        };
        let error = client_config(&missing).unwrap_err().to_string();
        assert!(
            error.starts_with("--tls-ca-file ") && error.contains("nope.pem"),
            "{error}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = client_config(&TlsFiles {
            ca_file: Some(empty),
            ..TlsFiles::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let files = TlsFiles {
            client_cert: Some("cert.pem".into()),
            ..TlsFiles::default()
        };
        assert!(matches!(client_config(&files), Err(TlsError::HalfClientIdentity)));
    }
}
