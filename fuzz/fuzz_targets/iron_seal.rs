//! iron-session v8 seals (`session::iron::IronPasswords`), with a password
//! in rotation.
//!
//! Input, by its first byte: `0` → the rest is a cookie value (never
//! panics; what opens is a JSON object); otherwise the rest, as JSON, is
//! sealed: the seal opens to the same object, and any one byte changed
//! does not open.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sessiongate::config::Secrets;
use sessiongate::session::iron::IronPasswords;

static PASSWORDS: LazyLock<IronPasswords> = LazyLock::new(|| {
    IronPasswords::new(&Secrets {
        current: "fuzz-current-secret-0123456789abcdef0123456789".into(),
        previous: vec!["fuzz-previous-secret-0123456789abcdef012345678".into()],
    })
});

const NOW: u64 = 1_800_000_000_000;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = PASSWORDS.open(text, NOW);
        }
        return;
    }
    let Ok(serde_json::Value::Object(data)) = serde_json::from_slice(rest) else {
        return;
    };
    let Ok(seal) = PASSWORDS.seal(&data, NOW + 60_000) else {
        return;
    };
    let opened = PASSWORDS.open(&seal, NOW).expect("a fresh seal opens");
    assert_eq!(opened.data, data);
    assert!(
        PASSWORDS.open(&seal, NOW + 60_001).is_err(),
        "an expired seal opens"
    );
    let mut bytes = seal.into_bytes();
    let at = mode as usize % bytes.len();
    bytes[at] ^= 0x01;
    if let Ok(tampered) = String::from_utf8(bytes) {
        assert!(
            PASSWORDS.open(&tampered, NOW).is_err(),
            "tampered seal opened"
        );
    }
});
