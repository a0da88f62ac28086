//! iron-session v8 cookies (`session.compat: iron-session`): the seal
//! format of `iron-webcrypto` (`Fe26.2`), as iron-session writes it.
//!
//! ```text
//! Fe26.2*<password id>*<salt>*<iv>*<ciphertext>*<expiry ms>*<hmac salt>*<hmac>~2
//! ```
//!
//! * `salt` and `hmac salt` are 32 random bytes as 64 lowercase hex
//!   characters; each derives a 32-byte key from the password with
//!   PBKDF2-HMAC-SHA1, one iteration (the library's defaults);
//! * the session JSON is encrypted with AES-256-CBC (PKCS#7) under a random
//!   16-byte `iv`; `iv` and ciphertext are base64url without padding;
//! * the HMAC-SHA256 (base64url) covers everything up to the expiry;
//! * `~2` is iron-session's own format version.
//!
//! This is iron-session's cipher, not the gateway's: the password is the
//! secret itself (iron-session has no key derivation of its own), so it is
//! used only in this mode. The primitives are RustCrypto's; only the
//! framing is written here. The MAC is compared in constant time.

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

use super::b64;
use crate::config::Secrets;
use crate::error::Error;
use crate::store::{SessionData, UnixMillis};

/// The seal format iron-webcrypto writes and reads.
const PREFIX: &str = "Fe26.2";
/// iron-session's format version after the seal.
const SESSION_VERSION: &str = "2";
/// The password id iron-session gives a string password.
const PASSWORD_ID: &str = "1";
const SALT_BYTES: usize = 32;
const IV_BYTES: usize = 16;

/// The passwords seals are made and opened with: `SESSION_SECRET`, then
/// `previous_secrets`, all under password id `1`.
pub struct IronPasswords {
    passwords: Vec<String>,
}

/// Never the passwords.
impl std::fmt::Debug for IronPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IronPasswords({})", self.passwords.len())
    }
}

/// What an opened seal holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The session object.
    pub data: SessionData,
    /// The seal's own expiry.
    pub expires_at: UnixMillis,
}

/// Why a cookie is not an iron-session seal we accept (logged at debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not `Fe26.2*…~2` with eight parts.
    Format,
    /// A password id other than `1`.
    PasswordId,
    /// The expiry has passed (or the seal has none).
    Expired,
    /// The MAC verifies under no password.
    Mac,
    /// It decrypts to something that is not a JSON object.
    Content,
}

impl IronPasswords {
    /// The current secret and the previous ones, in order.
    pub fn new(secrets: &Secrets) -> Self {
        Self {
            passwords: std::iter::once(&secrets.current)
                .chain(&secrets.previous)
                .cloned()
                .collect(),
        }
    }

    /// Seals `data` with the current password, expiring at `expires_at`.
    ///
    /// # Errors
    ///
    /// An internal error when the OS random generator fails.
    pub fn seal(&self, data: &SessionData, expires_at: UnixMillis) -> Result<String, Error> {
        let password = self.passwords.first().map_or("", String::as_str);
        let plaintext = serde_json::to_vec(data)
            .map_err(|_| Error::internal("cannot serialize the session"))?;
        let mut salt = [0u8; SALT_BYTES];
        let mut mac_salt = [0u8; SALT_BYTES];
        let mut iv = [0u8; IV_BYTES];
        for bytes in [&mut salt[..], &mut mac_salt[..], &mut iv[..]] {
            getrandom::fill(bytes)
                .map_err(|e| Error::internal(format!("the OS random generator failed: {e}")))?;
        }
        let (salt, mac_salt) = (hex(&salt), hex(&mac_salt));
        let key = derive(password, &salt);
        let encryptor = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into());
        let ciphertext = encryptor.encrypt_padded_vec::<Pkcs7>(&plaintext);
        let base = format!(
            "{PREFIX}*{PASSWORD_ID}*{salt}*{}*{}*{expires_at}",
            b64::encode(&iv),
            b64::encode(&ciphertext)
        );
        let tag = mac(password, &mac_salt, &base).finalize().into_bytes();
        Ok(format!(
            "{base}*{mac_salt}*{}~{SESSION_VERSION}",
            b64::encode(&tag)
        ))
    }

    /// Opens a seal made with any of the passwords, if it has not expired
    /// at `now`.
    ///
    /// # Errors
    ///
    /// Why the seal is refused; the caller starts a new session.
    pub fn open(&self, value: &str, now: UnixMillis) -> Result<Opened, Rejected> {
        let (seal, version) = value.rsplit_once('~').ok_or(Rejected::Format)?;
        let parts: Vec<&str> = seal.split('*').collect();
        let [prefix, id, salt, iv, ciphertext, expiry, mac_salt, tag] = parts[..] else {
            return Err(Rejected::Format);
        };
        if prefix != PREFIX || version != SESSION_VERSION {
            return Err(Rejected::Format);
        }
        if id != PASSWORD_ID {
            return Err(Rejected::PasswordId);
        }
        // iron-session writes every seal with an expiry; one without would
        // live for ever.
        let expires_at: UnixMillis = match expiry.parse() {
            Ok(at) if expiry.bytes().all(|b| b.is_ascii_digit()) => at,
            _ => return Err(Rejected::Expired),
        };
        if expires_at <= now {
            return Err(Rejected::Expired);
        }
        let tag = b64::decode(tag).ok_or(Rejected::Mac)?;
        let base = parts[..6].join("*");
        let password = self
            .passwords
            .iter()
            .find(|password| mac(password, mac_salt, &base).verify_slice(&tag).is_ok())
            .ok_or(Rejected::Mac)?;
        let iv: [u8; IV_BYTES] = b64::decode(iv)
            .and_then(|iv| iv.try_into().ok())
            .ok_or(Rejected::Content)?;
        let ciphertext = b64::decode(ciphertext).ok_or(Rejected::Content)?;
        let key = derive(password, salt);
        let plaintext = cbc::Decryptor::<Aes256>::new(&key.into(), &iv.into())
            .decrypt_padded_vec::<Pkcs7>(&ciphertext)
            .map_err(|_| Rejected::Content)?;
        let data: SessionData =
            serde_json::from_slice(&plaintext).map_err(|_| Rejected::Content)?;
        Ok(Opened { data, expires_at })
    }
}

/// iron-webcrypto's key for a string password: PBKDF2-HMAC-SHA1 over the
/// salt's text, one iteration, 32 bytes.
fn derive(password: &str, salt: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt.as_bytes(), 1, &mut key);
    key
}

/// The HMAC-SHA256 of `base` under the key derived with `salt`.
fn mac(password: &str, salt: &str, base: &str) -> Hmac<Sha256> {
    let key = derive(password, salt);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys"));
    mac.update(base.as_bytes());
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwords(current: &str, previous: &[&str]) -> IronPasswords {
        IronPasswords::new(&Secrets {
            current: current.repeat(32),
            previous: previous.iter().map(|s| s.repeat(32)).collect(),
        })
    }

    fn data() -> SessionData {
        serde_json::from_str(r#"{"user":"ada","n":[1,{}]}"#).unwrap()
    }

    #[test]
    fn round_trips_in_iron_sessions_shape() {
        let keys = passwords("a", &[]);
        let value = keys.seal(&data(), 10_000).unwrap();
        assert!(value.starts_with("Fe26.2*1*"), "{value}");
        assert!(value.ends_with("~2"), "{value}");
        assert_eq!(value.matches('*').count(), 7);
        assert_eq!(
            keys.open(&value, 5_000),
            Ok(Opened {
                data: data(),
                expires_at: 10_000
            })
        );
    }

    /// A seal made by iron-session 8.0.4 (Node) with the password
    /// `"a" * 32`, expiring at 4102444800000 (2100-01-01).
    #[test]
    fn opens_a_seal_iron_session_made() {
        let keys = passwords("a", &[]);
        let opened = keys.open(NODE_SEAL, 0).unwrap();
        assert_eq!(
            serde_json::Value::Object(opened.data),
            serde_json::json!({"user": "ada"})
        );
        assert_eq!(opened.expires_at, 4_102_444_800_000);
    }

    const NODE_SEAL: &str = include_str!("iron_node_seal.txt");

    #[test]
    fn refuses_what_it_must() {
        let keys = passwords("a", &[]);
        let value = keys.seal(&data(), 10_000).unwrap();
        assert_eq!(keys.open(&value, 10_000), Err(Rejected::Expired));
        assert_eq!(passwords("b", &[]).open(&value, 0), Err(Rejected::Mac));
        assert_eq!(
            keys.open(&value.replace("Fe26.2*", "Fe26.1*"), 0),
            Err(Rejected::Format)
        );
        assert_eq!(
            keys.open(&value.replace("~2", "~1"), 0),
            Err(Rejected::Format)
        );
        assert_eq!(
            keys.open(&value.replacen("*1*", "*2*", 1), 0),
            Err(Rejected::PasswordId)
        );
        let tampered = value.replacen("*10000*", "*20000*", 1);
        assert_eq!(keys.open(&tampered, 0), Err(Rejected::Mac));
        for garbage in ["", "~2", "Fe26.2~2", "a*b*c*d*e*f*g*h~2", "Fe26.2*1*****~2"] {
            assert!(keys.open(garbage, 0).is_err(), "{garbage}");
        }
    }

    #[test]
    fn previous_secrets_open_and_the_current_one_seals() {
        let old = passwords("old", &[]).seal(&data(), 10_000).unwrap();
        let rotated = passwords("new", &["old"]);
        assert!(rotated.open(&old, 0).is_ok());
        let fresh = rotated.seal(&data(), 10_000).unwrap();
        assert_eq!(passwords("old", &[]).open(&fresh, 0), Err(Rejected::Mac));
    }
}
