//! Entry points for the fuzz targets in `fuzz/` (see `docs/reliability.md`).
//!
//! Not part of the API: hidden from the docs, and free to change with the
//! fuzz targets. Almost every parser that takes outside input is already
//! public and the targets call it directly; this module only opens what is
//! private to its store (the DynamoDB item layout) and bundles the steps a
//! request runs in one go, so that a target exercises them exactly as the
//! gateway does.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::DynamoConfig;
use crate::store::dynamodb::item::Layout;
use crate::store::{
    Change, Identity, Lifetime, NativeCodec, RecordCodec, Refusal, SessionRecord, UnixMillis,
};

pub use crate::store::dynamodb::item::Item as DynamoItem;
/// A DynamoDB attribute value, as the SDK represents it.
pub use aws_sdk_dynamodb::types::AttributeValue;

/// The session size bound the targets apply (`session.max_bytes`' default
/// order of magnitude, small enough that fuzzed patches reach it).
pub const MAX_BYTES: usize = 4_096;

/// What reading a stored record produced, for the target's checks.
#[derive(Debug)]
pub struct Decoded {
    /// The record, when the stored text decodes.
    pub record: Option<SessionRecord>,
    /// The identity the record would be indexed under (key `user`).
    pub identity: Option<Identity>,
}

/// Decodes stored text as every server store does (the native codec), with
/// the identity lookup the store core runs on it.
pub fn decode_stored(text: &[u8], expires_at: UnixMillis) -> Decoded {
    let record = NativeCodec.decode(text, expires_at).ok();
    let identity = record
        .as_ref()
        .and_then(|record| Identity::of(&record.data, "user"));
    Decoded { record, identity }
}

/// Reads a DynamoDB item as the DynamoDB store does: the layout splits out
/// the text and the expiry, then the codec decodes the text. `None` when the
/// item holds no expiry (the core treats it as no session).
pub fn decode_dynamodb_item(item: DynamoItem) -> Option<Decoded> {
    let layout = Layout::from_config(&DynamoConfig::default());
    let (text, expires_at, rest) = layout.split(item);
    let _ = layout.id_of(&rest);
    let _ = Layout::next_version(Some(&rest));
    Some(decode_stored(&text, expires_at?))
}

/// Applies `X-Session-Update` patches to `current` as a commit does: a
/// [`Change`] bounded by [`MAX_BYTES`].
///
/// # Errors
///
/// The [`Refusal`] the store would answer with.
pub fn apply_updates(
    current: Option<SessionRecord>,
    patches: Vec<Map<String, Value>>,
    now: UnixMillis,
) -> Result<SessionRecord, Refusal> {
    let change = Change {
        patches,
        now,
        lifetime: Lifetime {
            idle: Duration::from_secs(3_600),
            absolute: Some(Duration::from_secs(86_400)),
        },
        seen: None,
        must_exist: false,
        max_bytes: MAX_BYTES,
    };
    change.apply(current)
}
