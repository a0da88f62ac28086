//! What the commit phase adds to the response head: the session cookie's
//! `Set-Cookie` lines, the expiry of chunks no longer needed, and the
//! `Cache-Control` that keeps a session cookie out of shared caches.

use http::header::{CACHE_CONTROL, HeaderMap, HeaderValue, SET_COOKIE};

use super::cookies::{self, CookieWriter};
use crate::store::{SessionRecord, UnixMillis};

/// Seconds the cookie should live: the session's remaining lifetime,
/// rounded up so the cookie never dies before the session.
pub(super) fn max_age_secs(record: &SessionRecord, now: UnixMillis) -> u64 {
    record.remaining_millis(now).div_ceil(1000)
}

/// A response that sets the session cookie must not be stored by a shared
/// cache, which would hand one user's cookie to others: `Cache-Control`
/// becomes `private` (dropping `public` and `s-maxage`), unless the backend
/// already said `private` or `no-store`.
pub(super) fn keep_out_of_shared_caches(response: &mut HeaderMap) {
    let directives: Vec<String> = response
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|directive| directive.trim().to_owned())
        .filter(|directive| !directive.is_empty())
        .collect();
    let name = |directive: &str| {
        let name = directive.split('=').next().unwrap_or_default();
        name.trim().to_ascii_lowercase()
    };
    if directives
        .iter()
        .any(|d| matches!(name(d).as_str(), "private" | "no-store"))
    {
        return;
    }
    let kept = directives
        .iter()
        .filter(|d| !matches!(name(d).as_str(), "public" | "s-maxage"));
    let value = std::iter::once("private")
        .chain(kept.map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.insert(CACHE_CONTROL, value);
    }
}

/// Expires the chunks of the session cookie that the client sent, from
/// chunk `from` on (`0` is the main cookie), and no others: a client that
/// claims `sid.999` gets one expiring `Set-Cookie`, not a thousand.
pub(super) fn expire_chunks(
    response: &mut HeaderMap,
    writer: &CookieWriter<'_>,
    name: &str,
    from: usize,
    sent: &[usize],
) {
    let mut expired = false;
    for index in sent.iter().filter(|index| **index >= from) {
        if let Some(header) = writer.expire(&cookies::chunk_name(name, *index)) {
            response.append(SET_COOKIE, header);
            expired = true;
        }
    }
    if expired {
        keep_out_of_shared_caches(response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_control_after(backend: Option<&'static str>) -> Option<String> {
        let mut response = HeaderMap::new();
        if let Some(value) = backend {
            response.insert(CACHE_CONTROL, HeaderValue::from_static(value));
        }
        keep_out_of_shared_caches(&mut response);
        response
            .get(CACHE_CONTROL)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_session_cookie_is_kept_out_of_shared_caches() {
        assert_eq!(cache_control_after(None).as_deref(), Some("private"));
        assert_eq!(
            cache_control_after(Some("public, max-age=600, s-maxage=60")).as_deref(),
            Some("private, max-age=600")
        );
        assert_eq!(
            cache_control_after(Some("no-store")).as_deref(),
            Some("no-store")
        );
        assert_eq!(
            cache_control_after(Some("Private, max-age=5")).as_deref(),
            Some("Private, max-age=5")
        );
    }
}
