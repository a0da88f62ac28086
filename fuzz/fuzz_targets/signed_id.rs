//! The signed-id check of the server stores' cookie
//! (`session::signed_id::verify`), under a keyring in rotation.
//!
//! Input, by its first byte: `0` → the rest is a cookie value (never
//! panics; an id it accepts is the value's own prefix); otherwise the rest
//! is an id to sign: a signed id verifies, and any one byte changed does not.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sessiongate::config::Secrets;
use sessiongate::session::keys::Keyring;
use sessiongate::session::signed_id;
use sessiongate::store::SessionId;

static KEYS: LazyLock<Keyring> = LazyLock::new(|| {
    Keyring::new(&Secrets {
        current: "fuzz-current-secret-0123456789abcdef0123456789".into(),
        previous: vec!["fuzz-previous-secret-0123456789abcdef012345678".into()],
    })
});

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode == 0 {
        if let Some(id) = signed_id::verify(&KEYS, text) {
            assert!(text.starts_with(&format!("{}.", id.as_str())));
        }
        return;
    }
    let valid = (22..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let id = SessionId::from_trusted(text);
    let value = signed_id::sign(&KEYS, &id);
    assert_eq!(signed_id::verify(&KEYS, &value).is_some(), valid);
    let mut bytes = value.into_bytes();
    let at = mode as usize % bytes.len();
    bytes[at] ^= 0x01;
    if let Ok(tampered) = String::from_utf8(bytes) {
        // The last character too: its 2 unused bits must be zero, so a tag
        // has one spelling.
        assert_eq!(
            signed_id::verify(&KEYS, &tampered),
            None,
            "tampered id accepted"
        );
    }
});
