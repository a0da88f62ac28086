//! The signed session assertion, black-box: what the backend receives
//! verifies with a standard JWT library (Python's PyJWT, as a backend would
//! use it) against the JWKS the admin listener publishes; forged, stale and
//! misrouted tokens are refused; a client's copies never reach the backend;
//! a rotation keeps tokens signed before it verifiable.
//!
//! Needs `SESSIONGATE_TEST_PYTHON`, a Python with PyJWT and cryptography:
//! `scripts/test.sh` installs one (`scripts/services/jwt.sh`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Gateway, SECRET, TestClient, TestResponse, Upstream};

/// Verifies argv[1] (a token) with the key the JWKS at argv[2] names in its
/// `kid`, for audience argv[3]; prints `{"claims": ...}` or `{"error": ...}`.
const VERIFY: &str = r#"
import json, sys
import jwt

token, jwks_url, audience = sys.argv[1:4]
try:
    key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["EdDSA"],
        audience=audience,
        issuer="sessiongate",
        options={"require": ["iss", "sub", "aud", "iat", "exp"]},
    )
    print(json.dumps({"claims": claims, "kid": key.key_id}))
except Exception as error:
    print(json.dumps({"error": type(error).__name__, "detail": str(error)}))
"#;

const SECOND_SECRET: &str = "rotated-secret-0123456789-abcdefghijklmno";

/// PyJWT's verdict on `token` against `gateway`'s JWKS.
async fn verify(gateway: &Gateway, token: &str, audience: &str) -> Value {
    let python = std::env::var("SESSIONGATE_TEST_PYTHON")
        .expect("SESSIONGATE_TEST_PYTHON: run scripts/test.sh, which installs PyJWT");
    let output = tokio::process::Command::new(python)
        .arg("-c")
        .arg(VERIFY)
        .arg(token)
        .arg(gateway.admin_url("/.well-known/jwks.json"))
        .arg(audience)
        .output()
        .await
        .expect("run the verifier");
    assert!(
        output.status.success(),
        "verifier failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "verifier output ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The claims PyJWT accepted; fails the test with its reason otherwise.
async fn claims(gateway: &Gateway, token: &str, audience: &str) -> Value {
    let verdict = verify(gateway, token, audience).await;
    assert!(verdict.get("error").is_none(), "refused: {verdict}");
    verdict["claims"].clone()
}

/// The one assertion the backend received under `header`.
fn token(response: &TestResponse, header: &str) -> String {
    let tokens = response.upstream_header(header);
    assert_eq!(tokens.len(), 1, "{header}: {tokens:?}");
    tokens[0].clone()
}

fn data_sha256(response: &TestResponse) -> String {
    let data = response.upstream_header("x-session-data");
    assert_eq!(data.len(), 1, "{data:?}");
    URL_SAFE_NO_PAD.encode(Sha256::digest(data[0].as_bytes()))
}

async fn jwks(gateway: &Gateway) -> Value {
    let response = TestClient::new()
        .try_get(&gateway.admin_url("/.well-known/jwks.json"))
        .await
        .expect("the admin listener answers");
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "application/json");
    response.json()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("a JWKS")
        .iter()
        .map(|jwk| jwk["kid"].as_str().expect("a kid").to_owned())
        .collect()
}

fn get_with(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).expect("request")
}

#[tokio::test]
async fn the_backend_gets_a_token_a_standard_jwt_library_verifies() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        "store:\n  type: memory\nsession:\n  identity_key: user\nassertion: {}\n",
    )
    .await;
    let audience = upstream.url();
    let mut client = TestClient::new();

    let login = client.update(&gateway.url("/"), &json!({"cart": []})).await;
    let anonymous = claims(&gateway, &token(&login, "x-session-assertion"), &audience).await;
    assert_eq!(anonymous["sub"], login.session_id());
    assert_eq!(anonymous["data_sha256"], data_sha256(&login));
    assert!(
        anonymous.get("identity").is_none(),
        "no identity in the session yet: {anonymous}"
    );

    client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    let seen = client.get(&gateway.url("/")).await;
    assert_eq!(seen.session(), json!({"cart": [], "user": "ada"}));
    let verified = claims(&gateway, &token(&seen, "x-session-assertion"), &audience).await;
    assert_eq!(verified["iss"], "sessiongate");
    assert_eq!(verified["aud"], audience);
    assert_eq!(verified["sub"], seen.session_id());
    assert_eq!(verified["identity"], "ada");
    assert_eq!(verified["data_sha256"], data_sha256(&seen));
    let lifetime = verified["exp"].as_u64().unwrap() - verified["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 60, "the default ttl");

    let published = jwks(&gateway).await;
    assert_eq!(published["keys"].as_array().unwrap().len(), 1);
    let jwk = &published["keys"][0];
    for (field, value) in [
        ("kty", "OKP"),
        ("crv", "Ed25519"),
        ("alg", "EdDSA"),
        ("use", "sig"),
    ] {
        assert_eq!(jwk[field], value, "{jwk}");
    }
}

#[tokio::test]
async fn forged_stale_and_misrouted_tokens_are_refused() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "store:\n  type: memory\nassertion: {}\n").await;
    let audience = upstream.url();
    let response = TestClient::new().get(&gateway.url("/")).await;
    let genuine = token(&response, "x-session-assertion");
    claims(&gateway, &genuine, &audience).await;

    // The gateway's header and claims (same kid), signed by another key.
    let (signed, _) = genuine.rsplit_once('.').unwrap();
    let stranger = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
    let forged = format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(stranger.sign(signed.as_bytes()))
    );
    let verdict = verify(&gateway, &forged, &audience).await;
    assert_eq!(verdict["error"], "InvalidSignatureError", "{verdict}");

    // Sent to another backend (or replayed there): not its audience.
    let verdict = verify(&gateway, &genuine, "http://billing.internal").await;
    assert_eq!(verdict["error"], "InvalidAudienceError", "{verdict}");

    // Replayed after its ttl. JWT times are whole seconds, so a 1s token
    // may already be stale when it arrives: only its end is asserted.
    let short = Gateway::start(&upstream, "store:\n  type: memory\nassertion:\n  ttl: 1s\n").await;
    let stale = token(
        &TestClient::new().get(&short.url("/")).await,
        "x-session-assertion",
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let verdict = verify(&short, &stale, &audience).await;
    assert_eq!(verdict["error"], "ExpiredSignatureError", "{verdict}");
}

#[tokio::test]
async fn a_clients_copies_never_reach_the_backend() {
    let upstream = Upstream::start().await;
    let forged = [
        ("X-Session-Assertion", "forged.forged.forged"),
        ("x_session_assertion", "forged.forged.forged"),
        ("X-Proof", "forged.forged.forged"),
        ("x_PROOF", "forged.forged.forged"),
    ];

    // Off: the default name is stripped all the same.
    let off = Gateway::start(&upstream, "store:\n  type: memory\n").await;
    let seen = TestClient::new()
        .send(get_with(&off.url("/"), &forged))
        .await;
    for name in ["x-session-assertion", "x_session_assertion"] {
        assert!(seen.upstream_header(name).is_empty(), "{name} reached it");
    }

    // On, under another name: only the gateway's token arrives, and on a
    // `session: off` route none at all.
    let yaml = format!(
        "upstream:\n  url: {}\nstore:\n  type: memory\nassertion:\n  header: X-Proof\n  audience: app\nroutes:\n  - path_prefix: /static/\n    session: off\n",
        upstream.url()
    );
    let on = Gateway::builder(&yaml).start().await;
    let seen = TestClient::new()
        .send(get_with(&on.url("/"), &forged))
        .await;
    for name in ["x-session-assertion", "x_session_assertion", "x_proof"] {
        assert!(seen.upstream_header(name).is_empty(), "{name} reached it");
    }
    let verified = claims(&on, &token(&seen, "x-proof"), "app").await;
    assert_eq!(verified["sub"], seen.session_id());

    let unsessioned = TestClient::new()
        .send(get_with(&on.url("/static/a.css"), &forged))
        .await;
    assert_eq!(unsessioned.status, 200);
    for name in [
        "x-proof",
        "x_proof",
        "x-session-assertion",
        "x_session_assertion",
    ] {
        assert!(
            unsessioned.upstream_header(name).is_empty(),
            "{name} reached a session: off route"
        );
    }
}

#[tokio::test]
async fn after_a_rotation_the_jwks_lists_both_keys_and_older_tokens_verify() {
    let upstream = Upstream::start().await;
    let yaml = format!(
        "upstream:\n  url: {}\nstore:\n  type: memory\nassertion:\n  ttl: 10m\n",
        upstream.url()
    );
    let audience = upstream.url();
    let before = Gateway::builder(&yaml).start().await;
    let signed_before = token(
        &TestClient::new().get(&before.url("/")).await,
        "x-session-assertion",
    );
    let old_kids = kids(&jwks(&before).await);
    assert_eq!(old_kids.len(), 1);

    let after = Gateway::builder(&yaml)
        .env("SESSION_SECRET", SECOND_SECRET)
        .env("SESSION_PREVIOUS_SECRETS", SECRET)
        .start()
        .await;
    let new_kids = kids(&jwks(&after).await);
    assert_eq!(new_kids.len(), 2, "{new_kids:?}");
    assert_eq!(
        new_kids[1], old_kids[0],
        "the old key, after the current one"
    );
    assert_ne!(new_kids[0], old_kids[0]);

    let verdict = verify(&after, &signed_before, &audience).await;
    assert_eq!(verdict["kid"], old_kids[0], "{verdict}");
    assert!(verdict.get("claims").is_some(), "{verdict}");
    let signed_after = token(
        &TestClient::new().get(&after.url("/")).await,
        "x-session-assertion",
    );
    let verdict = verify(&after, &signed_after, &audience).await;
    assert_eq!(
        verdict["kid"], new_kids[0],
        "signed with the current secret: {verdict}"
    );
}
