//! The signed session assertion: proof of origin for the backend.
//!
//! A backend that trusts `X-Session-Data` trusts whoever can reach it. With
//! `assertion` on, every upstream request with a session also carries a JWT
//! (RFC 7519) signed with Ed25519 (`alg: EdDSA`, RFC 8037) that binds the
//! session headers to this gateway, to one backend (`aud`) and to a short
//! time window, so a misrouted request or one that went around the gateway
//! is refused by a backend that checks it.
//!
//! The signing key is derived from the session secret ([`KeySet`]'s
//! `assertion_seed`), so every replica signs alike and `kid` is the secret's
//! key id; [`jwks`] publishes the public keys of the current and previous
//! secrets, so tokens signed before a rotation still verify.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::keys::{KeySet, Keyring};
use super::protocol::{self, SESSION_ASSERTION, SESSION_DATA, SESSION_ID};
use crate::config::AssertionConfig;
use crate::error::{Error, Result};
use crate::store::{IdentityValue, SessionData};

/// The token's `iss`.
pub const ISSUER: &str = "sessiongate";

/// Signs the assertion of every upstream request with a session.
pub struct Assertion {
    header: HeaderName,
    audience: Option<String>,
    ttl_secs: u64,
    identity_key: Option<String>,
    key: SigningKey,
}

/// The configuration only: the key must not reach a log.
impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertion")
            .field("header", &self.header)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .field("kid", &self.key.kid)
            .finish_non_exhaustive()
    }
}

/// One secret's Ed25519 key pair, with the token header that names it.
struct SigningKey {
    kid: String,
    pair: Ed25519KeyPair,
    /// The JOSE header, base64url-encoded once: it is the same in every
    /// token this key signs.
    header_b64: String,
}

impl SigningKey {
    fn derive(keys: &KeySet) -> Result<Self> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&keys.assertion_seed)
            .map_err(|e| Error::internal(format!("assertion key: {e}")))?;
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": keys.id});
        Ok(Self {
            kid: keys.id.clone(),
            pair,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
        })
    }

    /// The public key as an RFC 8037 JWK.
    fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }
}

/// The token's payload. `identity` is left out when the session holds none
/// (see [`IdentityValue`]).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'static str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a Value>,
    data_sha256: &'a str,
}

/// The JWKS document (RFC 7517 §5) of every secret in `keys`, current first:
/// what `GET /.well-known/jwks.json` answers on the admin listener.
///
/// # Errors
///
/// An internal error if a key cannot be built (never for a 32-byte seed).
pub fn jwks(keys: &Keyring) -> Result<String> {
    let keys = keys
        .all()
        .map(|keys| SigningKey::derive(keys).map(|key| key.jwk()))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({ "keys": keys }).to_string())
}

impl Assertion {
    /// The signer for `config`, with the current secret's key;
    /// `identity_key` is `session.identity_key`.
    ///
    /// # Errors
    ///
    /// A configuration error for a header name `check` would have refused.
    pub fn new(
        config: &AssertionConfig,
        identity_key: Option<String>,
        keys: &Keyring,
    ) -> Result<Self> {
        let header = HeaderName::from_bytes(config.header.as_bytes())
            .map_err(|e| Error::config("assertion.header", e))?;
        Ok(Self {
            header,
            audience: config.audience.clone(),
            // JWT times are whole seconds: a part of one counts as one.
            ttl_secs: config.ttl.get().as_millis().div_ceil(1000).max(1) as u64,
            identity_key,
            key: SigningKey::derive(keys.current())?,
        })
    }

    /// The upstream-request phase, after the session headers are written:
    /// removes a client's copy of the configured header (the default name
    /// is always removed with the other session headers) and, when the
    /// request has a session, signs the exact `X-Session-Id` and
    /// `X-Session-Data` values `headers` carries. `upstream_origin` is the
    /// audience unless `assertion.audience` says otherwise.
    ///
    /// # Errors
    ///
    /// An internal error if the token cannot be a header value (it is
    /// ASCII, so never): the request fails rather than go out unsigned.
    pub fn write(
        &self,
        headers: &mut HeaderMap,
        session: Option<&SessionData>,
        upstream_origin: &str,
    ) -> Result<()> {
        if self.header != SESSION_ASSERTION {
            protocol::remove_folded(headers, std::slice::from_ref(&self.header));
        }
        let Some(data) = session else {
            return Ok(());
        };
        let token = self.sign(
            headers.get(SESSION_ID).map_or(&[][..], |v| v.as_bytes()),
            headers.get(SESSION_DATA).map_or(&[][..], |v| v.as_bytes()),
            self.identity(data),
            self.audience.as_deref().unwrap_or(upstream_origin),
            unix_secs(),
        )?;
        let value = HeaderValue::try_from(token)
            .map_err(|_| Error::internal("the session assertion is not a header value"))?;
        headers.insert(self.header.clone(), value);
        Ok(())
    }

    /// The identity key's value, as the session holds it, when it is an
    /// identity by the rule `session: required` routes apply.
    fn identity<'a>(&self, data: &'a SessionData) -> Option<&'a Value> {
        let value = data.get(self.identity_key.as_deref()?);
        match IdentityValue::of(value) {
            IdentityValue::Text(_) => value,
            IdentityValue::Absent | IdentityValue::Invalid => None,
        }
    }

    /// The compact JWS (`header.payload.signature`) for one request.
    fn sign(
        &self,
        session_id: &[u8],
        session_data: &[u8],
        identity: Option<&Value>,
        audience: &str,
        now: u64,
    ) -> Result<String> {
        let mut digest_b64 = [0u8; 43];
        let digest = Sha256::digest(session_data);
        let written = URL_SAFE_NO_PAD
            .encode_slice(digest, &mut digest_b64)
            .map_err(|e| Error::internal(format!("data_sha256: {e}")))?;
        let claims = Claims {
            iss: ISSUER,
            // The id is a header value the gateway wrote: base64url ASCII.
            sub: std::str::from_utf8(session_id).unwrap_or_default(),
            aud: audience,
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
            identity,
            data_sha256: std::str::from_utf8(&digest_b64[..written]).unwrap_or_default(),
        };
        let payload = serde_json::to_vec(&claims)
            .map_err(|e| Error::internal(format!("assertion claims: {e}")))?;
        let header = &self.key.header_b64;
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 92);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.key.pair.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests;
