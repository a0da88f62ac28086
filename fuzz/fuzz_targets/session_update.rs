//! `X-Session-Update` parsing (`session::protocol::take_instructions`) and
//! the merge-patch application with the session size bound
//! (`store::Change::apply`).
//!
//! Input: lines; the first is the stored session's data (used when it is a
//! JSON object), each further line one `X-Session-Update` header. Checks:
//! never panics; every instruction header is taken out of the response; a
//! record that is written never exceeds the bound; applying the same
//! patches again changes nothing more (RFC 7396 patches are idempotent).
#![no_main]

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sessiongate::fuzzing::{MAX_BYTES, apply_updates};
use sessiongate::session::protocol::take_instructions;
use sessiongate::store::{SessionData, SessionRecord};

const NOW: u64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let current = lines
        .next()
        .and_then(|first| serde_json::from_slice::<SessionData>(first).ok())
        .map(|data| SessionRecord {
            data,
            created_at: NOW - 10,
            expires_at: NOW + 10,
        });

    let mut headers = HeaderMap::new();
    let update = HeaderName::from_static("x-session-update");
    for line in lines {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(update.clone(), value);
        }
    }
    headers.insert("x-session-regenerate", HeaderValue::from_static("1"));
    let Ok(instructions) = take_instructions(&mut headers) else {
        assert!(
            headers.is_empty(),
            "a refused update left instructions behind"
        );
        return;
    };
    assert!(headers.is_empty(), "instructions reached the client");
    assert!(instructions.regenerate);

    let patches = instructions.updates;
    if let Ok(record) = apply_updates(current, patches.clone(), NOW) {
        if !patches.is_empty() {
            let len = serde_json::to_vec(&record.data)
                .map(|v| v.len())
                .unwrap_or(0);
            assert!(len <= MAX_BYTES, "{len} bytes written past the bound");
        }
        let again = apply_updates(Some(record.clone()), patches, NOW)
            .expect("a record within the bound stays within it");
        assert_eq!(again.data, record.data, "merge patch is not idempotent");
    }
});
