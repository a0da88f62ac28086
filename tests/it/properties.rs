//! Property tests of the codecs, run in CI: what must hold for *any*
//! session, secret and patch, not only the examples in the unit tests.

use proptest::prelude::*;
use serde_json::{Map, Value};
use sessiongate::config::{CookieConfig, Secrets};
use sessiongate::session::cookies::{self, CookieWriter};
use sessiongate::session::keys::Keyring;
use sessiongate::session::sealed::{self, SealedSession};
use sessiongate::store::merge_patch;
use sessiongate::store::{SessionId, SessionRecord};

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
}
