//! Which route a request takes: its backend, how much session work it
//! gets, and whether it may reach the backend at all.
//!
//! Routes are tried in order and the first match wins; no match is the
//! fallback (the top-level `upstream`, session optional), so a
//! configuration without routes behaves as if routing did not exist.
//! Before the backend runs, a route can refuse a request: cross-origin
//! ([`csrf`]) or without an identity on a `session: required` route.

pub mod csrf;
mod login;
mod path;

use std::collections::HashMap;
use std::sync::Arc;

use http::Request;
use http::header::HOST;

use crate::config::{Config, HostPattern, PathPrefix, RouteConfig, RouteSession, UpstreamConfig};
use crate::error::Result;
use crate::proxy::{ProxyBody, Upstream};

pub use login::is_navigation;

/// Every route, in the configuration's order, and the fallback.
#[derive(Debug)]
pub struct Routes {
    routes: Vec<Route>,
    fallback: Route,
    trusted_origins: Vec<String>,
}

/// One route, ready to serve.
#[derive(Debug)]
pub struct Route {
    host: Option<HostPattern>,
    prefix: PathPrefix,
    /// Where its requests go (shared with every route naming the same URL).
    pub upstream: Arc<Upstream>,
    /// How much session work its requests get.
    pub session: RouteSession,
    login_url: Option<String>,
    csrf: bool,
    metrics: RouteMetrics,
    /// Its name in metrics and the access log (`default`: no route matched).
    label: String,
}

impl Routes {
    /// The routes of `config`, each upstream opened once per URL.
    ///
    /// # Errors
    ///
    /// A configuration error when an upstream is unusable.
    pub fn new(config: &Config) -> Result<Self> {
        let mut upstreams: HashMap<String, Arc<Upstream>> = HashMap::new();
        let mut upstream = |url: &str| -> Result<Arc<Upstream>> {
            if let Some(found) = upstreams.get(url) {
                return Ok(found.clone());
            }
            let settings = UpstreamConfig {
                url: url.to_owned(),
                ..config.upstream.clone()
            };
            let opened = Arc::new(Upstream::new(&settings)?);
            upstreams.insert(url.to_owned(), opened.clone());
            Ok(opened)
        };
        let fallback = Route {
            host: None,
            prefix: PathPrefix::default(),
            upstream: upstream(&config.upstream.url)?,
            session: RouteSession::Optional,
            login_url: None,
            csrf: config.csrf.enabled,
            metrics: RouteMetrics::new("default"),
            label: "default".to_owned(),
        };
        let routes = config
            .routes
            .iter()
            .map(|route: &RouteConfig| {
                Ok(Route {
                    host: route.host.clone(),
                    prefix: route.path_prefix.clone(),
                    upstream: upstream(route.upstream.as_deref().unwrap_or(&config.upstream.url))?,
                    session: route.session,
                    login_url: route.login_url.clone(),
                    csrf: route.csrf.unwrap_or(config.csrf.enabled),
                    metrics: RouteMetrics::new(&route.label()),
                    label: route.label(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            routes,
            fallback,
            trusted_origins: config
                .csrf
                .trusted_origins
                .iter()
                .filter_map(|origin| crate::config::normalize_origin(origin))
                .collect(),
        })
    }

    /// The route `request` takes, counted.
    ///
    /// # Errors
    ///
    /// A bad request when the path holds a dot segment in any spelling
    /// (it could step past a route's prefix).
    pub fn select<B>(&self, request: &Request<B>) -> Result<&Route> {
        let route = if self.routes.is_empty() {
            &self.fallback
        } else {
            let path = path::for_matching(request.uri().path())?;
            let host = request_host(request).map(host_name);
            self.routes
                .iter()
                .find(|route| route.matches(host.as_deref(), &path))
                .unwrap_or(&self.fallback)
        };
        route.metrics.requests.increment(1);
        Ok(route)
    }

    /// The request may reach the backend as far as cross-origin rules go;
    /// a refusal is counted.
    pub fn allows_origin<B>(&self, route: &Route, request: &Request<B>) -> bool {
        if !route.csrf {
            return true;
        }
        let allowed = csrf::allows(
            request.method(),
            request.headers(),
            request_host(request),
            &self.trusted_origins,
        );
        if !allowed {
            route.metrics.cross_origin.increment(1);
            tracing::debug!(method = %request.method(), path = request.uri().path(), "cross-origin request refused");
        }
        allowed
    }
}

impl Route {
    /// Its name in metrics and the access log: the route's `name`, or its
    /// host and prefix; `default` when no route matched.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_matches = match (&self.host, host) {
            (None, _) => true,
            (Some(pattern), Some(host)) => pattern.matches(host),
            (Some(_), None) => false,
        };
        host_matches && self.prefix.matches(path)
    }

    /// The answer to a request without an identity on a `required` route:
    /// 302 to the login page for a browser navigation, 401 otherwise.
    pub fn login_required<B>(&self, request: &Request<B>) -> http::Response<ProxyBody> {
        self.metrics.login_required.increment(1);
        login::refusal(self.login_url.as_deref(), request)
    }
}

/// The request's host and port as the client wrote it: the HTTP/2
/// authority or absolute-form target, else `Host`.
fn request_host<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(
            authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, host)| host),
        ),
        None => request.headers().get(HOST).and_then(|v| v.to_str().ok()),
    }
}

/// A host as routes compare it: lowercase, without port or trailing dot.
fn host_name(host: &str) -> std::borrow::Cow<'_, str> {
    let without_port = match host.rfind(':') {
        // `[::1]:8080`, `a.test:8080`; a bare IPv6 literal is bracketed.
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    };
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// A route's counters, looked up once.
#[derive(Debug)]
struct RouteMetrics {
    requests: metrics::Counter,
    login_required: metrics::Counter,
    cross_origin: metrics::Counter,
}

impl RouteMetrics {
    fn new(route: &str) -> Self {
        let rejected = |reason: &'static str| metrics::counter!("sessiongate_requests_rejected_total", "reason" => reason, "route" => route.to_owned());
        Self {
            requests: metrics::counter!("sessiongate_route_requests_total", "route" => route.to_owned()),
            login_required: rejected("login_required"),
            cross_origin: rejected("cross_origin"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_port_case_and_trailing_dot() {
        assert_eq!(host_name("App.Example.com.:8080"), "app.example.com");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("a.test"), "a.test");
    }

    fn config(yaml: &str) -> Config {
        let text = format!(
            "session:\n  secret: {}\n  identity_key: user\n{yaml}",
            "s".repeat(40)
        );
        Config::parse(&text, &|_| None).unwrap()
    }

    fn route_of(routes: &Routes, host: Option<&str>, path: &str) -> String {
        let mut request = Request::get(path);
        if let Some(host) = host {
            request = request.header(HOST, host);
        }
        let request = request.body(()).unwrap();
        let route = routes.select(&request).unwrap();
        format!("{:?}", route.session)
    }

    #[tokio::test]
    async fn first_match_wins_and_nothing_falls_back() {
        let routes = Routes::new(&config(
            "routes:\n  - path_prefix: /static/\n    session: off\n  - host: '*.example.com'\n    path_prefix: /admin\n    session: required\n",
        ))
        .unwrap();
        assert_eq!(route_of(&routes, None, "/static/app.css"), "Off");
        assert_eq!(route_of(&routes, None, "/static"), "Off");
        assert_eq!(route_of(&routes, None, "/staticx"), "Optional");
        assert_eq!(
            route_of(&routes, Some("a.Example.com:8080"), "/admin/x"),
            "Required"
        );
        assert_eq!(
            route_of(&routes, Some("a.example.com"), "/admin%2Fx"),
            "Required"
        );
        assert_eq!(
            route_of(&routes, Some("a.example.com"), "//admin"),
            "Required"
        );
        assert_eq!(
            route_of(&routes, Some("example.com"), "/admin/x"),
            "Optional"
        );
        assert_eq!(route_of(&routes, None, "/admin/x"), "Optional");
        let sneaky = Request::get("/static/..%2Fadmin").body(()).unwrap();
        assert!(routes.select(&sneaky).is_err());
    }

    #[tokio::test]
    async fn routes_naming_one_url_share_its_pool() {
        let routes = Routes::new(&config(
            "routes:\n  - path_prefix: /a/\n    upstream: http://127.0.0.1:9\n  - path_prefix: /b/\n    upstream: http://127.0.0.1:9\n  - path_prefix: /c/\n",
        ))
        .unwrap();
        assert!(Arc::ptr_eq(
            &routes.routes[0].upstream,
            &routes.routes[1].upstream
        ));
        assert!(Arc::ptr_eq(
            &routes.routes[2].upstream,
            &routes.fallback.upstream
        ));
        assert!(!Arc::ptr_eq(
            &routes.routes[0].upstream,
            &routes.fallback.upstream
        ));
    }
}
