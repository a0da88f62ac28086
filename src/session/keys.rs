//! Keys derived from the session secrets, one per purpose (HKDF-SHA256).
//!
//! The secret itself never encrypts or signs anything: each use gets its own
//! key, so a weakness in one use cannot leak into another, and every key
//! carries a short id so that a cookie names the key that sealed it.

use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use hmac::Hmac;
use sha2::Sha256;

use crate::config::Secrets;

const SALT: &[u8] = b"sessiongate/v1";

/// The keys derived from one secret.
pub struct KeySet {
    /// Names this secret in sealed cookies (not secret: a hash of a key).
    pub id: String,
    /// AES-256-GCM key for the cookie store.
    pub seal: [u8; 32],
    /// HMAC-SHA256 key for the signed session id of server stores.
    pub id_mac: [u8; 32],
    /// Ed25519 seed of the key that signs session assertions (its public
    /// half is published as a JWK named [`KeySet::id`]).
    pub assertion_seed: [u8; 32],
    /// `seal` with its AES key schedule expanded once: expanding it for
    /// every request costs more than decrypting a small cookie.
    pub sealer: Aes256Gcm,
    /// HMAC keyed with `id_mac`, cloned for each use for the same reason.
    pub id_signer: Hmac<Sha256>,
}

/// Only the id: the keys must not reach a log.
impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Derives every key from `secret`: the same secret gives the same keys,
    /// so gateways that share it read each other's cookies.
    pub fn derive(secret: &str) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(SALT), secret.as_bytes());
        let mut id = [0u8; 4];
        let mut seal = [0u8; 32];
        let mut id_mac = [0u8; 32];
        let mut assertion_seed = [0u8; 32];
        // expand only fails for outputs longer than 255 blocks.
        let _ = hkdf.expand(b"key-id", &mut id);
        let _ = hkdf.expand(b"cookie-seal", &mut seal);
        let _ = hkdf.expand(b"session-id-mac", &mut id_mac);
        let _ = hkdf.expand(b"session-assertion-ed25519", &mut assertion_seed);
        Self {
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            sealer: Aes256Gcm::new(&seal.into()),
            // HMAC takes keys of any length.
            id_signer: <Hmac<Sha256> as KeyInit>::new_from_slice(&id_mac)
                .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys")),
            seal,
            id_mac,
            assertion_seed,
        }
    }
}

/// The current key set, used for everything written, and the previous ones,
/// still accepted when reading during a rotation.
pub struct Keyring {
    current: KeySet,
    previous: Vec<KeySet>,
}

/// Key ids only, current first.
impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("previous", &self.previous)
            .finish()
    }
}

impl Keyring {
    /// Derives a key set from each of `session.secrets`.
    pub fn new(secrets: &Secrets) -> Self {
        Self {
            current: KeySet::derive(&secrets.current),
            previous: secrets.previous.iter().map(|s| KeySet::derive(s)).collect(),
        }
    }

    /// Seals and signs everything written.
    pub fn current(&self) -> &KeySet {
        &self.current
    }

    /// Every key set, current first.
    pub fn all(&self) -> impl Iterator<Item = &KeySet> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// The key set a cookie names; `None` once its secret was retired.
    pub fn find(&self, id: &str) -> Option<&KeySet> {
        self.all().find(|keys| keys.id == id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A keyring whose secrets are `current` and `previous` each repeated to
    /// 32 characters.
    pub(crate) fn ring(current: &str, previous: &[&str]) -> Keyring {
        Keyring::new(&Secrets {
            current: current.repeat(32),
            previous: previous.iter().map(|s| s.repeat(32)).collect(),
        })
    }

    #[test]
    fn purposes_and_secrets_get_distinct_keys() {
        let a = KeySet::derive(&"a".repeat(32));
        let b = KeySet::derive(&"b".repeat(32));
        assert_ne!(a.seal, a.id_mac);
        assert_ne!(a.assertion_seed, a.seal);
        assert_ne!(a.assertion_seed, a.id_mac);
        assert_ne!(a.assertion_seed, b.assertion_seed);
        assert_ne!(a.seal, b.seal);
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 8);
        assert_eq!(KeySet::derive(&"a".repeat(32)).seal, a.seal);
    }
}
