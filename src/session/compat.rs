//! The cookie codec `session.compat` chooses, once, at start-up: the
//! gateway's own formats, express-session's signed id, or iron-session's
//! seal. The engine asks this module; each format lives in its own module
//! ([`sealed`](super::sealed), [`signed_id`](super::signed_id),
//! [`express`](super::express), [`iron`](super::iron)).
//!
//! A cookie that does not open is a new, empty session; the reason is
//! logged once, at debug.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::express::{self, ExpressSigner};
use super::iron::IronPasswords;
use super::keys::Keyring;
use super::sealed::{self, SealedSession};
use super::{b64, signed_id};
use crate::config::{Compat, Secrets};
use crate::error::{Error, Result};
use crate::store::{LoadedRecord, SessionId, SessionRecord, UnixMillis};

/// How the session cookie is written and read.
#[derive(Debug)]
pub enum CookieCodec {
    /// `v1.<key id>.<sealed>` (cookie store) or `<id>.<mac>` (server stores).
    Native,
    /// express-session's `s:<id>.<signature>` (server stores).
    Express(ExpressSigner),
    /// iron-session v8's `Fe26.2*…~2` (cookie store).
    Iron(IronPasswords),
}

impl CookieCodec {
    /// The codec for `session.compat`.
    pub fn new(compat: Compat, secrets: &Secrets) -> Self {
        match compat {
            Compat::None => CookieCodec::Native,
            Compat::ExpressSession => CookieCodec::Express(ExpressSigner::new(secrets)),
            Compat::IronSession => CookieCodec::Iron(IronPasswords::new(secrets)),
        }
    }

    /// A fresh session id in this format's shape.
    ///
    /// # Errors
    ///
    /// An internal error when the OS random generator fails.
    pub fn new_id(&self) -> Result<SessionId> {
        match self {
            CookieCodec::Express(_) => express::new_id(),
            _ => SessionId::generate(),
        }
    }

    /// A server store's session id in a cookie value, if it verifies.
    pub fn verify_id(&self, keys: &Keyring, value: &str) -> Option<SessionId> {
        match self {
            CookieCodec::Express(signer) => signer
                .verify(value)
                .inspect_err(|reason| {
                    tracing::debug!(?reason, "express-session cookie refused: a new session");
                })
                .ok(),
            _ => signed_id::verify(keys, value),
        }
    }

    /// The cookie value for a server store's session id.
    pub fn sign(&self, keys: &Keyring, id: &SessionId) -> String {
        match self {
            CookieCodec::Express(signer) => signer.sign(id),
            _ => signed_id::sign(keys, id),
        }
    }

    /// The cookie store's session in a cookie value, if it opens at `now`.
    pub fn open_sealed(
        &self,
        keys: &Keyring,
        name: &str,
        value: &str,
        now: UnixMillis,
    ) -> Option<(SessionId, LoadedRecord)> {
        match self {
            CookieCodec::Iron(passwords) => match passwords.open(value, now) {
                Ok(opened) => Some((
                    seal_id(value),
                    LoadedRecord::parsed(SessionRecord {
                        data: opened.data,
                        created_at: 0,
                        expires_at: opened.expires_at,
                    }),
                )),
                Err(reason) => {
                    tracing::debug!(?reason, "iron-session seal refused: a new session");
                    None
                }
            },
            _ => sealed::open_lazily(keys, name, value, now),
        }
    }

    /// The cookie store's cookie value for a session.
    ///
    /// # Errors
    ///
    /// An internal error when sealing fails.
    pub fn seal(
        &self,
        keys: &Keyring,
        name: &str,
        id: &SessionId,
        record: SessionRecord,
    ) -> Result<String> {
        match self {
            CookieCodec::Iron(passwords) => passwords.seal(&record.data, record.expires_at),
            _ => sealed::seal(
                keys,
                name,
                &SealedSession {
                    id: id.clone(),
                    record,
                },
            ),
        }
    }

    /// How many cookies one sealed session may span: iron-session reads a
    /// single cookie, so its seal must fit in one (a larger session is an
    /// error, never a cookie the Node app cannot read).
    pub fn max_chunks(&self, configured: usize) -> usize {
        match self {
            CookieCodec::Iron(_) => 1,
            _ => configured,
        }
    }

    /// Refuses an update that touches a key the Node library owns
    /// (express-session's `cookie`, and `updated` for the Cyclic layout):
    /// the gateway keeps those current itself.
    ///
    /// # Errors
    ///
    /// An invalid update (502) naming the key.
    pub fn check_updates(&self, reserved: &[&str], patches: &[Map<String, Value>]) -> Result<()> {
        if !matches!(self, CookieCodec::Express(_)) {
            return Ok(());
        }
        match patches
            .iter()
            .flat_map(|patch| patch.keys())
            .find(|key| reserved.contains(&key.as_str()))
        {
            Some(key) => Err(Error::invalid_update(format!(
                "X-Session-Update may not change `{key}`: with session.compat: express-session the gateway keeps it"
            ))),
            None => Ok(()),
        }
    }
}

/// iron-session's seals carry no id: the session's id is a hash of the
/// seal it came in, stable until the next write or touch re-seals it.
fn seal_id(value: &str) -> SessionId {
    let digest = Sha256::new_with_prefix(b"sessiongate/iron-seal/")
        .chain_update(value.as_bytes())
        .finalize();
    SessionId::from_trusted(b64::encode(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn express_updates_may_not_touch_the_cookie() {
        let secrets = Secrets {
            current: "s".repeat(32),
            previous: Vec::new(),
        };
        let codec = CookieCodec::new(Compat::ExpressSession, &secrets);
        let patch = |text: &str| vec![serde_json::from_str(text).unwrap()];
        assert!(
            codec
                .check_updates(&["cookie"], &patch(r#"{"user":"ada"}"#))
                .is_ok()
        );
        let error = codec
            .check_updates(&["cookie"], &patch(r#"{"cookie":null}"#))
            .unwrap_err();
        assert!(error.is_invalid_update());
        assert!(
            CookieCodec::new(Compat::None, &secrets)
                .check_updates(&["cookie"], &patch(r#"{"cookie":1}"#))
                .is_ok()
        );
    }
}
