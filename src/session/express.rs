//! express-session's cookie (`session.compat: express-session`):
//! `s:<id>.<signature>`, as `cookie-signature` signs it.
//!
//! * the signature is HMAC-SHA256 of the id keyed with the secret **itself**
//!   (express-session has no key derivation), in standard base64 with the
//!   trailing `=` removed;
//! * the value is percent-encoded in `Set-Cookie` as JavaScript's
//!   `encodeURIComponent` does (`s%3A…`, `+` → `%2B`, `/` → `%2F`), and
//!   percent-decoded when read, as the `cookie` module does;
//! * the current secret signs; it and the previous ones verify, in order,
//!   like express-session's secret array;
//! * new ids are what `uid-safe` makes: 24 bytes from the OS CSPRNG,
//!   base64url, 32 characters.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use crate::config::Secrets;
use crate::error::Error;
use crate::store::SessionId;

/// What `encodeURIComponent` leaves alone: `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The longest id accepted from a cookie: what express-mysql-session's
/// `session_id` column holds.
const MAX_ID_LEN: usize = 128;

/// The signers of express-session's cookie: one HMAC per secret, current
/// first.
pub struct ExpressSigner {
    signers: Vec<Hmac<Sha256>>,
}

/// Never the keys.
impl std::fmt::Debug for ExpressSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExpressSigner({})", self.signers.len())
    }
}

/// Why a cookie value is refused (logged at debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not `s:<id>.<signature>` (express-session ignores unsigned cookies).
    Format,
    /// The signature verifies under no secret.
    Signature,
}

impl ExpressSigner {
    /// One signer per secret: `SESSION_SECRET`, then `previous_secrets`.
    pub fn new(secrets: &Secrets) -> Self {
        let signers = std::iter::once(&secrets.current)
            .chain(&secrets.previous)
            .map(|secret| {
                <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
            })
            .collect();
        Self { signers }
    }

    fn mac(&self, index: usize, id: &str) -> Option<Hmac<Sha256>> {
        let mut mac = self.signers.get(index)?.clone();
        mac.update(id.as_bytes());
        Some(mac)
    }

    /// The `Set-Cookie` value for `id`: `s:<id>.<signature>`, percent-encoded.
    pub fn sign(&self, id: &SessionId) -> String {
        let signature = self
            .mac(0, id.as_str())
            .map(|mac| STANDARD_NO_PAD.encode(mac.finalize().into_bytes()))
            .unwrap_or_default();
        let value = format!("s:{}.{signature}", id.as_str());
        utf8_percent_encode(&value, URI_COMPONENT).to_string()
    }

    /// The id in a cookie value as the client sent it, if its signature
    /// verifies under any secret (compared in constant time).
    ///
    /// # Errors
    ///
    /// Why the value is refused; the caller starts a new session.
    pub fn verify(&self, raw: &str) -> Result<SessionId, Rejected> {
        let decoded: Cow<'_, str> = if raw.contains('%') {
            // Into a buffer of the final size at once: the crate's own
            // conversion grows its buffer as it goes, reallocating.
            let mut bytes = Vec::with_capacity(raw.len());
            bytes.extend(percent_decode_str(raw));
            String::from_utf8(bytes)
                .map_err(|_| Rejected::Format)?
                .into()
        } else {
            raw.into()
        };
        let signed = decoded.strip_prefix("s:").ok_or(Rejected::Format)?;
        let (id, signature) = signed.rsplit_once('.').ok_or(Rejected::Format)?;
        if id.is_empty()
            || id.len() > MAX_ID_LEN
            || !id
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        {
            return Err(Rejected::Format);
        }
        let tag = STANDARD_NO_PAD
            .decode(signature)
            .map_err(|_| Rejected::Signature)?;
        (0..self.signers.len())
            .filter_map(|index| self.mac(index, id))
            .any(|mac| mac.verify_slice(&tag).is_ok())
            .then(|| SessionId::from_trusted(id))
            .ok_or(Rejected::Signature)
    }
}

/// A new id as `uid-safe` makes one for express-session: 24 bytes from the
/// OS CSPRNG, base64url, 32 characters.
///
/// # Errors
///
/// An internal error when the OS random generator fails.
pub fn new_id() -> Result<SessionId, Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::internal(format!("cannot create a session id: {e}")))?;
    Ok(SessionId::from_trusted(URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(current: &str, previous: &[&str]) -> ExpressSigner {
        ExpressSigner::new(&Secrets {
            current: current.into(),
            previous: previous.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// `cookie-signature`'s `sign('hello', 'tobiiscool')`, from its README
    /// and tests: the value express-session would put in the cookie.
    #[test]
    fn signs_as_cookie_signature_does() {
        let keys = signer("tobiiscool", &[]);
        let value = keys.sign(&SessionId::from_trusted("hello"));
        assert_eq!(
            value,
            "s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI"
        );
        assert_eq!(keys.verify(&value), Ok(SessionId::from_trusted("hello")));
        assert_eq!(
            keys.verify("s:hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"),
            Ok(SessionId::from_trusted("hello"))
        );
    }

    #[test]
    fn refuses_what_express_session_refuses() {
        let keys = signer("tobiiscool", &[]);
        let value = keys.sign(&SessionId::from_trusted("hello"));
        assert_eq!(
            signer("another", &[]).verify(&value),
            Err(Rejected::Signature)
        );
        assert_eq!(
            keys.verify("hello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI"),
            Err(Rejected::Format),
            "unsigned"
        );
        assert_eq!(
            keys.verify("s%3Ahellp.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI"),
            Err(Rejected::Signature),
            "another id"
        );
        for garbage in [
            "",
            "s:",
            "s:.",
            "s:hello",
            "s:hello.",
            "s:hello.!!",
            "%zz",
            "s%3A%FF.x",
        ] {
            assert!(keys.verify(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn previous_secrets_verify_in_order_and_the_current_one_signs() {
        let id = new_id().unwrap();
        let old = signer("short-legacy", &[]).sign(&id);
        let rotated = signer(&"n".repeat(32), &["other", "short-legacy"]);
        assert_eq!(rotated.verify(&old), Ok(id.clone()));
        let fresh = rotated.sign(&id);
        assert_eq!(
            signer("short-legacy", &[]).verify(&fresh),
            Err(Rejected::Signature)
        );
    }

    #[test]
    fn ids_are_uid_safe_sized() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
