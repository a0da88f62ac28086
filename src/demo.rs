//! The built-in echo backend behind `sessiongate demo`, and the upstream of
//! the black-box tests.
//!
//! Every request gets a JSON answer showing what the backend received:
//! method, path, the session id and data, and every header. Query
//! parameters make it answer with session instructions:
//!
//! * `update=<JSON>`: sent back as `X-Session-Update` (URL-encode it);
//! * `regenerate=1`, `destroy=1`: sent back as `X-Session-Regenerate` /
//!   `X-Session-Destroy`;
//! * `set_cookie=<name=value>`: the backend sets a cookie of its own;
//! * `cache_control=<directives>`: sent back as `Cache-Control`.
//!
//! Each may come several times: every one is sent, in order.
//!
//! A few paths help tests: `/upload` streams the request body through
//! SHA-256 and answers its length and digest; `/download?bytes=N` streams N
//! bytes; `/slow?ms=N` waits before answering.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::proxy::{ProxyBody, text_body};

/// The demo's configuration: the cookie store, every default of the contract.
pub const CONFIG: &str =
    "listen: 127.0.0.1:8080\nadmin:\n  listen: 127.0.0.1:9090\nstore:\n  type: cookie\n";

/// Serves the echo backend on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    // Named in every answer, so a test can tell two echo backends apart.
    let server: Arc<str> = listener
        .local_addr()
        .map_or_else(|_| "unknown".into(), |addr| addr.to_string().into());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(|request| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(answer(request, &server).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(request: Request<Incoming>, server: &str) -> Response<ProxyBody> {
    let query = parse_query(request.uri().query().unwrap_or(""));
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut response = match request.uri().path() {
        "/upload" => upload(request).await,
        "/download" => download(param("bytes").and_then(|n| n.parse().ok()).unwrap_or(0)),
        path => {
            if path == "/slow" {
                let ms = param("ms").and_then(|n| n.parse().ok()).unwrap_or(1_000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            json_response(&describe(&request, server))
        }
    };
    let headers = response.headers_mut();
    // Every occurrence, in order: `update` may come several times.
    for (name, value) in &query {
        let header = match name.as_str() {
            "update" => "x-session-update",
            "regenerate" => "x-session-regenerate",
            "destroy" => "x-session-destroy",
            "set_cookie" => "set-cookie",
            "cache_control" => "cache-control",
            _ => continue,
        };
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(header, value);
        }
    }
    response
}

/// What the backend received, as JSON.
fn describe(request: &Request<Incoming>, server: &str) -> Value {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let session: Value = header("x-session-data")
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null);
    let mut headers = Map::new();
    for (name, value) in request.headers() {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            Some(Value::Array(values)) => values.push(value),
            _ => {
                headers.insert(name.as_str().to_owned(), Value::Array(vec![value]));
            }
        }
    }
    json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "version": format!("{:?}", request.version()),
        "session_id": header("x-session-id"),
        "server": server,
        "session": session,
        "headers": headers,
    })
}

async fn upload(request: Request<Incoming>) -> Response<ProxyBody> {
    let mut body = request.into_body();
    let mut digest = Sha256::new();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                    digest.update(data);
                }
            }
            Err(error) => {
                let mut response = text_response(format!("body failed: {error}\n"));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                return response;
            }
        }
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json_response(&json!({"bytes": bytes, "sha256": hex}))
}

/// Streams `total` bytes in 64 KiB frames without holding them all.
fn download(total: u64) -> Response<ProxyBody> {
    const FRAME: u64 = 64 * 1024;
    let frames = futures_util::stream::unfold(0u64, move |sent| async move {
        (sent < total).then(|| {
            let len = FRAME.min(total - sent);
            let chunk = Bytes::from(vec![b'x'; len as usize]);
            (Ok::<_, hyper::Error>(Frame::data(chunk)), sent + len)
        })
    });
    Response::new(BodyExt::boxed(StreamBody::new(frames)))
}

fn json_response(value: &Value) -> Response<ProxyBody> {
    let mut response = Response::new(text_body(format!("{value:#}\n")));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text_response(text: String) -> Response<ProxyBody> {
    Response::new(text_body(text))
}

/// `a=1&b=x%20y` into pairs, percent- and `+`-decoded.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&high), Some(&low)) => {
                hex(high).zip(hex(low)).map(|(h, l)| (h * 16 + l) as u8)
            }
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, other) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(
            parse_query("update=%7B%22a%22%3A1%7D&x=a+b&flag&bad=%zz%"),
            vec![
                ("update".into(), r#"{"a":1}"#.into()),
                ("x".into(), "a b".into()),
                ("flag".into(), "".into()),
                ("bad".into(), "%zz%".into())
            ]
        );
    }
}
