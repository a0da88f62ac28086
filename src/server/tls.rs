//! The public listener's TLS: certificates from PEM files, ALPN h2 and
//! http/1.1, ring as the one crypto provider.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::error::Error;

/// Builds the acceptor from `tls.cert` (a PEM chain, leaf first) and
/// `tls.key` (a PEM private key).
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, Error> {
    let certs = read_certs(&config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| Error::config("tls.key", format!("{}: {e}", config.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("tls", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::config(
                "tls",
                format!("certificate and key do not fit together: {e}"),
            )
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::config("tls.cert", format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::config(
            "tls.cert",
            format!("{} holds no certificate", path.display()),
        ));
    }
    Ok(certs)
}
