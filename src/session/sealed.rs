//! The cookie store's format: the whole session sealed with AES-256-GCM.
//!
//! `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The version lets the
//! format change later; the key id picks the key among the current and
//! previous secrets; the cookie name is authenticated as associated data, so
//! a sealed value cannot be replayed under another cookie's name. The
//! plaintext holds its own expiry, so a cookie kept past its `Max-Age` (or
//! replayed) does not resurrect the session.

use aes_gcm::Nonce;
use aes_gcm::aead::{Aead, Payload};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::b64;
use super::keys::Keyring;
use crate::error::Error;
use crate::store::{LoadedRecord, SessionData, SessionId, SessionRecord, UnixMillis};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

/// A session as the cookie store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedSession {
    /// A random id, so the session has a stable `X-Session-Id`.
    pub id: SessionId,
    /// Data and expiry, as a server store would keep them.
    pub record: SessionRecord,
}

#[derive(Serialize)]
struct PlainOut<'a> {
    id: &'a str,
    /// The public id, derived once here so that reads need not hash.
    p: &'a str,
    c: UnixMillis,
    e: UnixMillis,
    d: &'a SessionData,
}

#[derive(Deserialize)]
struct PlainIn<'a> {
    id: String,
    /// Absent from seals made before it was carried: derived then.
    #[serde(default)]
    p: Option<String>,
    c: UnixMillis,
    e: UnixMillis,
    #[serde(borrow)]
    d: &'a RawValue,
}

/// Seals `session` under the current key.
pub fn seal(keys: &Keyring, cookie_name: &str, session: &SealedSession) -> Result<String, Error> {
    let plain = PlainOut {
        id: session.id.as_str(),
        p: session.id.public_id(),
        c: session.record.created_at,
        e: session.record.expires_at,
        d: &session.record.data,
    };
    let plaintext =
        serde_json::to_vec(&plain).map_err(|_| Error::internal("cannot serialize the session"))?;
    seal_plaintext(keys, cookie_name, &plaintext)
}

fn seal_plaintext(keys: &Keyring, cookie_name: &str, plaintext: &[u8]) -> Result<String, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::internal(format!("the OS random generator failed: {e}")))?;
    let key = keys.current();
    let sealed = key
        .sealer
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: cookie_name.as_bytes(),
            },
        )
        .map_err(|_| Error::internal("encryption failed"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(format!("{VERSION}.{}.{}", key.id, b64::encode(&out)))
}

/// Opens a sealed value. `None` for anything that does not verify, does not
/// parse, or has expired at `now`: the caller starts a new session.
pub fn open(
    keys: &Keyring,
    cookie_name: &str,
    value: &str,
    now: UnixMillis,
) -> Option<SealedSession> {
    let (id, record) = open_lazily(keys, cookie_name, value, now)?;
    Some(SealedSession {
        id,
        record: record.into_record().ok()?,
    })
}

/// As [`open`], with the session's data left as the JSON text the seal
/// held (see [`LoadedRecord`]): the request path's read.
pub fn open_lazily(
    keys: &Keyring,
    cookie_name: &str,
    value: &str,
    now: UnixMillis,
) -> Option<(SessionId, LoadedRecord)> {
    let mut parts = value.splitn(3, '.');
    let (version, key_id, body) = (parts.next()?, parts.next()?, parts.next()?);
    if version != VERSION {
        return None;
    }
    let key = keys.find(key_id)?;
    let bytes = b64::decode(body)?;
    if bytes.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let plaintext = key
        .sealer
        .decrypt(
            &Nonce::try_from(nonce).ok()?,
            Payload {
                msg: sealed,
                aad: cookie_name.as_bytes(),
            },
        )
        .ok()?;
    let plain: PlainIn = serde_json::from_slice(&plaintext).ok()?;
    if plain.e <= now {
        return None;
    }
    let record = LoadedRecord::from_text(plain.d, plain.c, plain.e).ok()?;
    let id = match plain.p {
        Some(public_id) => SessionId::with_public_id(plain.id, public_id),
        None => SessionId::from_trusted(plain.id),
    };
    Some((id, record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::keys::tests::ring;

    fn session(expires_at: UnixMillis) -> SealedSession {
        SealedSession {
            id: SessionId::generate().unwrap(),
            record: SessionRecord {
                data: serde_json::from_str(r#"{"user":"ada","n":12345678901234567890123}"#)
                    .unwrap(),
                created_at: 1,
                expires_at,
            },
        }
    }

    #[test]
    fn round_trips() {
        let keys = ring("a", &[]);
        let s = session(10_000);
        let value = seal(&keys, "sid", &s).unwrap();
        assert!(value.starts_with("v1."));
        assert_eq!(open(&keys, "sid", &value, 5_000), Some(s));
    }

    #[test]
    fn refuses_expired_tampered_renamed_and_foreign_values() {
        let keys = ring("a", &[]);
        let value = seal(&keys, "sid", &session(10_000)).unwrap();
        assert_eq!(open(&keys, "sid", &value, 10_000), None, "expired");
        assert_eq!(open(&keys, "other", &value, 0), None, "another cookie name");
        assert_eq!(
            open(&ring("b", &[]), "sid", &value, 0),
            None,
            "another secret"
        );
        let mut bytes = value.clone().into_bytes();
        let last = bytes.len() - 5;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(&keys, "sid", std::str::from_utf8(&bytes).unwrap(), 0),
            None,
            "tampered"
        );
        assert_eq!(
            open(&keys, "sid", &value[..value.len() - 10], 0),
            None,
            "truncated"
        );
        assert_eq!(open(&keys, "sid", "v1.zz.garbage", 0), None);
        assert_eq!(open(&keys, "sid", "", 0), None);
    }

    #[test]
    fn the_seal_carries_the_public_id_and_older_seals_still_open() {
        let keys = ring("a", &[]);
        let s = session(10_000);
        let value = seal(&keys, "sid", &s).unwrap();
        let carried = format!(
            r#"{{"id":"{}","p":"carried","c":1,"e":10000,"d":{{}}}}"#,
            s.id.as_str()
        );
        let carried = seal_plaintext(&keys, "sid", carried.as_bytes()).unwrap();
        let (id, _) = open_lazily(&keys, "sid", &carried, 0).unwrap();
        assert_eq!(
            id.public_id(),
            "carried",
            "the seal's copy, not derived again"
        );
        let (id, _) = open_lazily(&keys, "sid", &value, 0).unwrap();
        assert_eq!(id.public_id(), s.id.public_id());

        let without = format!(
            r#"{{"id":"{}","c":1,"e":10000,"d":{{"user":"ada"}}}}"#,
            s.id.as_str()
        );
        let older = seal_plaintext(&keys, "sid", without.as_bytes()).unwrap();
        let (id, record) = open_lazily(&keys, "sid", &older, 0).unwrap();
        assert_eq!(id.public_id(), s.id.public_id(), "derived");
        assert_eq!(record.text(), Some(r#"{"user":"ada"}"#));
    }

    #[test]
    fn previous_secrets_open_old_cookies_and_new_ones_use_the_current_key() {
        let old = seal(&ring("old", &[]), "sid", &session(10_000)).unwrap();
        let rotated = ring("new", &["old"]);
        assert!(open(&rotated, "sid", &old, 0).is_some());
        let fresh = seal(&rotated, "sid", &session(10_000)).unwrap();
        assert_eq!(open(&ring("old", &[]), "sid", &fresh, 0), None);
    }
}
