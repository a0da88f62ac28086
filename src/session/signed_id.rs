//! The server-store cookie: `<session id>.<HMAC-SHA256 of the id>`.
//!
//! Only the gateway can mint a cookie the store will accept, so knowing a
//! session id (or `X-Session-Id`, which is a one-way hash of it) is not
//! enough to use a session.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::b64;
use super::keys::{KeySet, Keyring};
use crate::store::SessionId;

fn mac(keys: &KeySet, id: &str) -> Hmac<Sha256> {
    let mut mac = keys.id_signer.clone();
    mac.update(id.as_bytes());
    mac
}

/// The cookie value for `id`, signed with the current key.
pub fn sign(keys: &Keyring, id: &SessionId) -> String {
    let tag = mac(keys.current(), id.as_str()).finalize().into_bytes();
    let tag = b64::encode(&tag);
    let mut value = String::with_capacity(id.as_str().len() + 1 + tag.len());
    value.push_str(id.as_str());
    value.push('.');
    value.push_str(&tag);
    value
}

/// The session id in a cookie value, if its MAC verifies under any key of
/// the ring. The comparison is constant-time.
pub fn verify(keys: &Keyring, value: &str) -> Option<SessionId> {
    let (id, tag) = value.split_once('.')?;
    if id.len() < 22
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let tag = b64::decode(tag)?;
    keys.all()
        .any(|k| mac(k, id).verify_slice(&tag).is_ok())
        .then(|| SessionId::from_trusted(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::keys::tests::ring;

    #[test]
    fn verifies_its_own_signature_only() {
        let keys = ring("a", &[]);
        let id = SessionId::generate().unwrap();
        let cookie = sign(&keys, &id);
        assert_eq!(verify(&keys, &cookie), Some(id.clone()));
        assert_eq!(verify(&ring("b", &[]), &cookie), None);
        let mut tampered = cookie.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(verify(&keys, std::str::from_utf8(&tampered).unwrap()), None);
        assert_eq!(verify(&keys, id.as_str()), None);
        assert_eq!(verify(&keys, "garbage"), None);
        assert_eq!(verify(&keys, &cookie[..cookie.len() - 2]), None);
    }

    #[test]
    fn previous_secrets_still_verify() {
        let id = SessionId::generate().unwrap();
        let old = sign(&ring("old", &[]), &id);
        assert_eq!(verify(&ring("new", &["old"]), &old), Some(id));
    }
}
