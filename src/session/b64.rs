//! base64url without padding: the alphabet that is safe in cookie values.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Safe unquoted in cookies and headers: sealed values, MAC tags, public ids.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `None` for anything that is not unpadded base64url: the caller treats it
/// as a cookie that does not verify.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}
