//! A record as the cookie or a store handed it back, its data still the
//! JSON text it was stored in.
//!
//! Most requests neither read a session field nor change the session: they
//! forward it. For those, parsing the data into a map and writing the map
//! back out as `X-Session-Data` is work with no result, the largest part
//! of the session's cost on a read. So the data stays text until something
//! asks for a field ([`LoadedRecord::data`]) or for the whole record to
//! change it ([`LoadedRecord::into_record`]).

use std::sync::OnceLock;

use serde_json::value::RawValue;

use super::record::{SessionData, SessionRecord, UnixMillis};
use crate::error::Error;

/// A loaded session record; see the module docs.
#[derive(Debug)]
pub struct LoadedRecord {
    /// When the session was created.
    pub created_at: UnixMillis,
    /// When the session dies unless it is touched or updated again.
    pub expires_at: UnixMillis,
    /// The data's JSON text, when it was loaded as text.
    text: Option<Box<RawValue>>,
    /// The data as a map, once something asked for it.
    parsed: OnceLock<SessionData>,
}

impl LoadedRecord {
    /// A record that is already a map (a new session, or a layout that had
    /// to be parsed to be read at all).
    pub fn parsed(record: SessionRecord) -> Self {
        Self {
            created_at: record.created_at,
            expires_at: record.expires_at,
            text: None,
            parsed: OnceLock::from(record.data),
        }
    }

    /// A record whose data is the JSON text `data`, which must be an
    /// object: anything else is refused here, as a parse would refuse it.
    pub fn from_text(
        data: &RawValue,
        created_at: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Self, String> {
        // `RawValue` is valid JSON without surrounding whitespace.
        if !data.get().starts_with('{') {
            return Err("the session data is not a JSON object".to_owned());
        }
        Ok(Self {
            created_at,
            expires_at,
            text: Some(data.to_owned()),
            parsed: OnceLock::new(),
        })
    }

    /// The data's JSON text exactly as loaded, when it was loaded as text.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref().map(RawValue::get)
    }

    /// The data as a map, parsed on first use.
    ///
    /// # Errors
    ///
    /// An internal error when the text does not parse as a map (nested past
    /// serde_json's depth limit: never for data the gateway wrote).
    pub fn data(&self) -> Result<&SessionData, Error> {
        if let Some(data) = self.parsed.get() {
            return Ok(data);
        }
        let text = self.text().unwrap_or("{}");
        let data: SessionData = serde_json::from_str(text)
            .map_err(|e| Error::internal(format!("a stored session cannot be read: {e}")))?;
        Ok(self.parsed.get_or_init(|| data))
    }

    /// The whole record, to change it.
    ///
    /// # Errors
    ///
    /// As [`LoadedRecord::data`].
    pub fn into_record(self) -> Result<SessionRecord, Error> {
        self.data()?;
        Ok(SessionRecord {
            data: self.parsed.into_inner().unwrap_or_default(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn text_stays_text_until_a_field_is_read() {
        let text = r#"{"user":"ada","n":12345678901234567890123,"f":1.50}"#;
        let loaded = LoadedRecord::from_text(&raw(text), 1, 2).unwrap();
        assert_eq!(loaded.text(), Some(text));
        assert_eq!(loaded.data().unwrap()["user"], "ada");
        let record = loaded.into_record().unwrap();
        assert_eq!((record.created_at, record.expires_at), (1, 2));
        assert_eq!(serde_json::to_string(&record.data).unwrap(), text);
    }

    #[test]
    fn only_an_object_is_session_data() {
        for text in ["[]", "1", "\"x\"", "null"] {
            assert!(LoadedRecord::from_text(&raw(text), 1, 2).is_err(), "{text}");
        }
    }

    #[test]
    fn data_nested_past_the_parser_limit_is_an_error_not_an_empty_session() {
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        let loaded = LoadedRecord::from_text(&raw(&deep), 1, 2).unwrap();
        assert!(loaded.data().is_err());
        assert!(loaded.into_record().is_err());
    }

    #[test]
    fn a_parsed_record_has_no_text() {
        let mut data = SessionData::new();
        data.insert("k".into(), 1.into());
        let record = SessionRecord {
            data,
            created_at: 3,
            expires_at: 4,
        };
        let loaded = LoadedRecord::parsed(record.clone());
        assert_eq!(loaded.text(), None);
        assert_eq!(loaded.into_record().unwrap(), record);
    }
}
