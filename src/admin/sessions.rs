//! `GET` and `DELETE /sessions?identity=…`: count, or end, every session
//! of one user (after a password change, or a stolen laptop).
//!
//! Only with an admin token configured (404 otherwise), and only for a
//! request that shows it as `Authorization: Bearer <token>` (401
//! otherwise), compared in constant time. Each call is logged with the
//! admin client's address and the identity's hash, never its value.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::respond;
use crate::proxy::ProxyBody;
use crate::store::{Identity, SessionStore};

/// The session API, when an admin token is configured.
pub struct SessionsApi {
    /// SHA-256 of the token: compared in constant time whatever the
    /// length of what a client sends.
    token_digest: [u8; 32],
}

impl std::fmt::Debug for SessionsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsApi").finish_non_exhaustive()
    }
}

impl SessionsApi {
    /// The API guarded by `token`.
    pub fn new(token: &str) -> Self {
        Self {
            token_digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Answers a request for `/sessions` from `peer`, over `store` (the
    /// gateway in force's; `None`: the cookie store), whose sessions are
    /// `indexed` by identity when `session.identity_key` is set.
    pub async fn answer<B>(
        &self,
        request: &Request<B>,
        peer: SocketAddr,
        store: Option<&Arc<dyn SessionStore>>,
        indexed: bool,
    ) -> Response<ProxyBody> {
        if !self.authorized(request) {
            tracing::warn!(client = %peer, method = %request.method(), "admin session API: missing or wrong token");
            let mut response = respond(StatusCode::UNAUTHORIZED, "unauthorized\n", "text/plain");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let deleting = match *request.method() {
            Method::GET | Method::HEAD => false,
            Method::DELETE => true,
            _ => {
                return respond(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "GET or DELETE\n",
                    "text/plain",
                );
            }
        };
        let Some(store) = store else {
            return respond(
                StatusCode::NOT_IMPLEMENTED,
                "the cookie store keeps each session in its cookie: there is nothing on a server to count or delete\n",
                "text/plain",
            );
        };
        if !indexed {
            return respond(
                StatusCode::NOT_IMPLEMENTED,
                "session.identity_key is not set: sessions are not indexed by identity\n",
                "text/plain",
            );
        }
        let Some(identity) = identity_param(request.uri().query()) else {
            return respond(
                StatusCode::BAD_REQUEST,
                "give the user as ?identity=<value> (not empty)\n",
                "text/plain",
            );
        };
        let identity = Identity::of_text(&identity);
        if deleting {
            self.revoke(store.as_ref(), &identity, peer).await
        } else {
            self.count(store.as_ref(), &identity, peer).await
        }
    }

    async fn count(
        &self,
        store: &dyn SessionStore,
        identity: &Identity,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        match store.sessions_of(identity).await {
            Ok(sessions) => {
                tracing::info!(client = %peer, identity = identity.as_str(), sessions = sessions.len(), "admin: sessions counted");
                json_response(StatusCode::OK, &json!({"sessions": sessions.len()}))
            }
            Err(error) => {
                tracing::warn!(client = %peer, identity = identity.as_str(), %error, "admin: counting sessions failed");
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": error.to_string()}),
                )
            }
        }
    }

    async fn revoke(
        &self,
        store: &dyn SessionStore,
        identity: &Identity,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let revoked = store.revoke(identity).await;
        match revoked.failure {
            None => {
                tracing::info!(client = %peer, identity = identity.as_str(), deleted = revoked.deleted, "admin: sessions revoked");
                json_response(StatusCode::OK, &json!({"deleted": revoked.deleted}))
            }
            Some(error) => {
                tracing::warn!(client = %peer, identity = identity.as_str(), deleted = revoked.deleted, %error, "admin: revoke stopped part-way; repeat it");
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"deleted": revoked.deleted, "error": error.to_string(), "complete": false}),
                )
            }
        }
    }

    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            });
        let Some(presented) = presented else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.token_digest).into()
    }
}

/// The `identity` query parameter, percent- (and `+`-) decoded; `None`
/// when absent, empty, or given twice (which one would be meant?).
fn identity_param(query: Option<&str>) -> Option<String> {
    let mut found = None;
    for pair in query?.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "identity" {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let value = value.replace('+', " ");
        let decoded = percent_encoding::percent_decode_str(&value)
            .decode_utf8()
            .ok()?
            .into_owned();
        found = Some(decoded);
    }
    found.filter(|value| !value.is_empty())
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    respond(status, format!("{body}\n"), "application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_parameter_is_decoded_once_and_must_be_there() {
        assert_eq!(
            identity_param(Some("identity=alice")).as_deref(),
            Some("alice")
        );
        assert_eq!(
            identity_param(Some("x=1&identity=a%40b.example+c")).as_deref(),
            Some("a@b.example c")
        );
        for bad in [
            None,
            Some(""),
            Some("identity="),
            Some("identity=a&identity=b"),
            Some("id=a"),
        ] {
            assert_eq!(identity_param(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_the_right_bearer_token_is_authorized() {
        let api = SessionsApi::new("the-admin-token-0123");
        let with = |value: &str| {
            Request::get("/sessions")
                .header(AUTHORIZATION, value)
                .body(())
                .unwrap()
        };
        assert!(api.authorized(&with("Bearer the-admin-token-0123")));
        assert!(api.authorized(&with("bearer the-admin-token-0123")));
        assert!(!api.authorized(&with("Bearer the-admin-token-012")));
        assert!(!api.authorized(&with("Basic the-admin-token-0123")));
        assert!(!api.authorized(&Request::get("/sessions").body(()).unwrap()));
    }
}
