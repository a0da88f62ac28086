//! The answer on a `session: required` route when the session has no
//! identity: the backend is never called.

use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::proxy::{ProxyBody, text_body};

const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// What JavaScript's `encodeURIComponent` leaves alone, minus `!'()*`:
/// `{uri}` becomes one query component whatever it holds.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A browser loading a page: it can follow a redirect to a login page
/// and come back; an API client or a script needs the 401 instead.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    headers
        .get(SEC_FETCH_MODE)
        .is_some_and(|mode| mode.as_bytes() == b"navigate")
        || headers.get_all(ACCEPT).iter().any(|accept| {
            accept
                .to_str()
                .is_ok_and(|text| text.to_ascii_lowercase().contains("text/html"))
        })
}

/// 302 to `login_url` for a navigation, 401 otherwise.
pub(super) fn refusal<B>(login_url: Option<&str>, request: &Request<B>) -> Response<ProxyBody> {
    let location = login_url
        .filter(|_| is_navigation(request.method(), request.headers()))
        .and_then(|template| location(template, request));
    let mut response = match location {
        Some(location) => {
            let mut response = Response::new(text_body(""));
            *response.status_mut() = StatusCode::FOUND;
            response.headers_mut().insert(LOCATION, location);
            response
        }
        None => {
            let mut response = Response::new(text_body("Unauthorized\n"));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `template` with `{uri}` replaced by the request's path and query,
/// encoded as one query component.
fn location<B>(template: &str, request: &Request<B>) -> Option<HeaderValue> {
    let original = request
        .uri()
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    let encoded = utf8_percent_encode(original, COMPONENT).to_string();
    HeaderValue::from_str(&template.replace("{uri}", &encoded)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn uri_is_one_encoded_component() {
        let r = request(Method::GET, "/app/p?q=1", &[("accept", "text/html")]);
        let response = refusal(Some("/login?next={uri}"), &r);
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(
            response.headers()[LOCATION],
            "/login?next=%2Fapp%2Fp%3Fq%3D1"
        );
    }

    #[test]
    fn only_navigations_are_redirected() {
        let login = Some("/login");
        let cases = [
            (
                Method::GET,
                vec![("sec-fetch-mode", "navigate")],
                StatusCode::FOUND,
            ),
            (
                Method::HEAD,
                vec![("accept", "Text/HTML,*/*")],
                StatusCode::FOUND,
            ),
            (
                Method::GET,
                vec![("accept", "application/json")],
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::GET,
                vec![("sec-fetch-mode", "cors")],
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::POST,
                vec![("accept", "text/html")],
                StatusCode::UNAUTHORIZED,
            ),
        ];
        for (method, headers, status) in cases {
            let r = request(method.clone(), "/x", &headers);
            assert_eq!(refusal(login, &r).status(), status, "{method} {headers:?}");
        }
        let navigation = request(Method::GET, "/x", &[("accept", "text/html")]);
        assert_eq!(
            refusal(None, &navigation).status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
