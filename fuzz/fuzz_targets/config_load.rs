//! The YAML configuration loader with `${VAR}` substitution
//! (`config::Config::parse`, then the secrets).
//!
//! Input: `YAML text \0 value of VAR`; the environment holds `VAR` (when a
//! value is given), `EMPTY` (empty) and a valid `SESSION_SECRET`. Checks:
//! never panics, and a configuration that loads yields its secrets or a
//! clean error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiongate::config::Config;

fuzz_target!(|input: &[u8]| {
    let (yaml, var) = match input.iter().position(|b| *b == 0) {
        Some(at) => (&input[..at], Some(&input[at + 1..])),
        None => (input, None),
    };
    let Ok(yaml) = std::str::from_utf8(yaml) else {
        return;
    };
    let var = var.map(|v| String::from_utf8_lossy(v).into_owned());
    let env = |name: &str| match name {
        "VAR" => var.clone(),
        "EMPTY" => Some(String::new()),
        "SESSION_SECRET" => Some("fuzz-current-secret-0123456789abcdef0123456789".into()),
        _ => None,
    };
    if let Ok(config) = Config::parse(yaml, &env) {
        let _ = config.secrets(&env);
        let _ = config.warnings();
    }
});
