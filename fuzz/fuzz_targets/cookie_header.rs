//! The `Cookie` header split and the session cookie lookup, chunks included
//! (`session::cookies::{read, strip, split}`).
//!
//! Input: the `Cookie` header lines, one per `\n`. Checks: the lookup never
//! panics; after `strip` no part of the session cookie is left and the other
//! cookies all are; a value read back splits into chunks that join to it.
#![no_main]

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sessiongate::session::cookies;

const NAME: &str = "sid";

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, value);
        }
    }
    let incoming = cookies::read(&headers, NAME);
    if incoming.value.is_some() {
        assert!(
            incoming.chunks.first() == Some(&0),
            "a value without the main cookie"
        );
    }
    assert!(
        incoming.chunks.windows(2).all(|w| w[0] < w[1]),
        "chunks not sorted"
    );

    if let Some(value) = &incoming.value {
        if let Some(parts) = cookies::split(value, 50) {
            assert!(parts.iter().all(|p| p.len() <= cookies::CHUNK_LEN));
            assert_eq!(
                &parts.concat(),
                value,
                "split then join is not the identity"
            );
        }
    }

    let before = headers.get_all(COOKIE).iter().count();
    let mut stripped = headers.clone();
    cookies::strip(&mut stripped, NAME);
    let after = cookies::read(&stripped, NAME);
    assert!(
        !after.is_present(),
        "strip left {:?} (had {before} lines)",
        after.chunks
    );
    assert!(
        stripped.get_all(COOKIE).iter().count() <= 1,
        "strip must join into one line"
    );
});
