//! The sealed-cookie open (`session::sealed::open`), under a keyring in
//! rotation (a current and a previous secret).
//!
//! Input, by its first byte: `0` → the rest is a cookie value as a client
//! sends it (must never panic, and opening is deterministic); otherwise the
//! rest is `JSON object \0 tamper position`: the session is sealed under
//! either key, must open to itself, and with one byte changed must not open.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sessiongate::config::Secrets;
use sessiongate::session::keys::Keyring;
use sessiongate::session::sealed::{self, SealedSession};
use sessiongate::store::{SessionData, SessionId, SessionRecord};

const NAME: &str = "sid";
const NOW: u64 = 1_700_000_000_000;

static KEYS: LazyLock<Keyring> = LazyLock::new(|| {
    Keyring::new(&Secrets {
        current: "fuzz-current-secret-0123456789abcdef0123456789".into(),
        previous: vec!["fuzz-previous-secret-0123456789abcdef012345678".into()],
    })
});
static OLD_KEYS: LazyLock<Keyring> = LazyLock::new(|| {
    Keyring::new(&Secrets {
        current: "fuzz-previous-secret-0123456789abcdef012345678".into(),
        previous: vec![],
    })
});

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode == 0 {
        let Ok(value) = std::str::from_utf8(rest) else {
            return;
        };
        let first = sealed::open(&KEYS, NAME, value, NOW);
        assert_eq!(first, sealed::open(&KEYS, NAME, value, NOW));
        if let Some(session) = first {
            assert!(session.record.expires_at > NOW, "an expired seal opened");
        }
        return;
    }
    let (json, position) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(data) = serde_json::from_slice::<SessionData>(json) else {
        return;
    };
    let session = SealedSession {
        id: SessionId::from_trusted("fuzzfuzzfuzzfuzzfuzzfuzz"),
        record: SessionRecord {
            data,
            created_at: NOW - 1,
            expires_at: NOW + 1,
        },
    };
    let sealer = if mode % 2 == 0 { &*KEYS } else { &*OLD_KEYS };
    let Ok(value) = sealed::seal(sealer, NAME, &session) else {
        return;
    };
    assert_eq!(
        sealed::open(&KEYS, NAME, &value, NOW).as_ref(),
        Some(&session)
    );
    assert_eq!(
        sealed::open(&KEYS, "other", &value, NOW),
        None,
        "opened under another name"
    );

    let mut bytes = value.into_bytes();
    let at = position.iter().fold(0usize, |acc, b| {
        acc.wrapping_mul(256).wrapping_add(*b as usize)
    }) % bytes.len();
    let flip = position.first().copied().unwrap_or(1).max(1);
    bytes[at] ^= flip;
    if let Ok(tampered) = String::from_utf8(bytes) {
        assert_eq!(
            sealed::open(&KEYS, NAME, &tampered, NOW),
            None,
            "a tampered seal opened"
        );
    }
});
