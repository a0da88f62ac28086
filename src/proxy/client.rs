//! The pooled client that talks to the upstream, over http or https.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::ProxyBody;
use super::pool::{Connector, Pool, PooledBody};
use crate::config::UpstreamConfig;
use crate::error::Error;

/// The one upstream: where requests go and the connections they go on.
#[derive(Debug)]
pub struct Upstream {
    pool: Arc<Pool>,
    authority: Authority,
    /// A path prefix from `upstream.url` (empty for `/`).
    base_path: String,
    /// `scheme://host[:port]`, as RFC 6454 serializes an origin.
    origin: String,
    timeout: Duration,
}

impl Upstream {
    /// Checks `upstream.url` and sets up TLS and the pool; no connection
    /// opens until the first request.
    pub fn new(config: &UpstreamConfig) -> Result<Self, Error> {
        let url: Uri = config
            .url
            .parse()
            .map_err(|e| Error::config("upstream.url", e))?;
        let (Some(scheme), Some(authority)) = (url.scheme().cloned(), url.authority().cloned())
        else {
            return Err(Error::config("upstream.url", "needs a scheme and a host"));
        };
        let https = scheme == Scheme::HTTPS;
        if !https && scheme != Scheme::HTTP {
            return Err(Error::config(
                "upstream.url",
                "the scheme must be http or https",
            ));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority.host();
        let tls = if https {
            // `[::1]` in a URL is `::1` to TLS.
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let server_name = ServerName::try_from(name.to_owned())
                .map_err(|e| Error::config("upstream.url", format!("TLS server name: {e}")))?;
            Some((
                TlsConnector::from(Arc::new(tls_client_config()?)),
                server_name,
            ))
        } else {
            None
        };
        let connector = Connector::new(format!("{host}:{port}"), tls, config.connect_timeout.get());
        let origin = origin(&scheme, host, authority.port_u16(), port);
        Ok(Self {
            origin,
            pool: Pool::new(connector, config.max_connections),
            authority,
            base_path: url.path().trim_end_matches('/').to_owned(),
            timeout: config.timeout.get(),
        })
    }

    /// The request target sent upstream (origin-form: path and query) for
    /// a client request's URI.
    pub fn target(&self, original: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = match (original.path_and_query(), self.base_path.is_empty()) {
            (Some(path_and_query), true) => path_and_query.clone(),
            (None, true) => PathAndQuery::from_static("/"),
            (found, false) => {
                let path_and_query = found.map_or("/", PathAndQuery::as_str);
                format!("{}{path_and_query}", self.base_path).parse()?
            }
        };
        Ok(Uri::from(path_and_query))
    }

    /// The upstream's host, for requests that arrived without one.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Where requests go, as an origin (`scheme://host[:port]`, the port
    /// only when it is not the scheme's default): the signed session
    /// assertion's default audience.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Sends `request` and waits for the response head, at most
    /// `upstream.timeout` (a wait for a free connection included). The
    /// body then streams at the client's pace.
    pub async fn send(&self, request: Request<ProxyBody>) -> Result<Response<PooledBody>, Error> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline, self.pool.send(request, deadline)).await {
            Ok(result) => result,
            Err(_) => Err(Error::upstream_timeout(self.timeout)),
        }
    }
}

/// RFC 6454 §6.2: scheme and host in lowercase, the port only when it is
/// not the scheme's default.
fn origin(scheme: &Scheme, host: &str, written_port: Option<u16>, port: u16) -> String {
    let scheme = scheme.as_str().to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let default_port = if scheme == "https" { 443 } else { 80 };
    match written_port {
        Some(_) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    }
}

/// TLS for https upstreams: the system's trusted roots, ring as the provider.
fn tls_client_config() -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "while loading system root certificates");
    }
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system root certificates found: https upstreams will not verify");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("upstream.url", format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin_of(url: &str) -> String {
        let config = UpstreamConfig {
            url: url.to_owned(),
            ..UpstreamConfig::default()
        };
        Upstream::new(&config)
            .map(|u| u.origin().to_owned())
            .unwrap()
    }

    #[test]
    fn origin_is_scheme_host_and_a_port_other_than_the_default() {
        assert_eq!(
            origin_of("http://127.0.0.1:3000/base"),
            "http://127.0.0.1:3000"
        );
        assert_eq!(origin_of("http://App.Internal:80/"), "http://app.internal");
        assert_eq!(origin_of("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(
            origin_of("https://api.example.com"),
            "https://api.example.com"
        );
    }
}
