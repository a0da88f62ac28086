//! Reading the session cookie from a request, removing it before the request
//! goes upstream, and writing `Set-Cookie` headers.
//!
//! A cookie-store session larger than one cookie is split into chunks named
//! `sid`, `sid.1`, `sid.2`, ... Browsers cap a cookie near 4 KB, so each
//! chunk stays well under that with its attributes.

use http::header::{COOKIE, HeaderMap, HeaderValue};

use crate::config::CookieConfig;

/// Characters of sealed value per chunk: with the name and the longest
/// attributes a `Set-Cookie` stays under 4,096 bytes.
pub const CHUNK_LEN: usize = 3_800;

/// At most this many chunk names are remembered from one request: the
/// configuration allows at most 50 chunks, and a client that sends more
/// names gets no more `Set-Cookie` lines back for them.
const MAX_CHUNKS_SEEN: usize = 50;

/// The session cookie as the client sent it.
#[derive(Debug, Default, PartialEq)]
pub struct IncomingCookie {
    /// The value, with chunks joined in order; `None` when the main cookie is
    /// absent (or is not ASCII, which no cookie of ours is).
    pub value: Option<String>,
    /// The chunk numbers the client sent (0 for the main cookie), sorted,
    /// so that exactly those no longer needed can be expired.
    pub chunks: Vec<usize>,
}

impl IncomingCookie {
    /// The client holds some part of a session cookie.
    pub fn is_present(&self) -> bool {
        !self.chunks.is_empty()
    }
}

/// Which chunk of the session cookie `pair_name` is, if it is one.
fn chunk_index(pair_name: &[u8], name: &str) -> Option<usize> {
    let rest = pair_name.strip_prefix(name.as_bytes())?;
    if rest.is_empty() {
        return Some(0);
    }
    let number = rest.strip_prefix(b".")?;
    if number.is_empty()
        || number.len() > 3
        || !number.iter().all(u8::is_ascii_digit)
        || number.starts_with(b"0")
    {
        return None;
    }
    std::str::from_utf8(number).ok()?.parse().ok()
}

/// One `name=value` pair of a `Cookie` line, on bytes: a browser may send
/// other cookies with bytes outside ASCII, and those must neither hide the
/// session cookie nor be altered.
fn pair(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let raw = raw.trim_ascii();
    let at = raw.iter().position(|b| *b == b'=')?;
    let (name, value) = (raw[..at].trim_ascii(), raw[at + 1..].trim_ascii());
    let value = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value);
    Some((name, value))
}

/// Every `name=value` pair of the request's `Cookie` headers.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|line| pieces(line.as_bytes()))
        .filter_map(pair)
}

/// The `;`-separated pieces of one `Cookie` line, as `split` would give
/// them, found with `memchr`: a sealed session is hundreds of bytes, and
/// every request scans it twice (read, then strip).
fn pieces(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr(b';', text) {
            Some(at) => {
                rest = Some(&text[at + 1..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// Reads the session cookie named `name`, joining its chunks.
pub fn read(headers: &HeaderMap, name: &str) -> IncomingCookie {
    let mut chunks: Vec<(usize, &[u8])> = pairs(headers)
        .filter_map(|(pair_name, value)| chunk_index(pair_name, name).map(|i| (i, value)))
        .collect();
    if chunks.is_empty() {
        return IncomingCookie::default();
    }
    chunks.sort_by_key(|(index, _)| *index);
    chunks.dedup_by_key(|(index, _)| *index);
    chunks.truncate(MAX_CHUNKS_SEEN);
    let mut value = String::new();
    let mut readable = true;
    for (expected, (index, chunk)) in chunks.iter().enumerate() {
        if *index != expected {
            break;
        }
        match std::str::from_utf8(chunk) {
            Ok(text) if text.is_ascii() => value.push_str(text),
            _ => readable = false,
        }
    }
    let value = (readable && chunks.first().is_some_and(|(index, _)| *index == 0)).then_some(value);
    IncomingCookie {
        value,
        chunks: chunks.into_iter().map(|(index, _)| index).collect(),
    }
}

/// Removes the session cookie and all its chunks from the request; the
/// client's other cookies pass through byte for byte, joined into one
/// `Cookie` header as HTTP/1.1 upstreams expect (RFC 9113 §8.2.3).
pub fn strip(headers: &mut HeaderMap, name: &str) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for line in headers.get_all(COOKIE) {
        for raw in pieces(line.as_bytes()) {
            let raw = raw.trim_ascii();
            let ours =
                pair(raw).is_some_and(|(pair_name, _)| chunk_index(pair_name, name).is_some());
            if raw.is_empty() || ours {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(raw);
        }
    }
    headers.remove(COOKIE);
    // The bytes came from header values, so they make one again.
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_bytes(&kept)
    {
        headers.insert(COOKIE, value);
    }
}

/// The cookie name of chunk `index`.
pub fn chunk_name(name: &str, index: usize) -> String {
    if index == 0 {
        name.to_owned()
    } else {
        format!("{name}.{index}")
    }
}

/// Splits a cookie value into at most `max_chunks` pieces of at most
/// [`CHUNK_LEN`] characters; `None` when it does not fit.
pub fn split(value: &str, max_chunks: usize) -> Option<Vec<&str>> {
    // Sealed values are ASCII, so byte offsets are character offsets.
    let chunks: Vec<&str> = value
        .as_bytes()
        .chunks(CHUNK_LEN)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    (chunks.len() <= max_chunks && !chunks.is_empty()).then_some(chunks)
}

/// Attributes of the `Set-Cookie` headers for one response.
#[derive(Debug)]
pub struct CookieWriter<'a> {
    /// `cookie.*`: path, domain, `HttpOnly` and `SameSite`.
    pub config: &'a CookieConfig,
    /// Adds `Secure`: `cookie.secure` settled for this request (with `auto`,
    /// whether the client came over TLS).
    pub secure: bool,
}

impl CookieWriter<'_> {
    /// `Set-Cookie` for `name=value`, alive for `max_age_secs`.
    pub fn set(&self, name: &str, value: &str, max_age_secs: u64) -> Option<HeaderValue> {
        self.header(name, value, Lifetime::MaxAge(max_age_secs))
    }

    /// `Set-Cookie` that makes the browser drop `name`.
    pub fn expire(&self, name: &str) -> Option<HeaderValue> {
        self.header(name, "", Lifetime::Expired)
    }

    /// Built by pushing onto one string sized up front: this runs on every
    /// response that sets a cookie, and `format!` costs several times more.
    fn header(&self, name: &str, value: &str, lifetime: Lifetime) -> Option<HeaderValue> {
        use std::fmt::Write as _;
        let config = self.config;
        let domain = config.domain.as_deref().unwrap_or_default();
        let mut line = String::with_capacity(
            name.len() + value.len() + config.path.len() + domain.len() + 128,
        );
        line.push_str(name);
        line.push('=');
        line.push_str(value);
        line.push_str("; Path=");
        line.push_str(&config.path);
        match lifetime {
            Lifetime::MaxAge(secs) => {
                let _ = write!(line, "; Max-Age={secs}");
            }
            Lifetime::Expired => {
                line.push_str("; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
            }
        }
        if config.domain.is_some() {
            line.push_str("; Domain=");
            line.push_str(domain);
        }
        if config.http_only {
            line.push_str("; HttpOnly");
        }
        if self.secure {
            line.push_str("; Secure");
        }
        line.push_str("; SameSite=");
        line.push_str(config.same_site.as_str());
        HeaderValue::from_maybe_shared(bytes::Bytes::from(line)).ok()
    }
}

/// How long a cookie set by [`CookieWriter`] lives.
enum Lifetime {
    MaxAge(u64),
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_as_slice_split_does() {
        for line in [
            &b""[..],
            b";",
            b"a=1",
            b"a=1;",
            b";a=1",
            b"a=1; b=2;;c",
            b"sid=v\xff; x",
        ] {
            let ours: Vec<&[u8]> = pieces(line).collect();
            let std: Vec<&[u8]> = line.split(|b| *b == b';').collect();
            assert_eq!(ours, std, "{:?}", String::from_utf8_lossy(line));
        }
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(COOKIE, HeaderValue::from_str(line).unwrap());
        }
        map
    }

    #[test]
    fn reads_and_joins_chunks_in_order() {
        let map = headers(&["a=1; sid.2=CC; sid=AA", "sid.1=BB; sidx=no; sid.01=no"]);
        assert_eq!(
            read(&map, "sid"),
            IncomingCookie {
                value: Some("AABBCC".into()),
                chunks: vec![0, 1, 2]
            }
        );
        let gap = headers(&["sid=AA; sid.2=CC"]);
        assert_eq!(
            read(&gap, "sid"),
            IncomingCookie {
                value: Some("AA".into()),
                chunks: vec![0, 2]
            }
        );
        let orphan = headers(&["sid.1=BB"]);
        assert_eq!(
            read(&orphan, "sid"),
            IncomingCookie {
                value: None,
                chunks: vec![1]
            }
        );
        assert_eq!(
            read(&headers(&["other=1"]), "sid"),
            IncomingCookie::default()
        );
    }

    #[test]
    fn non_ascii_bytes_neither_hide_the_session_cookie_nor_get_altered() {
        let mut map = HeaderMap::new();
        map.insert(
            COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xc3\xa9; sid=AA; theme=d\xe9").unwrap(),
        );
        assert_eq!(read(&map, "sid").value.as_deref(), Some("AA"));
        strip(&mut map, "sid");
        assert_eq!(map[COOKIE].as_bytes(), b"pref=caf\xc3\xa9; theme=d\xe9");
    }

    #[test]
    fn only_chunk_names_sent_are_remembered() {
        let map = headers(&["sid.999=x"]);
        assert_eq!(read(&map, "sid").chunks, vec![999]);
    }

    #[test]
    fn strips_only_the_session_cookie() {
        let mut map = headers(&["a=1; sid=AA; sid.1=BB", "b=2; sidx=3"]);
        strip(&mut map, "sid");
        assert_eq!(
            map.get_all(COOKIE).iter().collect::<Vec<_>>(),
            vec!["a=1; b=2; sidx=3"]
        );
        let mut only = headers(&["sid=AA"]);
        strip(&mut only, "sid");
        assert!(only.get(COOKIE).is_none());
    }

    #[test]
    fn splits_within_the_chunk_limit() {
        let value = "x".repeat(CHUNK_LEN * 2 + 1);
        assert_eq!(split(&value, 3).unwrap().len(), 3);
        assert!(split(&value, 2).is_none());
        assert_eq!(split("short", 1).unwrap(), vec!["short"]);
    }

    #[test]
    fn writes_attributes() {
        let config = CookieConfig {
            domain: Some("example.com".into()),
            ..CookieConfig::default()
        };
        let writer = CookieWriter {
            config: &config,
            secure: true,
        };
        let set = writer.set("sid", "v", 60).unwrap();
        assert_eq!(
            set,
            "sid=v; Path=/; Max-Age=60; Domain=example.com; HttpOnly; Secure; SameSite=Lax"
        );
        let gone = writer.expire("sid.1").unwrap();
        assert!(
            gone.to_str()
                .unwrap()
                .starts_with("sid.1=; Path=/; Max-Age=0;")
        );
        let value = "v".repeat(CHUNK_LEN);
        assert!(writer.set("sid.49", &value, 604_800).unwrap().len() < 4_096);
    }
}
