use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::json;

use super::*;
use crate::config::ConfigDuration;
use crate::session::keys::tests::ring as keyring;

fn config(header: &str, audience: Option<&str>, ttl_secs: u64) -> AssertionConfig {
    AssertionConfig {
        header: header.to_owned(),
        audience: audience.map(str::to_owned),
        ttl: ConfigDuration::secs(ttl_secs),
    }
}

fn decode_json(part: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Checks the signature with the public key the JWKS publishes under the
/// token's `kid`, the way a backend would.
fn verifies(token: &str, jwks: &str) -> bool {
    let Some((signed, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let header = decode_json(signed.split('.').next().unwrap());
    let jwks: Value = serde_json::from_str(jwks).unwrap();
    let Some(jwk) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|jwk| jwk["kid"] == header["kid"])
    else {
        return false;
    };
    let public = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public)
        .verify(signed.as_bytes(), &signature)
        .is_ok()
}

fn session(value: Value) -> SessionData {
    value.as_object().unwrap().clone()
}

#[test]
fn token_is_a_compact_eddsa_jws_naming_its_key() {
    let keys = keyring("a", &[]);
    let assertion = Assertion::new(&config("X-Session-Assertion", None, 60), None, &keys).unwrap();
    let token = assertion
        .sign(b"pub-id", b"{}", None, "http://app:3000", 1_000)
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    assert_eq!(
        decode_json(parts[0]),
        json!({"alg": "EdDSA", "typ": "JWT", "kid": keys.current().id})
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
    assert!(verifies(&token, &jwks(&keys).unwrap()));
}

#[test]
fn claims_bind_the_session_headers_the_audience_and_the_time() {
    let keys = keyring("a", &[]);
    let assertion = Assertion::new(
        &config("X-Session-Assertion", None, 90),
        Some("user".into()),
        &keys,
    )
    .unwrap();
    let data = br#"{"user":"ada","n":1}"#;
    let identity = json!("ada");
    let token = assertion
        .sign(b"pub-id", data, Some(&identity), "http://app:3000", 1_000)
        .unwrap();
    let claims = decode_json(token.split('.').nth(1).unwrap());
    assert_eq!(
        claims,
        json!({
            "iss": "sessiongate",
            "sub": "pub-id",
            "aud": "http://app:3000",
            "iat": 1_000,
            "exp": 1_090,
            "identity": "ada",
            "data_sha256": URL_SAFE_NO_PAD.encode(Sha256::digest(data)),
        })
    );
    let anonymous = assertion
        .sign(b"pub-id", b"{}", None, "http://app:3000", 1_000)
        .unwrap();
    let claims = decode_json(anonymous.split('.').nth(1).unwrap());
    assert!(claims.get("identity").is_none(), "{claims}");
}

#[test]
fn write_signs_the_headers_written_and_strips_forged_copies() {
    let keys = keyring("a", &[]);
    let assertion = Assertion::new(
        &config("X-Proof", Some("billing"), 60),
        Some("user".into()),
        &keys,
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(SESSION_ID, HeaderValue::from_static("pub-id"));
    headers.insert(SESSION_DATA, HeaderValue::from_static(r#"{"user":"ada"}"#));
    headers.insert("x_proof", HeaderValue::from_static("forged"));
    assertion
        .write(
            &mut headers,
            Some(&session(json!({"user": "ada"}))),
            "http://app:3000",
        )
        .unwrap();
    assert!(!headers.contains_key("x_proof"));
    let token = headers["x-proof"].to_str().unwrap();
    assert!(verifies(token, &jwks(&keys).unwrap()));
    let claims = decode_json(token.split('.').nth(1).unwrap());
    assert_eq!(claims["aud"], "billing");
    assert_eq!(claims["sub"], "pub-id");
    assert_eq!(claims["identity"], "ada");
    assert_eq!(
        claims["data_sha256"],
        URL_SAFE_NO_PAD.encode(Sha256::digest(br#"{"user":"ada"}"#))
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );

    for nobody in [
        json!({"user": ""}),
        json!({"user": null}),
        json!({"other": 1}),
    ] {
        let mut headers = HeaderMap::new();
        assertion
            .write(
                &mut headers,
                Some(&session(nobody.clone())),
                "http://app:3000",
            )
            .unwrap();
        let claims = decode_json(
            headers["x-proof"]
                .to_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        );
        assert!(claims.get("identity").is_none(), "{nobody}: {claims}");
    }
    let mut numbered = HeaderMap::new();
    assertion
        .write(
            &mut numbered,
            Some(&session(json!({"user": 42}))),
            "http://app:3000",
        )
        .unwrap();
    let claims = decode_json(
        numbered["x-proof"]
            .to_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap(),
    );
    assert_eq!(claims["identity"], 42, "a number stays a number");

    let mut off_route = HeaderMap::new();
    off_route.insert("X-PROOF", HeaderValue::from_static("forged"));
    assertion
        .write(&mut off_route, None, "http://app:3000")
        .unwrap();
    assert!(
        off_route.is_empty(),
        "no session, no assertion: {off_route:?}"
    );
}

#[test]
fn key_ids_and_keys_are_stable_for_a_secret() {
    let first = jwks(&keyring("a", &[])).unwrap();
    assert_eq!(first, jwks(&keyring("a", &[])).unwrap());
    assert_ne!(first, jwks(&keyring("b", &[])).unwrap());
    let document: Value = serde_json::from_str(&first).unwrap();
    let jwk = &document["keys"][0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], keyring("a", &[]).current().id);
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(jwk["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
}

#[test]
fn previous_secrets_keys_stay_published_after_a_rotation() {
    let before = keyring("a", &[]);
    let signed_before = Assertion::new(&config("X-Session-Assertion", None, 60), None, &before)
        .unwrap()
        .sign(b"pub-id", b"{}", None, "http://app", 1_000)
        .unwrap();
    let after = keyring("b", &["a"]);
    let published = jwks(&after).unwrap();
    let document: Value = serde_json::from_str(&published).unwrap();
    let kids: Vec<&str> = document["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|jwk| jwk["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        vec![after.current().id.as_str(), before.current().id.as_str()]
    );
    assert!(verifies(&signed_before, &published));
    assert!(!verifies(
        &signed_before,
        &jwks(&keyring("b", &[])).unwrap()
    ));
}

#[test]
fn tampering_breaks_the_signature() {
    let keys = keyring("a", &[]);
    let published = jwks(&keys).unwrap();
    let assertion = Assertion::new(
        &config("X-Session-Assertion", None, 60),
        Some("user".into()),
        &keys,
    )
    .unwrap();
    let identity = json!("ada");
    let token = assertion
        .sign(b"pub-id", b"{}", Some(&identity), "http://app", 1_000)
        .unwrap();
    assert!(verifies(&token, &published));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = decode_json(&parts[1]);
    claims["identity"] = json!("eve");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert!(!verifies(&parts.join("."), &published), "a changed claim");

    let forger = Assertion::new(
        &config("X-Session-Assertion", None, 60),
        None,
        &keyring("z", &[]),
    )
    .unwrap();
    let mut forged: Vec<String> = forger
        .sign(b"pub-id", b"{}", None, "http://app", 1_000)
        .unwrap()
        .split('.')
        .map(str::to_owned)
        .collect();
    forged[0] = token.split('.').next().unwrap().to_owned();
    assert!(
        !verifies(&forged.join("."), &published),
        "another key's signature"
    );
}
