//! Who a session belongs to, as the identity index keeps it.
//!
//! `session.identity_key` names the session key whose value is the user.
//! The index never holds that value: it holds [`Identity`], the SHA-256 of
//! its canonical text, so an index key or column has a fixed size, holds no
//! control characters, and shows no user name to whoever reads the store.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::record::SessionData;

/// An identity value as the gateway reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum IdentityValue<'a> {
    /// No one is signed in: the key is absent, `null`, `false` or `""`.
    Absent,
    /// Someone is: a string as it is, a number as its JSON text (so `42`
    /// and `"42"` are one identity).
    Text(std::borrow::Cow<'a, str>),
    /// Present but not usable as an identity: `true`, an object or an
    /// array. The gateway refuses to write one (502).
    Invalid,
}

impl<'a> IdentityValue<'a> {
    /// What `value` (the identity key's value, if present) means.
    pub fn of(value: Option<&'a Value>) -> Self {
        match value {
            None | Some(Value::Null | Value::Bool(false)) => IdentityValue::Absent,
            Some(Value::String(text)) if text.is_empty() => IdentityValue::Absent,
            Some(Value::String(text)) => IdentityValue::Text(text.as_str().into()),
            Some(Value::Number(number)) => IdentityValue::Text(number.to_string().into()),
            Some(Value::Bool(true) | Value::Object(_) | Value::Array(_)) => IdentityValue::Invalid,
        }
    }
}

/// The index's form of an identity: base64url SHA-256 of its text, 43
/// characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity(String);

impl Identity {
    /// The identity of `text` (an admin's `?identity=` or a session's).
    pub fn of_text(text: &str) -> Self {
        let digest = Sha256::new_with_prefix(b"sessiongate/identity/")
            .chain_update(text.as_bytes())
            .finalize();
        Identity(base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            digest,
        ))
    }

    /// The identity a session's data holds under `key`, if it holds a
    /// usable one.
    pub fn of(data: &SessionData, key: &str) -> Option<Self> {
        match IdentityValue::of(data.get(key)) {
            IdentityValue::Text(text) => Some(Self::of_text(&text)),
            IdentityValue::Absent | IdentityValue::Invalid => None,
        }
    }

    /// The 43 characters, safe in a key, a column or a log line.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_classified() {
        for absent in [json!(null), json!(false), json!("")] {
            assert_eq!(IdentityValue::of(Some(&absent)), IdentityValue::Absent);
        }
        assert_eq!(IdentityValue::of(None), IdentityValue::Absent);
        for invalid in [json!(true), json!({"a": 1}), json!([1])] {
            assert_eq!(IdentityValue::of(Some(&invalid)), IdentityValue::Invalid);
        }
        assert_eq!(
            IdentityValue::of(Some(&json!(42))),
            IdentityValue::Text("42".into())
        );
    }

    #[test]
    fn the_index_form_is_fixed_size_and_hides_the_value() {
        let data = json!({"user": "alice\u{0}\n", "n": 42});
        let data = data.as_object().unwrap();
        let alice = Identity::of(data, "user").unwrap();
        assert_eq!(alice.as_str().len(), 43);
        assert!(!alice.as_str().contains("alice"));
        assert_eq!(alice, Identity::of_text("alice\u{0}\n"));
        assert_eq!(Identity::of(data, "n").unwrap(), Identity::of_text("42"));
        assert_eq!(Identity::of(data, "missing"), None);
    }
}
