//! express-session's `s:` cookie (`session::express::ExpressSigner`),
//! under a secret in rotation.
//!
//! Input, by its first byte: `0` → the rest is a cookie value (never
//! panics; an id it accepts signs back to a value that verifies);
//! otherwise the rest is an id to sign: the signed value verifies to it,
//! and any one byte changed does not.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sessiongate::config::Secrets;
use sessiongate::session::express::ExpressSigner;
use sessiongate::store::SessionId;

static SIGNER: LazyLock<ExpressSigner> = LazyLock::new(|| {
    ExpressSigner::new(&Secrets {
        current: "fuzz-current-secret-0123456789abcdef0123456789".into(),
        previous: vec!["legacy".into()],
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
        if let Ok(id) = SIGNER.verify(text) {
            let again = SIGNER.sign(&id);
            assert!(SIGNER.verify(&again).is_ok(), "a re-signed id verifies");
        }
        return;
    }
    // Ids the gateway can meet: express-session's 32 characters, and any
    // other up to the 128 the signer accepts.
    let plausible = (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        return;
    }
    let id = SessionId::from_trusted(text);
    let value = SIGNER.sign(&id);
    let verified = SIGNER.verify(&value).expect("a signed id verifies");
    assert_eq!(verified.as_str(), id.as_str());
    let mut bytes = value.into_bytes();
    let at = mode as usize % bytes.len();
    bytes[at] ^= 0x01;
    if let Ok(tampered) = String::from_utf8(bytes) {
        if let Ok(other) = SIGNER.verify(&tampered) {
            // Percent-decoding may read a changed escape as the same byte;
            // what verifies must still be the id that was signed.
            assert_eq!(other.as_str(), id.as_str(), "tampered cookie accepted");
        }
    }
});
