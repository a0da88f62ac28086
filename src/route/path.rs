//! The path routes are matched against: the one the backend will act on.
//!
//! A backend decodes `%2F`, `%2e` and friends, and many fold `\` into `/`
//! and `//` into `/`. A prefix compared with the raw path could be slipped
//! past (`/static/..%2Fadmin` is `/admin` to such a backend), so routes see
//! the path decoded and folded, and a path that still holds a `.` or `..`
//! segment is refused: where it leads depends on the backend.

use std::borrow::Cow;

use crate::error::{Error, Result};

/// `raw` decoded and folded for matching, or a bad request when it holds
/// a dot segment in any spelling.
pub fn for_matching(raw: &str) -> Result<Cow<'_, str>> {
    let path = if raw.contains(['%', '\\']) || raw.contains("//") {
        Cow::Owned(fold(
            &percent_encoding::percent_decode_str(raw).decode_utf8_lossy(),
        ))
    } else {
        Cow::Borrowed(raw)
    };
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(Error::bad_request(
            "the path has a `.` or `..` segment (perhaps percent-encoded), which could step past a route",
        ));
    }
    Ok(path)
}

/// `\` as `/`, and runs of `/` as one.
fn fold(decoded: &str) -> String {
    let mut folded = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = if c == '\\' { '/' } else { c };
        if !(c == '/' && folded.ends_with('/')) {
            folded.push(c);
        }
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(
            for_matching("/api/users").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn encoded_and_doubled_slashes_are_folded() {
        assert_eq!(for_matching("/api%2Fusers").unwrap(), "/api/users");
        assert_eq!(for_matching("//api//users").unwrap(), "/api/users");
        assert_eq!(for_matching("/api%5cusers").unwrap(), "/api/users");
        assert_eq!(for_matching("/%61pi/").unwrap(), "/api/");
    }

    #[test]
    fn dot_segments_are_refused_in_every_spelling() {
        for path in [
            "/static/../admin",
            "/static/..%2Fadmin",
            "/static/%2e%2e/admin",
            "/static%2F%2E%2E%2Fadmin",
            "/static\\..\\admin",
            "/./admin",
            "/static/..",
        ] {
            assert!(for_matching(path).is_err(), "{path}");
        }
        for path in ["/a..b/", "/.well-known/x", "/..."] {
            assert!(for_matching(path).is_ok(), "{path}");
        }
    }
}
