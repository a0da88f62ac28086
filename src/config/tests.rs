use super::*;
use crate::error::Error;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, Error> {
    Config::parse(text, &no_env)
}

#[test]
fn empty_file_gives_contract_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(config.session.ttl.get().as_secs(), 86_400);
    assert_eq!(config.session.cookie.name, "sid");
    assert_eq!(config.session.cookie.secure, Secure::Auto);
    assert_eq!(config.limits.max_header_bytes, 65_536);
    assert!(matches!(
        config.store,
        StoreConfig::Cookie(CookieStoreConfig { max_chunks: 5 })
    ));
}

#[test]
fn unknown_keys_are_named() {
    let error = parse("session:\n  cookie:\n    nmae: x\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("session.cookie") && error.contains("nmae"),
        "{error}"
    );
    let error = parse("store:\n  type: memory\n  table: x\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("store") && error.contains("table"),
        "{error}"
    );
    let error = parse("store:\n  type: postgres\n").unwrap_err().to_string();
    assert!(error.contains("store.type"), "{error}");
}

#[test]
fn variables_are_substituted_in_strings() {
    let env = |name: &str| match name {
        "PORT" => Some("4000".to_owned()),
        _ => None,
    };
    let config = Config::parse(
        "upstream:\n  url: http://127.0.0.1:${PORT}\nsession:\n  cookie:\n    name: ${NAME:-app}\n",
        &env,
    )
    .unwrap();
    assert_eq!(config.upstream.url, "http://127.0.0.1:4000");
    assert_eq!(config.session.cookie.name, "app");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("session:\n  ttl: 10\n", "session.ttl"),
        ("upstream:\n  url: ftp://x\n", "upstream.url"),
        (
            "session:\n  cookie:\n    same_site: none\n    secure: false\n",
            "session.cookie.same_site",
        ),
        ("trusted_proxies: [nonsense]\n", "trusted_proxies"),
        (
            "headers:\n  fields:\n    user: \"bad header\"\n",
            "headers.fields.user",
        ),
        ("session:\n  touch_interval: 2d\n", "session.touch_interval"),
    ];
    for (text, key) in cases {
        let error = parse(text).unwrap_err().to_string();
        assert!(error.contains(key), "{text:?} gave {error}");
    }
}

#[test]
fn secret_rules() {
    let config = parse("").unwrap();
    let missing = config.secrets(&no_env).unwrap_err().to_string();
    assert!(missing.contains("SESSION_SECRET"), "{missing}");

    let short = |name: &str| (name == "SESSION_SECRET").then(|| "x".repeat(31));
    assert!(
        config
            .secrets(&short)
            .unwrap_err()
            .to_string()
            .contains("32")
    );

    let with_file = parse(&format!("session:\n  secret: {}\n", "f".repeat(32))).unwrap();
    assert_eq!(with_file.secrets(&no_env).unwrap().current, "f".repeat(32));
    let env = |name: &str| match name {
        "SESSION_SECRET" => Some("e".repeat(40)),
        "SESSION_PREVIOUS_SECRETS" => Some(format!("{},{}", "p".repeat(32), "q".repeat(32))),
        _ => None,
    };
    let secrets = with_file.secrets(&env).unwrap();
    assert_eq!(secrets.current, "e".repeat(40));
    assert_eq!(secrets.previous, vec!["p".repeat(32), "q".repeat(32)]);
}

#[test]
fn trusted_proxies_take_cidrs_and_addresses() {
    let config = parse("trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"::1\"]\n").unwrap();
    assert_eq!(config.trusted_proxies.len(), 3);
    assert!(config.trusted_proxies[1].contains(&"192.168.1.7".parse::<IpAddr>().unwrap()));
}

#[test]
fn urls_are_shown_without_their_password() {
    assert_eq!(
        redact_url("redis://user:hunter2@cache:6379/0"),
        "redis://user:***@cache:6379/0"
    );
    assert_eq!(
        redact_url("mysql://root@db/test"),
        "mysql://root:***@db/test"
    );
    assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
    let config = parse(
        "session:\n  secret: a-very-secret-value-that-is-long-enough\nstore:\n  type: redis\n  url: redis://u:hunter2@h:6379\n",
    )
    .unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("a-very-secret-value"), "{shown}");
}

#[test]
fn credentials_in_the_upstream_url_are_refused_without_echoing_them() {
    let error = parse("upstream:\n  url: http://admin:hunter2@app:3000\n")
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("upstream.url:"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}
