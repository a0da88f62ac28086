//! express-session's stored JSON (`session.compat: express-session`): the
//! session's keys plus express-session's `cookie` object, as connect-redis,
//! express-mysql-session and connect-dynamodb store it.
//!
//! ```json
//! {"cookie":{"originalMaxAge":86400000,"expires":"2026-12-03T01:37:01.123Z","httpOnly":true,"path":"/"},"user":"ada"}
//! ```
//!
//! * **Writing**, the gateway rewrites `cookie` from its own settings:
//!   `originalMaxAge` is `session.ttl` in milliseconds, `expires` the
//!   record's expiry as an ISO 8601 string, then `secure` (only when
//!   `cookie.secure` is `true`), `httpOnly`, `domain` (when set), `path`
//!   and `sameSite`, in express-session's order.
//! * **Reading**, `cookie` must be an object of express-session's shape
//!   (else the text is no session); it is taken out of the data, so the
//!   backend never sees it. The expiry comes from the store's own expiry,
//!   as everywhere.
//! * **Creation time**: express-session stores none, so a record read back
//!   has `created_at` 0; `session.absolute_ttl` is refused in this mode.
//! * **@cyclic.sh/session-store** ([`Flavor::Cyclic`]) keeps its own shape:
//!   `cookie.expires` is an empty map (what its marshaller makes of a
//!   `Date`), and `updated` holds the time of the last write or touch in
//!   milliseconds; the gateway writes both and hides both from the backend.

use std::borrow::Cow;

use indexmap::IndexMap;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::RecordCodec;
use crate::config::{Compat, Config, CookieConfig, DynamoLayout, SameSite, Secure, StoreConfig};
use crate::store::loaded::LoadedRecord;
use crate::store::record::{SessionData, SessionRecord, UnixMillis, now_millis};

/// The session keys express-session (or its store) owns; the backend can
/// neither see nor change them.
pub const RESERVED: &str = "cookie";
/// @cyclic.sh/session-store's write time, also out of the backend's reach.
pub const CYCLIC_UPDATED: &str = "updated";

/// Which store's variant of the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// connect-redis, express-mysql-session, connect-dynamodb, memory.
    Plain,
    /// @cyclic.sh/session-store: `cookie.expires` is `{}`, plus `updated`.
    Cyclic,
}

/// The codec `session.compat: express-session` asks for, if it does.
pub fn for_config(config: &Config) -> Option<ExpressCodec> {
    let flavor = match &config.store {
        StoreConfig::Dynamodb(dynamo) if dynamo.layout == DynamoLayout::Cyclic => Flavor::Cyclic,
        _ => Flavor::Plain,
    };
    (config.session.compat == Compat::ExpressSession).then(|| {
        ExpressCodec::new(
            flavor,
            &config.session.cookie,
            config.session.ttl.get().as_millis() as u64,
        )
    })
}

/// A JSON object's members as text, borrowed from it; fails on a key
/// written with escapes.
type Fields<'a> = IndexMap<&'a str, &'a RawValue>;

/// The express-session record codec.
#[derive(Debug, Clone)]
pub struct ExpressCodec {
    flavor: Flavor,
    original_max_age_ms: u64,
    secure: bool,
    http_only: bool,
    domain: Option<String>,
    path: String,
    same_site: &'static str,
}

impl ExpressCodec {
    /// The codec writing `cookie` as `session.cookie` and `session.ttl`
    /// describe it.
    pub fn new(flavor: Flavor, cookie: &CookieConfig, ttl_ms: u64) -> Self {
        Self {
            flavor,
            original_max_age_ms: ttl_ms,
            secure: cookie.secure == Secure::Always,
            http_only: cookie.http_only,
            domain: cookie.domain.clone(),
            path: cookie.path.clone(),
            same_site: match cookie.same_site {
                SameSite::Strict => "strict",
                SameSite::Lax => "lax",
                SameSite::None => "none",
            },
        }
    }

    /// The keys this flavor keeps out of the backend's data.
    pub fn reserved(&self) -> &'static [&'static str] {
        match self.flavor {
            Flavor::Plain => &[RESERVED],
            Flavor::Cyclic => &[RESERVED, CYCLIC_UPDATED],
        }
    }
}

/// express-session's `cookie` object as the gateway writes it.
struct CookieOut<'a> {
    codec: &'a ExpressCodec,
    expires_at: UnixMillis,
}

impl Serialize for CookieOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let codec = self.codec;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("originalMaxAge", &codec.original_max_age_ms)?;
        match codec.flavor {
            Flavor::Plain => map.serialize_entry("expires", &iso8601(self.expires_at))?,
            Flavor::Cyclic => map.serialize_entry("expires", &Map::new())?,
        }
        if codec.secure {
            map.serialize_entry("secure", &true)?;
        }
        map.serialize_entry("httpOnly", &codec.http_only)?;
        if let Some(domain) = &codec.domain {
            map.serialize_entry("domain", domain)?;
        }
        map.serialize_entry("path", &codec.path)?;
        map.serialize_entry("sameSite", codec.same_site)?;
        map.end()
    }
}

/// The whole stored object: `cookie` first, as express-session writes a new
/// session, then the data, then (Cyclic) `updated`.
struct BodyOut<'a> {
    codec: &'a ExpressCodec,
    record: &'a SessionRecord,
}

impl Serialize for BodyOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let reserved = self.codec.reserved();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(
            RESERVED,
            &CookieOut {
                codec: self.codec,
                expires_at: self.record.expires_at,
            },
        )?;
        for (key, value) in &self.record.data {
            if !reserved.contains(&key.as_str()) {
                map.serialize_entry(key, value)?;
            }
        }
        if self.codec.flavor == Flavor::Cyclic {
            map.serialize_entry(CYCLIC_UPDATED, &now_millis())?;
        }
        map.end()
    }
}

impl RecordCodec for ExpressCodec {
    fn encode(&self, record: &SessionRecord) -> Vec<u8> {
        // A map of JSON values always serializes.
        serde_json::to_vec(&BodyOut {
            codec: self,
            record,
        })
        .unwrap_or_else(|_| b"{}".to_vec())
    }

    fn decode(&self, text: &[u8], expires_at: UnixMillis) -> Result<SessionRecord, String> {
        let mut data: SessionData = serde_json::from_slice(text)
            .map_err(|e| format!("stored express-session value is not a JSON object: {e}"))?;
        match data.shift_remove(RESERVED) {
            Some(Value::Object(cookie)) => {
                for (key, value) in &cookie {
                    check_member(key, Kind::of_value(value), self.flavor)?;
                }
            }
            Some(_) => return Err("express-session's `cookie` is not an object".into()),
            None => return Err("the stored session has no express-session `cookie`".into()),
        }
        if self.flavor == Flavor::Cyclic {
            data.shift_remove(CYCLIC_UPDATED);
        }
        Ok(SessionRecord {
            data,
            created_at: 0,
            expires_at,
        })
    }

    /// As `decode`, but the backend's keys are copied as the text they
    /// were stored in, not parsed into a map, and `cookie` is checked as
    /// it is read: a read that only forwards the session builds nothing.
    /// A key written with escapes cannot be borrowed from the text, so such
    /// a record, like one the check refuses, takes `decode`.
    fn decode_lazily(&self, text: &[u8], expires_at: UnixMillis) -> Result<LoadedRecord, String> {
        let borrowed = serde_json::from_slice::<Fields>(text)
            .ok()
            .filter(|fields| {
                fields.get(RESERVED).is_some_and(|cookie| {
                    let mut cookie = serde_json::Deserializer::from_str(cookie.get());
                    serde::Deserializer::deserialize_map(&mut cookie, CheckCookie(self.flavor))
                        .is_ok()
                })
            });
        // Anything unusual, a refusal included, is judged by the full parse.
        let Some(fields) = borrowed else {
            return self.decode(text, expires_at).map(LoadedRecord::parsed);
        };
        let reserved = self.reserved();
        let mut data = String::with_capacity(text.len());
        for (key, value) in fields.iter().filter(|(key, _)| !reserved.contains(key)) {
            data.push(if data.is_empty() { '{' } else { ',' });
            // A borrowed key had no escapes, so it is written as it was.
            data.push('"');
            data.push_str(key);
            data.push_str("\":");
            data.push_str(value.get());
        }
        if data.is_empty() {
            data.push('{');
        }
        data.push('}');
        let data = RawValue::from_string(data).map_err(|e| e.to_string())?;
        LoadedRecord::from_text(&data, 0, expires_at)
    }
}

/// A JSON value's type, and a string's text: what [`check_member`] asks.
enum Kind<'a> {
    Null,
    Bool,
    Number,
    Text(Cow<'a, str>),
    Object,
    Array,
}

impl<'a> Kind<'a> {
    fn of_value(value: &'a Value) -> Self {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(text) => Kind::Text(Cow::Borrowed(text)),
            Value::Object(_) => Kind::Object,
            Value::Array(_) => Kind::Array,
        }
    }

    /// From the text alone: valid JSON's first byte tells its type.
    fn of_raw(value: &'a RawValue) -> Self {
        let text = value.get();
        match text.as_bytes().first() {
            Some(b'n') => Kind::Null,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'"') => match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Some(inner) if !inner.contains('\\') => Kind::Text(Cow::Borrowed(inner)),
                _ => Kind::Text(serde_json::from_str(text).unwrap_or_default()),
            },
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            _ => Kind::Number,
        }
    }
}

/// A member of express-session's `cookie`: what its `Cookie` constructor
/// accepts without failing later (`expires` a date string,
/// `originalMaxAge` a number, the flags booleans, `path` a string; absent
/// or `null` is fine).
fn check_member(key: &str, kind: Kind<'_>, flavor: Flavor) -> Result<(), String> {
    let fine = match (key, kind) {
        (_, Kind::Null) => true,
        ("originalMaxAge", kind) => matches!(kind, Kind::Number),
        ("expires", Kind::Text(_)) => true,
        ("expires", Kind::Object) => flavor == Flavor::Cyclic,
        ("expires", _) => false,
        ("secure", Kind::Text(text)) => text == "auto",
        ("secure" | "httpOnly" | "partitioned", kind) => matches!(kind, Kind::Bool),
        ("path" | "domain" | "priority", kind) => matches!(kind, Kind::Text(_)),
        ("sameSite", kind) => matches!(kind, Kind::Text(_) | Kind::Bool),
        _ => true,
    };
    if fine {
        Ok(())
    } else {
        Err(format!(
            "express-session's `cookie.{key}` has the wrong type"
        ))
    }
}

/// Checks the members of a `cookie` object as they are read, without
/// building a map; fails (to the caller's full parse) on anything but an
/// object with plain keys whose every member is fine.
struct CheckCookie(Flavor);

impl<'de> serde::de::Visitor<'de> for CheckCookie {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("express-session's cookie object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some((key, value)) = map.next_entry::<&str, &RawValue>()? {
            check_member(key, Kind::of_raw(value), self.0).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }
}

/// `Date.prototype.toISOString()`: `YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC.
pub fn iso8601(at: UnixMillis) -> String {
    let millis = at % 1_000;
    let secs = at / 1_000;
    let (day, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, date) = civil_from_days(day);
    format!(
        "{year:04}-{month:02}-{date:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CookieConfig;

    fn codec(flavor: Flavor) -> ExpressCodec {
        ExpressCodec::new(flavor, &CookieConfig::default(), 86_400_000)
    }

    fn record(data: &str) -> SessionRecord {
        SessionRecord {
            data: serde_json::from_str(data).unwrap(),
            created_at: 0,
            expires_at: 1_764_639_421_123,
        }
    }

    #[test]
    fn writes_what_express_session_writes() {
        let text = codec(Flavor::Plain).encode(&record(r#"{"user":"ada","n":[1,{}]}"#));
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"cookie":{"originalMaxAge":86400000,"expires":"2025-12-02T01:37:01.123Z","httpOnly":true,"path":"/","sameSite":"lax"},"user":"ada","n":[1,{}]}"#
        );
    }

    #[test]
    fn reads_what_express_session_writes_and_hides_the_cookie() {
        let node = r#"{"cookie":{"originalMaxAge":86400000,"expires":"2025-12-02T01:37:01.123Z","secure":false,"httpOnly":true,"path":"/"},"user":"ada","big":123456789012345678901234567890}"#;
        let read = codec(Flavor::Plain).decode(node.as_bytes(), 5).unwrap();
        assert_eq!(
            serde_json::to_string(&read.data).unwrap(),
            r#"{"user":"ada","big":123456789012345678901234567890}"#
        );
        assert_eq!(read.expires_at, 5);
    }

    #[test]
    fn cyclic_keeps_its_shape_and_hides_updated() {
        let codec = codec(Flavor::Cyclic);
        let text = String::from_utf8(codec.encode(&record(r#"{"user":"ada"}"#))).unwrap();
        assert!(
            text.starts_with(
                r#"{"cookie":{"originalMaxAge":86400000,"expires":{},"httpOnly":true"#
            ),
            "{text}"
        );
        assert!(text.contains(r#""user":"ada","updated":"#), "{text}");
        let read = codec.decode(text.as_bytes(), 5).unwrap();
        assert_eq!(
            serde_json::to_string(&read.data).unwrap(),
            r#"{"user":"ada"}"#
        );
    }

    #[test]
    fn refuses_values_that_are_not_express_sessions() {
        let codec = codec(Flavor::Plain);
        for bad in [
            "not json",
            "[]",
            r#"{"user":"ada"}"#,
            r#"{"cookie":"x"}"#,
            r#"{"cookie":{"expires":5}}"#,
            r#"{"cookie":{"expires":{}}}"#,
            r#"{"cookie":{"originalMaxAge":"1"}}"#,
            r#"{"cookie":{"httpOnly":"yes"}}"#,
            r#"{"cookie":{"path":1}}"#,
        ] {
            assert!(codec.decode(bad.as_bytes(), 1).is_err(), "{bad}");
        }
        assert!(codec.decode(br#"{"cookie":{}}"#, 1).is_ok());
    }

    #[test]
    fn a_lazy_read_forwards_the_same_session_as_a_full_one() {
        for flavor in [Flavor::Plain, Flavor::Cyclic] {
            let codec = codec(flavor);
            for stored in [
                r#"{"cookie":{"originalMaxAge":1,"expires":"2025-12-02T01:37:01.123Z","path":"/"},"user":"ada","n":[1, {"x": 2.50}],"big":123456789012345678901234567890}"#,
                r#"{"user":"ada","cookie":{},"updated":17,"user":"bob","z":null}"#,
                r#"{"cookie":{}}"#,
                r#"{"cookie":{},"upd\u0061ted":1,"caf\u00e9":"x"}"#,
                r#" { "cookie" : { } , "k" : "v" } "#,
                r#"{"cookie":{"secure":"auto","sameSite":true,"expires":null},"k":1}"#,
                r#"{"cookie":{"secure":"\u0061uto","p\u0061th":"/"},"k":1}"#,
            ] {
                let full = codec.decode(stored.as_bytes(), 5).unwrap();
                let lazy = codec.decode_lazily(stored.as_bytes(), 5).unwrap();
                assert_eq!((lazy.created_at, lazy.expires_at), (0, 5));
                // Escaped keys take the full parse; the rest stay text.
                assert_eq!(lazy.text().is_some(), !stored.contains('\\'), "{stored}");
                if let Some(text) = lazy.text() {
                    assert!(!text.contains("cookie"), "{text}");
                }
                assert_eq!(lazy.into_record().unwrap(), full, "{stored}");
            }
            for bad in [
                "not json",
                r#"{"user":"ada"}"#,
                r#"{"cookie":"x"}"#,
                r#"{"cookie":{"path":1}}"#,
                r#"{"cookie":{"secure":"yes"}}"#,
                r#"{"cookie":{"expires":[]}}"#,
                r#"{"cookie":{},"k":1"#,
            ] {
                assert!(codec.decode_lazily(bad.as_bytes(), 1).is_err(), "{bad}");
            }
            // Nested past the parser's limit: no session for the full
            // parse; the lazy read loads it and fails when the data is
            // needed, as the native codec's lazy read does.
            let deep = format!(
                r#"{{"cookie":{{}},"k":{}1{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            );
            assert!(codec.decode(deep.as_bytes(), 1).is_err());
            let lazy = codec.decode_lazily(deep.as_bytes(), 1).unwrap();
            assert!(lazy.into_record().is_err());
        }
    }

    #[test]
    fn iso8601_matches_javascript() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
