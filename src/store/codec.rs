//! How a record is written into a store that keeps one text blob per
//! session (every server store).
//!
//! The expiry is not in the blob: each backend keeps it in its native place
//! (a Redis key TTL, DynamoDB's TTL attribute, MySQL's `expires` column), so
//! that a touch moves only the expiry. This seam is where a codec for another
//! layout plugs in: [`express`] writes what express-session stores.

pub mod express;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::loaded::LoadedRecord;
use super::record::{SessionData, SessionRecord, UnixMillis};

/// Turns a record's data and creation time into the stored text and back.
pub trait RecordCodec: Send + Sync + 'static {
    /// The stored text for `record`'s data and creation time.
    fn encode(&self, record: &SessionRecord) -> Vec<u8>;

    /// Rebuilds a record from stored text; `expires_at` comes from the
    /// backend's native expiry.
    fn decode(&self, text: &[u8], expires_at: UnixMillis) -> Result<SessionRecord, String>;

    /// As [`RecordCodec::decode`], leaving the data as text where the
    /// layout holds it as it is sent upstream (see [`LoadedRecord`]).
    fn decode_lazily(&self, text: &[u8], expires_at: UnixMillis) -> Result<LoadedRecord, String> {
        self.decode(text, expires_at).map(LoadedRecord::parsed)
    }
}

/// sessiongate's own layout: `{"v":1,"created":<ms>,"data":{...}}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeCodec;

#[derive(Serialize)]
struct BodyOut<'a> {
    v: u8,
    created: UnixMillis,
    data: &'a SessionData,
}

#[derive(Deserialize)]
struct BodyIn<'a> {
    v: u8,
    created: UnixMillis,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl RecordCodec for NativeCodec {
    fn encode(&self, record: &SessionRecord) -> Vec<u8> {
        let body = BodyOut {
            v: 1,
            created: record.created_at,
            data: &record.data,
        };
        // A map of JSON values always serializes.
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }

    fn decode(&self, text: &[u8], expires_at: UnixMillis) -> Result<SessionRecord, String> {
        self.decode_lazily(text, expires_at)?
            .into_record()
            .map_err(|e| e.to_string())
    }

    fn decode_lazily(&self, text: &[u8], expires_at: UnixMillis) -> Result<LoadedRecord, String> {
        let body: BodyIn = serde_json::from_slice(text)
            .map_err(|e| format!("stored session is not readable: {e}"))?;
        if body.v != 1 {
            return Err(format!(
                "stored session has unknown format version {}",
                body.v
            ));
        }
        LoadedRecord::from_text(body.data, body.created, expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_json_exactly() {
        let data: SessionData = serde_json::from_str(
            r#"{"z":[],"a":{"n":{}},"big":123456789012345678901234567890,"f":1.50}"#,
        )
        .unwrap();
        let record = SessionRecord {
            data,
            created_at: 42,
            expires_at: 99,
        };
        let text = String::from_utf8(NativeCodec.encode(&record)).unwrap();
        assert!(
            text.contains(r#""big":123456789012345678901234567890"#),
            "{text}"
        );
        assert!(text.contains(r#""z":[],"a":{"n":{}}"#), "{text}");
        assert_eq!(NativeCodec.decode(text.as_bytes(), 99).unwrap(), record);
    }

    #[test]
    fn refuses_foreign_text() {
        assert!(NativeCodec.decode(b"not json", 1).is_err());
        assert!(
            NativeCodec
                .decode(br#"{"v":9,"created":1,"data":{}}"#, 1)
                .is_err()
        );
        assert!(
            NativeCodec
                .decode(br#"{"v":1,"created":1,"data":[]}"#, 1)
                .is_err()
        );
    }
}
