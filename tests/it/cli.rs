//! The command line: check, keygen, and start-up failures that name the key.

use std::process::{Command, Output};

use crate::support;

fn sessiongate(args: &[&str], config: Option<&str>, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(crate::support::binary());
    command
        .args(args)
        .env_remove("SESSION_SECRET")
        .env_remove("SESSION_PREVIOUS_SECRETS")
        .env_remove("CONFIG");
    if let Some(text) = config {
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, text).unwrap();
        command.arg("--config").arg(&path);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const SECRET: (&str, &str) = ("SESSION_SECRET", support::SECRET);

#[test]
fn check_accepts_the_example_configuration() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml")).unwrap();
    let output = sessiongate(&["check"], Some(&example), &[SECRET]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_missing_secret_is_refused_naming_session_secret() {
    let output = sessiongate(&["check"], Some(""), &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("SESSION_SECRET"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        stderr(&output).lines().count(),
        1,
        "one clear line: {}",
        stderr(&output)
    );
}

#[test]
fn a_short_secret_is_refused_naming_32() {
    let output = sessiongate(&["check"], Some(""), &[("SESSION_SECRET", "too-short")]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("32"), "{}", stderr(&output));
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let output = sessiongate(&["check"], Some("session:\n  tll: 5m\n"), &[SECRET]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("tll"), "{}", stderr(&output));
    let output = sessiongate(
        &["check"],
        Some("limits:\n  drain_timeout: soon\n"),
        &[SECRET],
    );
    assert!(
        stderr(&output).contains("limits.drain_timeout"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_run_command_fails_before_listening_on_a_bad_config() {
    let output = sessiongate(&[], Some("upstream:\n  url: nowhere\n"), &[SECRET]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("upstream.url"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn config_comes_from_the_config_variable_when_no_flag_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.yaml");
    std::fs::write(&path, "session:\n  bogus: 1\n").unwrap();
    let output = Command::new(crate::support::binary())
        .arg("check")
        .env("CONFIG", &path)
        .env("SESSION_SECRET", support::SECRET)
        .output()
        .unwrap();
    assert!(stderr(&output).contains("bogus"), "{}", stderr(&output));
}

#[test]
fn keygen_prints_a_secret_the_gateway_accepts() {
    let first = sessiongate(&["keygen"], None, &[]);
    let second = sessiongate(&["keygen"], None, &[]);
    let key = String::from_utf8(first.stdout).unwrap().trim().to_owned();
    assert!(key.len() >= 32, "{key}");
    assert_ne!(key, String::from_utf8(second.stdout).unwrap().trim());
    let output = sessiongate(&["check"], Some(""), &[("SESSION_SECRET", &key)]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn check_warns_of_unreachable_routes_and_names_bad_route_keys() {
    let shadowed = "session:\n  identity_key: user\nroutes:\n  - path_prefix: /api/\n  - path_prefix: /api/v2/\n    session: required\n";
    let output = sessiongate(&["check"], Some(shadowed), &[SECRET]);
    assert!(output.status.success(), "{}", stderr(&output));
    let warning = stderr(&output);
    assert!(
        warning.contains("routes[1] (/api/v2/) is unreachable") && warning.contains("routes[0]"),
        "{warning}"
    );

    let bad_host =
        "routes:\n  - path_prefix: /a/\n  - path_prefix: /b/\n  - host: 'api.*.example.com'\n";
    let output = sessiongate(&["check"], Some(bad_host), &[SECRET]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("routes[2].host"),
        "{}",
        stderr(&output)
    );

    let no_identity = "routes:\n  - path_prefix: /app/\n    session: required\n";
    let output = sessiongate(&["check"], Some(no_identity), &[SECRET]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("session.identity_key"),
        "{}",
        stderr(&output)
    );
}
