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

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use super::RecordCodec;
use crate::config::{Compat, Config, CookieConfig, DynamoLayout, SameSite, Secure, StoreConfig};
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
            Some(Value::Object(cookie)) => check_cookie(&cookie, self.flavor)?,
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
}

/// express-session's `cookie`: what its `Cookie` constructor accepts
/// without failing later (`expires` a date string, `originalMaxAge` a
/// number, the flags booleans, `path` a string; absent or `null` is fine).
fn check_cookie(cookie: &Map<String, Value>, flavor: Flavor) -> Result<(), String> {
    let wrong = |key: &str| {
        Err(format!(
            "express-session's `cookie.{key}` has the wrong type"
        ))
    };
    for (key, value) in cookie {
        let fine = match (key.as_str(), value) {
            (_, Value::Null) => true,
            ("originalMaxAge", value) => value.is_number(),
            ("expires", Value::String(_)) => true,
            ("expires", Value::Object(_)) => flavor == Flavor::Cyclic,
            ("expires", _) => false,
            ("secure", Value::String(text)) => text == "auto",
            ("secure" | "httpOnly" | "partitioned", value) => value.is_boolean(),
            ("path" | "domain" | "priority", value) => value.is_string(),
            ("sameSite", value) => value.is_string() || value.is_boolean(),
            _ => true,
        };
        if !fine {
            return wrong(key);
        }
    }
    Ok(())
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
    fn iso8601_matches_javascript() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
