//! The agent's TLS: the CA it trusts for Roost's certificate and, for a listener that asks for
//! client certificates, the board's own (rustls with ring, as the rest of Roost).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

/// A TLS setting that cannot be used: a file that cannot be read or holds no certificate or key.
#[derive(Debug, Error)]
#[error("TLS settings: {0}")]
pub struct TlsError(String);

/// How the agent connects over TLS: the CA that signed the server's certificate and, for a
/// listener that asks for client certificates, the board's certificate and key (PEM files).
#[derive(Debug, Clone)]
pub struct AgentTls {
    pub ca: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The TLS client configuration (ring, TLS 1.2 and 1.3) for `tls`.
pub fn tls_config(tls: &AgentTls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        TlsError(format!("{what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&tls.ca).map_err(|e| bad("CA file", &tls.ca, &e))?;
    for ca in cas {
        roots.add(ca.map_err(|e| bad("CA file", &tls.ca, &e))?).map_err(|e| bad("CA file", &tls.ca, &e))?;
    }
    if roots.is_empty() {
        return Err(bad("CA file", &tls.ca, &"holds no PEM certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &tls.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad("certificate file", cert, &e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key file", key, &e))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| bad("certificate and key", cert, &e))?
        }
    };
    Ok(Arc::new(config))
}
