//! Property tests of the codecs, run in CI: what must hold for *any*
//! session, secret and patch, not only the examples in the unit tests.

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use proptest::prelude::*;
use serde_json::{Map, Value};
use sessiongate::config::{CookieConfig, Secrets};
use sessiongate::session::cookies::{self, CookieWriter};
use sessiongate::session::keys::Keyring;
use sessiongate::session::sealed::{self, SealedSession};
use sessiongate::session::signed_id;
use sessiongate::store::merge_patch;
use sessiongate::store::{
    Change, Lifetime, NativeCodec, RecordCodec, Refusal, SessionId, SessionRecord,
};

/// Any JSON value without `null` (a merge patch cannot carry a `null`
/// value, it means "remove"), nested a few levels.
fn json_without_null() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~\u{e9}\u{1F600}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]{1,3}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-e]{1,3}", json_without_null(), 0..6)
        .prop_map(|map| map.into_iter().collect())
}

fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{32,48}"
}

fn keyring(current: &str, previous: &[String]) -> Keyring {
    Keyring::new(&Secrets {
        current: current.to_owned(),
        previous: previous.to_vec(),
    })
}

fn session(data: Map<String, Value>) -> SealedSession {
    SealedSession {
        id: SessionId::generate().unwrap(),
        record: SessionRecord {
            data,
            created_at: 1_000,
            expires_at: u64::MAX / 2,
        },
    }
}

/// The merge patch that turns `from` into `to` (RFC 7396's diff).
fn diff(from: &Map<String, Value>, to: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in from.keys().filter(|key| !to.contains_key(*key)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in to {
        match (from.get(key), value) {
            (Some(Value::Object(a)), Value::Object(b)) => {
                let inner = diff(a, b);
                if !inner.is_empty() {
                    patch.insert(key.clone(), Value::Object(inner));
                }
            }
            (Some(old), new) if old == new => {}
            (_, new) => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    patch
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Seal then open gives the session back, under the current secret and
    /// after a rotation that keeps the sealing secret as a previous one.
    #[test]
    fn seal_then_open_is_the_identity(data in object(), old in secret(), new in secret()) {
        let sealed_with_old = keyring(&old, &[]);
        let original = session(data);
        let value = sealed::seal(&sealed_with_old, "sid", &original).unwrap();
        for keys in [sealed_with_old, keyring(&new, std::slice::from_ref(&old))] {
            let opened = sealed::open(&keys, "sid", &value, 2_000).expect("opens");
            prop_assert_eq!(&opened.id, &original.id);
            prop_assert_eq!(&opened.record, &original.record);
        }
    }

    /// Changing any one byte of a sealed value means it never opens.
    #[test]
    fn a_tampered_byte_never_opens(data in object(), key in secret(), at in any::<prop::sample::Index>(), with in 0x21u8..0x7f) {
        let keys = keyring(&key, &[]);
        let value = sealed::seal(&keys, "sid", &session(data)).unwrap();
        let mut bytes = value.into_bytes();
        let at = at.index(bytes.len());
        prop_assume!(bytes[at] != with);
        bytes[at] = with;
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert!(sealed::open(&keys, "sid", &tampered, 2_000).is_none());
    }

    /// RFC 7396: the diff of two documents, applied to the first, gives the
    /// second.
    #[test]
    fn merge_patch_of_a_diff_turns_one_document_into_the_other(from in object(), to in object()) {
        let patch = diff(&from, &to);
        let mut document = from.clone();
        merge_patch::apply_object(&mut document, &patch);
        prop_assert_eq!(document, to);
    }

    /// Splitting a sealed value into chunks and joining them is the
    /// identity, and every chunk's `Set-Cookie` (longest attributes) stays
    /// under the 4,096 bytes browsers keep.
    #[test]
    fn chunks_join_back_and_fit_in_a_cookie(data in object(), key in secret(), padding in 0usize..12_000) {
        let keys = keyring(&key, &[]);
        let mut data = data;
        data.insert("pad".into(), Value::String("x".repeat(padding)));
        let value = sealed::seal(&keys, "sid", &session(data)).unwrap();
        let chunks = cookies::split(&value, 50).expect("fits in 50 chunks");
        prop_assert_eq!(chunks.concat(), value.clone());
        let config = CookieConfig {
            domain: Some(format!("{}.example.com", "d".repeat(40))),
            path: format!("/{}", "p".repeat(40)),
            ..CookieConfig::default()
        };
        let writer = CookieWriter { config: &config, secure: true };
        for (index, chunk) in chunks.iter().enumerate() {
            let line = writer
                .set(&cookies::chunk_name("sid", index), chunk, u64::from(u32::MAX))
                .expect("a valid Set-Cookie");
            prop_assert!(line.len() < 4_096, "{} bytes", line.len());
        }
    }

    /// The other half of chunking: the chunks a client sends back, in any
    /// order and among other cookies, are joined into the sealed value, and
    /// that opens to the session.
    #[test]
    fn chunks_sent_back_in_any_order_read_as_the_value(
        data in object(),
        key in secret(),
        padding in 0usize..12_000,
        order in any::<u64>(),
        lines in 1usize..4,
    ) {
        let keys = keyring(&key, &[]);
        let mut data = data;
        data.insert("pad".into(), Value::String("x".repeat(padding)));
        let original = session(data);
        let value = sealed::seal(&keys, "sid", &original).unwrap();
        let chunks = cookies::split(&value, 50).expect("fits in 50 chunks");
        let mut pairs: Vec<String> = chunks
            .iter()
            .enumerate()
            .map(|(index, chunk)| format!("{}={chunk}", cookies::chunk_name("sid", index)))
            .collect();
        pairs.push("other=1".into());
        pairs.push("sidx=2".into());
        // A deterministic shuffle from the drawn seed.
        let mut seed = order;
        for i in (1..pairs.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            pairs.swap(i, (seed >> 33) as usize % (i + 1));
        }
        let mut headers = HeaderMap::new();
        for line in pairs.chunks(pairs.len().div_ceil(lines)) {
            headers.append(COOKIE, HeaderValue::from_str(&line.join("; ")).unwrap());
        }
        let incoming = cookies::read(&headers, "sid");
        prop_assert_eq!(incoming.value.as_deref(), Some(value.as_str()));
        prop_assert_eq!(incoming.chunks, (0..chunks.len()).collect::<Vec<_>>());
        let opened = sealed::open(&keys, "sid", &value, 2_000).expect("opens");
        prop_assert_eq!(opened, original);
    }

    /// A signed id verifies under its key and after a rotation that keeps
    /// that key as a previous one, never under an unrelated key, and never
    /// with any one byte changed.
    #[test]
    fn signed_ids_verify_only_untampered(old in secret(), new in secret(), at in any::<prop::sample::Index>(), with in 0x21u8..0x7f) {
        prop_assume!(old != new);
        let id = SessionId::generate().unwrap();
        let value = signed_id::sign(&keyring(&old, &[]), &id);
        prop_assert_eq!(signed_id::verify(&keyring(&old, &[]), &value), Some(id.clone()));
        prop_assert_eq!(signed_id::verify(&keyring(&new, std::slice::from_ref(&old)), &value), Some(id));
        prop_assert_eq!(signed_id::verify(&keyring(&new, &[]), &value), None);
        let mut bytes = value.into_bytes();
        let at = at.index(bytes.len());
        // The last character too: its unused low bits must be zero (the
        // decoder refuses non-canonical base64), so no second spelling of
        // a tag verifies.
        prop_assume!(bytes[at] != with);
        bytes[at] = with;
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(signed_id::verify(&keyring(&old, &[]), &tampered), None);
    }

    /// Every server store keeps a session as the native codec's text:
    /// encoding then decoding is the identity.
    #[test]
    fn stored_records_decode_to_what_was_encoded(data in object(), created in any::<u64>(), expires in any::<u64>()) {
        let record = SessionRecord { data, created_at: created, expires_at: expires };
        let text = NativeCodec.encode(&record);
        prop_assert_eq!(NativeCodec.decode(&text, expires), Ok(record));
    }

    /// An update goes through `Change::apply` with the size bound: the
    /// diff turns one document into the other when the result fits, and is
    /// refused, naming the size, when it does not.
    #[test]
    fn updates_apply_as_merge_patches_within_the_size_bound(from in object(), to in object(), max_bytes in 2usize..400) {
        let current = SessionRecord { data: from.clone(), created_at: 1_000, expires_at: 10_000 };
        let change = Change {
            patches: vec![diff(&from, &to)],
            now: 2_000,
            lifetime: Lifetime { idle: std::time::Duration::from_secs(60), absolute: None },
            seen: None,
            must_exist: true,
            max_bytes,
        };
        let size = serde_json::to_vec(&to).unwrap().len();
        match change.apply(Some(current)) {
            Ok(record) => {
                // An empty patch (the documents are equal) is no growth and
                // is not measured.
                prop_assert!(size <= max_bytes || change.patches[0].is_empty());
                prop_assert_eq!(record.data, to);
                prop_assert_eq!(record.expires_at, 62_000);
            }
            Err(refusal) => prop_assert_eq!(refusal, Refusal::TooLarge { bytes: size, limit: max_bytes }),
        }
    }
}

/// Every other spelling of a signed id's last tag character (which carries
/// unused bits) is refused: a signed id has exactly one valid form.
#[test]
fn a_signed_id_has_one_spelling() {
    let keys = keyring(&"k".repeat(40), &[]);
    let id = SessionId::generate().unwrap();
    let value = signed_id::sign(&keys, &id);
    let (head, last) = value.split_at(value.len() - 1);
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for other in alphabet.chars().filter(|c| !last.starts_with(*c)) {
        let respelled = format!("{head}{other}");
        assert_eq!(signed_id::verify(&keys, &respelled), None, "{respelled}");
    }
}
