//! The header protocol between the gateway and the backend.
//!
//! Upstream, the session travels in `X-Session-Id`, `X-Session-Data` and the
//! operator's `headers.fields`; back, the backend's instructions arrive in
//! `X-Session-Update`, `X-Session-Regenerate` and `X-Session-Destroy`.
//!
//! Header names are compared case-insensitively and with `_` and `-` alike:
//! CGI and PHP read `X_Session_Data` as `X-Session-Data`, so a client that
//! sends either spelling must not reach the backend with it.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::store::LoadedRecord;

/// Upstream: the session's public id, a one-way hash of the real one, stable
/// for the session's life and safe to log.
pub const SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
/// Upstream: the whole session data, as ASCII-only JSON.
pub const SESSION_DATA: HeaderName = HeaderName::from_static("x-session-data");
/// Upstream: the signed session assertion (a JWT), under its default name.
/// A client's copy is removed whether or not assertions are on, so a
/// backend never takes a forged one for the gateway's.
pub const SESSION_ASSERTION: HeaderName = HeaderName::from_static("x-session-assertion");
/// Back: a JSON merge patch (RFC 7396) for the session data; several are
/// applied in order.
pub const SESSION_UPDATE: HeaderName = HeaderName::from_static("x-session-update");
/// Back: `1` or `true` moves the session to a new id, as after a login, so
/// that an id known before it is worthless.
pub const SESSION_REGENERATE: HeaderName = HeaderName::from_static("x-session-regenerate");
/// Back: `1` or `true` ends the session and expires the cookie.
pub const SESSION_DESTROY: HeaderName = HeaderName::from_static("x-session-destroy");

/// The response headers that carry instructions.
const INSTRUCTIONS: [HeaderName; 3] = [SESSION_UPDATE, SESSION_REGENERATE, SESSION_DESTROY];

/// `a` and `b` name the same header once case and `_`/`-` are folded.
fn same_header(a: &str, b: &str) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// Removes every header in `headers` that matches one of `names` once
/// folded. Most requests carry none, so this allocates only when it finds one.
pub(crate) fn remove_folded(headers: &mut HeaderMap, names: &[HeaderName]) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|key| {
            names
                .iter()
                .any(|name| same_header(key.as_str(), name.as_str()))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// The session's request headers, as configured.
#[derive(Debug)]
pub struct SessionHeaders {
    /// Every name a client must not be able to set, `X-Session-*` first.
    protected: Vec<HeaderName>,
    /// `headers.fields`: top-level session key and the header that carries it.
    fields: Vec<(String, HeaderName)>,
}

impl SessionHeaders {
    /// `fields` were validated with the configuration.
    pub fn new(fields: &indexmap::IndexMap<String, String>) -> Self {
        let fields: Vec<(String, HeaderName)> = fields
            .iter()
            .filter_map(|(key, name)| {
                HeaderName::from_bytes(name.as_bytes())
                    .ok()
                    .map(|h| (key.clone(), h))
            })
            .collect();
        let mut protected = vec![SESSION_ID, SESSION_DATA, SESSION_ASSERTION];
        protected.extend(INSTRUCTIONS);
        protected.extend(fields.iter().map(|(_, h)| h.clone()));
        Self { protected, fields }
    }

    /// Removes the client's copies of every session header.
    pub fn strip_forged(&self, headers: &mut HeaderMap) {
        remove_folded(headers, &self.protected);
    }

    /// Writes the session into the request that goes upstream.
    ///
    /// # Errors
    ///
    /// An internal error when the session cannot be a header value (never
    /// an empty session in its place).
    pub fn write(
        &self,
        headers: &mut HeaderMap,
        public_id: &str,
        record: &LoadedRecord,
    ) -> Result<(), Error> {
        if let Ok(value) = HeaderValue::from_str(public_id) {
            headers.insert(SESSION_ID, value);
        }
        let data = match record.text().and_then(header_as_is) {
            Some(value) => value,
            None => json_header(record.data()?)?,
        };
        headers.insert(SESSION_DATA, data);
        if self.fields.is_empty() {
            return Ok(());
        }
        let data = record.data()?;
        for (key, name) in &self.fields {
            let value = match data.get(key) {
                None => continue,
                Some(Value::String(text)) => match HeaderValue::from_bytes(text.as_bytes()) {
                    Ok(value) => value,
                    Err(_) => {
                        tracing::warn!(key = %key, header = %name, "session value cannot be a header (control characters); not sent");
                        continue;
                    }
                },
                Some(other) => json_header(other)?,
            };
            headers.insert(name.clone(), value);
        }
        Ok(())
    }
}

/// Stored JSON text as it is, when it is printable ASCII: then it is the
/// JSON [`json_header`] would write, and byte for byte the same when the
/// gateway or express-session's `JSON.stringify` wrote it (compact, and
/// escaping only what must be). Otherwise `None`, and the data is written
/// anew.
fn header_as_is(text: &str) -> Option<HeaderValue> {
    if !text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return None;
    }
    HeaderValue::from_str(text).ok()
}

/// JSON as an ASCII-only header value: non-ASCII text becomes `\uXXXX`.
fn json_header(value: &impl Serialize) -> Result<HeaderValue, Error> {
    let ascii = ascii_json(value);
    // ASCII JSON with DEL escaped holds nothing a header refuses; should it
    // ever, the request fails rather than send the backend a wrong session.
    HeaderValue::from_str(&ascii)
        .map_err(|_| Error::internal("the session cannot be written as a header value"))
}

/// Serializes `value` with every non-ASCII character escaped as `\uXXXX`
/// (surrogate pairs beyond the BMP). Outside strings JSON is ASCII already.
pub fn ascii_json(value: &impl Serialize) -> String {
    // Maps of JSON values always serialize.
    let text = serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"));
    // DEL (U+007F) is ASCII and legal in JSON, but not in a header value.
    if text.bytes().all(|b| b.is_ascii() && b != 0x7f) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() && c != '\u{7f}' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// What the backend asked for in its response headers.
#[derive(Debug, Default, PartialEq)]
pub struct Instructions {
    /// Every `X-Session-Update`, in the order the backend sent them: they
    /// apply one after the other (merge patches do not compose into one
    /// without the document they apply to).
    pub updates: Vec<Map<String, Value>>,
    /// `X-Session-Regenerate`: a new id for the session.
    pub regenerate: bool,
    /// `X-Session-Destroy`: wins over the others.
    pub destroy: bool,
}

/// The backend sent an `X-Session-Update` that is not a JSON object.
fn invalid_update(reason: impl std::fmt::Display) -> Error {
    Error::invalid_update(format!("X-Session-Update is not a JSON object: {reason}"))
}

/// Removes every instruction header, in any spelling, unread; says
/// whether there was one.
pub fn remove_instructions(headers: &mut HeaderMap) -> bool {
    let before = headers.len();
    remove_folded(headers, &INSTRUCTIONS);
    headers.len() != before
}

/// Takes the instructions out of a response: they never reach the client.
pub fn take_instructions(headers: &mut HeaderMap) -> Result<Instructions, Error> {
    if !headers
        .keys()
        .any(|k| k.as_str().starts_with("x-session") || k.as_str().starts_with("x_session"))
    {
        return Ok(Instructions::default());
    }
    let updates: Vec<HeaderValue> = headers.get_all(SESSION_UPDATE).iter().cloned().collect();
    let regenerate = flag(headers.get(SESSION_REGENERATE));
    let destroy = flag(headers.get(SESSION_DESTROY));
    // Folded spellings are removed too, never obeyed.
    remove_folded(headers, &INSTRUCTIONS);
    let mut patches = Vec::with_capacity(updates.len());
    for value in updates {
        let patch = match serde_json::from_slice::<Value>(value.as_bytes()) {
            Ok(Value::Object(patch)) => patch,
            Ok(other) => return Err(invalid_update(format_args!("got a JSON {}", kind(&other)))),
            Err(error) => return Err(invalid_update(error)),
        };
        patches.push(patch);
    }
    Ok(Instructions {
        updates: patches,
        regenerate,
        destroy,
    })
}

/// `1` or `true` turns an instruction on.
fn flag(value: Option<&HeaderValue>) -> bool {
    value.is_some_and(|v| v.as_bytes() == b"1" || v.as_bytes().eq_ignore_ascii_case(b"true"))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SessionData, SessionRecord};
    use serde_json::json;

    #[test]
    fn folds_case_and_underscores() {
        assert!(same_header("x_session_data", "x-session-data"));
        assert!(same_header("X-SESSION_Id", "x-session-id"));
        assert!(!same_header("x-session-data2", "x-session-data"));
    }

    #[test]
    fn strips_every_spelling_of_a_forged_header() {
        let mut fields = indexmap::IndexMap::new();
        fields.insert("user".to_owned(), "X-Auth-User".to_owned());
        let protocol = SessionHeaders::new(&fields);
        let mut headers = HeaderMap::new();
        for name in [
            "x-session-data",
            "x_session_data",
            "x_session-id",
            "X_Session_Assertion",
            "x_auth_user",
            "x-session-update",
            "x-other",
        ] {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("forged"),
            );
        }
        protocol.strip_forged(&mut headers);
        assert_eq!(
            headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["x-other"]
        );
    }

    #[test]
    fn writes_fields_as_strings_or_json() {
        let mut fields = indexmap::IndexMap::new();
        fields.insert("user".to_owned(), "X-Auth-User".to_owned());
        fields.insert("roles".to_owned(), "X-Auth-Roles".to_owned());
        fields.insert("missing".to_owned(), "X-Missing".to_owned());
        let protocol = SessionHeaders::new(&fields);
        let data = json!({"user": "ada", "roles": ["a", "b"]})
            .as_object()
            .unwrap()
            .clone();
        let record = LoadedRecord::parsed(SessionRecord {
            data,
            created_at: 1,
            expires_at: 2,
        });
        let mut headers = HeaderMap::new();
        protocol.write(&mut headers, "pub", &record).unwrap();
        assert_eq!(headers["x-auth-user"], "ada");
        assert_eq!(headers["x-auth-roles"], r#"["a","b"]"#);
        assert!(!headers.contains_key("x-missing"));
        assert_eq!(headers["x-session-id"], "pub");
    }

    /// What the backend gets from a session loaded as text: the same bytes
    /// as from the parsed map, whether the text can go as it is or not.
    #[test]
    fn stored_text_goes_upstream_as_the_map_would() {
        let mut fields = indexmap::IndexMap::new();
        fields.insert("user".to_owned(), "X-Auth-User".to_owned());
        for text in [
            r#"{"user":"ada","n":12345678901234567890123,"f":1.50,"q":"a\"b"}"#,
            r#"{"user":"Zoë 🦀"}"#,
            "{\"del\":\"\u{7f}\"}",
            "{}",
        ] {
            let raw = serde_json::value::RawValue::from_string(text.to_owned()).unwrap();
            let loaded = LoadedRecord::from_text(&raw, 1, 2).unwrap();
            let parsed: SessionData = serde_json::from_str(text).unwrap();
            for protocol in [
                SessionHeaders::new(&fields),
                SessionHeaders::new(&indexmap::IndexMap::new()),
            ] {
                let mut headers = HeaderMap::new();
                protocol.write(&mut headers, "pub", &loaded).unwrap();
                assert_eq!(headers["x-session-data"], ascii_json(&parsed), "{text}");
            }
        }
    }

    #[test]
    fn session_data_is_ascii() {
        assert_eq!(
            ascii_json(&json!({"name": "Zoë 🦀"})),
            r#"{"name":"Zo\u00eb \ud83e\udd80"}"#
        );
        let back: Value = serde_json::from_str(&ascii_json(&json!({"name": "Zoë 🦀"}))).unwrap();
        assert_eq!(back, json!({"name": "Zoë 🦀"}));
    }

    #[test]
    fn takes_and_removes_instructions() {
        let mut headers = HeaderMap::new();
        headers.insert(
            SESSION_UPDATE,
            HeaderValue::from_static(r#"{"a":{"b":1,"c":2}}"#),
        );
        headers.append(
            SESSION_UPDATE,
            HeaderValue::from_static(r#"{"a":{"c":null}}"#),
        );
        headers.insert(SESSION_REGENERATE, HeaderValue::from_static("1"));
        headers.insert(
            HeaderName::from_static("x_session_destroy"),
            HeaderValue::from_static("1"),
        );
        headers.insert(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("text/plain"),
        );
        let got = take_instructions(&mut headers).unwrap();
        assert_eq!(
            got.updates,
            vec![
                json!({"a":{"b":1,"c":2}}).as_object().unwrap().clone(),
                json!({"a":{"c":null}}).as_object().unwrap().clone(),
            ]
        );
        assert!(got.regenerate);
        assert!(!got.destroy, "a folded spelling is removed, not obeyed");
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn refuses_updates_that_are_not_objects() {
        for bad in ["[1]", "\"x\"", "nope", "null"] {
            let mut headers = HeaderMap::new();
            headers.insert(SESSION_UPDATE, HeaderValue::from_str(bad).unwrap());
            assert!(take_instructions(&mut headers).is_err(), "{bad}");
        }
    }
}
