//! The pooled client that talks to the upstream, over http or https.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ProxyBody;
use crate::config::{ConfigError, UpstreamConfig};

/// Why the upstream gave no response head.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// 502: refused, reset, or not speaking HTTP.
    #[error("upstream failed: {0}")]
    Failed(String),
    /// 504: no response head within `upstream.timeout`.
    #[error("upstream sent no response within {0:?}")]
    Timeout(Duration),
}

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    scheme: Scheme,
    authority: Authority,
    /// A path prefix from `upstream.url` (empty for `/`).
    base_path: String,
    timeout: Duration,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, ConfigError> {
        let url: Uri = config
            .url
            .parse()
            .map_err(|e| ConfigError::at("upstream.url", e))?;
        let (Some(scheme), Some(authority)) = (url.scheme().cloned(), url.authority().cloned())
        else {
            return Err(ConfigError::at("upstream.url", "needs a scheme and a host"));
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout.get()));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_client_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(https);
        Ok(Self {
            client,
            scheme,
            authority,
            base_path: url.path().trim_end_matches('/').to_owned(),
            timeout: config.timeout.get(),
        })
    }

    /// The upstream URI for a client request's path and query.
    pub fn target(&self, original: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = match (original.path_and_query(), self.base_path.is_empty()) {
            (Some(path_and_query), true) => path_and_query.clone(),
            (None, true) => PathAndQuery::from_static("/"),
            (found, false) => {
                let path_and_query = found.map_or("/", PathAndQuery::as_str);
                format!("{}{path_and_query}", self.base_path).parse()?
            }
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// The upstream's host, for requests that arrived without one.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Sends `request` and waits for the response head, at most
    /// `upstream.timeout`. The body then streams at the client's pace.
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(UpstreamError::Failed(describe(&error))),
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
        }
    }
}

/// The client error with its causes, for the log.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// TLS for https upstreams: the system's trusted roots, ring as the provider.
fn tls_client_config() -> Result<rustls::ClientConfig, ConfigError> {
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
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::at("upstream.url", format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
