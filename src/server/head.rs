//! The request head, copied out of hyper's read buffer.
//!
//! hyper parses an HTTP/1 head in place: the path and every header value
//! stay slices of the connection's read buffer (8 KiB). While any of them
//! lives, hyper cannot reuse that buffer, and the read it starts during the
//! request, to notice the client closing, allocates a second one. A request
//! waiting on the store or the upstream so holds 16 KiB of buffers instead
//! of 8. Copying the head, a few hundred bytes, into one buffer of its own
//! when the request arrives hands the read buffer back before that read.

use bytes::{Bytes, BytesMut};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderValue, Request};

/// Moves `request`'s path and header values into one buffer of their own.
/// Whatever does not copy cleanly (never for what hyper parsed) keeps its
/// slice of the read buffer, which costs memory and nothing else.
pub fn detach<B>(request: &mut Request<B>) {
    let path = match request.uri().path_and_query() {
        // Origin form, the usual one; the rare absolute and authority
        // forms keep their slice.
        Some(path) if request.uri().authority().is_none() => Some(path.as_str()),
        _ => None,
    };
    let size = path.map_or(0, str::len)
        + request
            .headers()
            .values()
            .map(HeaderValue::len)
            .sum::<usize>();
    let mut copy = BytesMut::with_capacity(size);
    if let Some(path) = path {
        copy.extend_from_slice(path.as_bytes());
    }
    for value in request.headers().values() {
        copy.extend_from_slice(value.as_bytes());
    }
    let mut copy = copy.freeze();
    if let Some(path) = path {
        let path = copy.split_to(path.len());
        if let Ok(path) = PathAndQuery::from_maybe_shared(path) {
            *request.uri_mut() = Uri::from(path);
        }
    }
    for value in request.headers_mut().values_mut() {
        let own = copy.split_to(value.len());
        replace(value, own);
    }
}

fn replace(value: &mut HeaderValue, own: Bytes) {
    if let Ok(mut own) = HeaderValue::from_maybe_shared(own) {
        own.set_sensitive(value.is_sensitive());
        *value = own;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_the_same_request_in_a_buffer_of_its_own() {
        let buffer = Bytes::from_static(b"/a/b?c=d&e ada s=1; t=2 other");
        let mut request = Request::builder()
            .uri(Uri::from_maybe_shared(buffer.slice(0..10)).unwrap())
            .body(())
            .unwrap();
        let headers = request.headers_mut();
        headers.insert(
            "x-user",
            HeaderValue::from_maybe_shared(buffer.slice(11..14)).unwrap(),
        );
        headers.append(
            "cookie",
            HeaderValue::from_maybe_shared(buffer.slice(15..23)).unwrap(),
        );
        let mut second = HeaderValue::from_maybe_shared(buffer.slice(24..29)).unwrap();
        second.set_sensitive(true);
        headers.append("cookie", second);
        let before = request.clone();

        detach(&mut request);

        assert_eq!(request.uri(), before.uri());
        assert_eq!(request.headers(), before.headers());
        assert!(
            request
                .headers()
                .get_all("cookie")
                .iter()
                .nth(1)
                .unwrap()
                .is_sensitive()
        );
        let inside = buffer.as_ptr_range();
        let path = request.uri().path().as_ptr();
        assert!(
            !inside.contains(&path),
            "the path still points into the buffer"
        );
        for value in request.headers().values() {
            let at = value.as_bytes().as_ptr();
            assert!(
                !inside.contains(&at),
                "{value:?} still points into the buffer"
            );
        }
    }

    #[test]
    fn other_request_forms_keep_their_uri() {
        let mut request = Request::builder()
            .uri("http://example.com/x")
            .header("host", "example.com")
            .body(())
            .unwrap();
        detach(&mut request);
        assert_eq!(request.uri(), "http://example.com/x");
        assert_eq!(request.headers()["host"], "example.com");
    }
}
