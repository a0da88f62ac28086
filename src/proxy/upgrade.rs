//! Protocol upgrades (WebSocket over HTTP/1.1): once the backend answers
//! `101 Switching Protocols`, bytes flow both ways untouched.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The client asks to switch to WebSocket (`Connection: upgrade` +
/// `Upgrade: websocket`). Other protocols (`h2c` and the like) are served as
/// plain requests without the upgrade: after a `101` raw bytes would pass
/// every header check by.
pub fn requested(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get_all(UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|protocol| protocol.trim().eq_ignore_ascii_case("websocket"))
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Joins the client's and the backend's upgraded connections and copies
/// bytes both ways until either side closes.
/// `request` names the request (method and path) in logs.
pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade, request: String) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%request, %error, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%request, %error, "upgraded connection ended");
        }
    });
}
