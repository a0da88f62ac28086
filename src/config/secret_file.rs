//! The secrets in force: from the environment, from files (as Docker and
//! Kubernetes mount them) or from the configuration, in one order of
//! precedence. Read at start and again on every reload.
//!
//! | current secret | previous secrets |
//! |---|---|
//! | `SESSION_SECRET` | `SESSION_PREVIOUS_SECRETS` (comma-separated) |
//! | `SESSION_SECRET_FILE` | `SESSION_PREVIOUS_SECRETS_FILE` (one a line) |
//! | `session.secret_file` | `session.previous_secrets_file` (one a line) |
//! | `session.secret` | `session.previous_secrets` |
//!
//! The first that is set (and not empty) wins; the others are not read.

use std::path::Path;

use super::SessionConfig;
use super::load::{MIN_SECRET_LEN, Secrets};
use crate::error::Error;

/// A secret file larger than this is not a secret (a wrong path, say).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Resolves the current and previous secrets; `env` looks up variables.
///
/// # Errors
///
/// A configuration error naming the variable or key, and the file, when no
/// secret is set, a file cannot be read or is empty, or a secret is shorter
/// than [`MIN_SECRET_LEN`].
pub(super) fn resolve(
    session: &SessionConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secrets, Error> {
    let set = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let (label, current) = if let Some(secret) = set(env("SESSION_SECRET")) {
        ("SESSION_SECRET".to_owned(), secret)
    } else if let Some(path) = set(env("SESSION_SECRET_FILE")) {
        let label = format!("SESSION_SECRET_FILE ({path})");
        let secret = read(&label, Path::new(&path))?;
        (label, secret)
    } else if let Some(path) = set(session.secret_file.clone()) {
        let label = format!("session.secret_file ({path})");
        let secret = read(&label, Path::new(&path))?;
        (label, secret)
    } else if let Some(secret) = set(session.secret.clone()) {
        ("SESSION_SECRET".to_owned(), secret)
    } else {
        return Err(Error::config_message(format!(
            "no session secret: set SESSION_SECRET (or SESSION_SECRET_FILE, session.secret_file, session.secret) to at least {MIN_SECRET_LEN} random characters, e.g. from `sessiongate keygen`"
        )));
    };
    check_length(&label, &current)?;

    let (label, previous) = if let Some(list) = set(env("SESSION_PREVIOUS_SECRETS")) {
        let list = list.split(',').map(|s| s.trim().to_owned()).collect();
        ("SESSION_PREVIOUS_SECRETS".to_owned(), list)
    } else if let Some(path) = set(env("SESSION_PREVIOUS_SECRETS_FILE")) {
        let label = format!("SESSION_PREVIOUS_SECRETS_FILE ({path})");
        let list = read_lines(&label, Path::new(&path))?;
        (label, list)
    } else if let Some(path) = set(session.previous_secrets_file.clone()) {
        let label = format!("session.previous_secrets_file ({path})");
        let list = read_lines(&label, Path::new(&path))?;
        (label, list)
    } else {
        let list = session.previous_secrets.clone();
        ("SESSION_PREVIOUS_SECRETS".to_owned(), list)
    };
    let previous: Vec<String> = previous.into_iter().filter(|s| !s.is_empty()).collect();
    for secret in &previous {
        // express-session takes secrets of any length, so an app moving
        // behind the gateway may have signed its cookies with a short
        // one: it may still verify, never sign.
        if session.compat == super::Compat::ExpressSession
            && secret.chars().count() < MIN_SECRET_LEN
        {
            tracing::warn!(
                "{label}: a previous secret is shorter than {MIN_SECRET_LEN} characters; accepted only because session.compat is express-session (it only verifies old cookies): retire it once they have expired"
            );
            continue;
        }
        check_length(&label, secret)?;
    }
    Ok(Secrets { current, previous })
}

/// A secret must be long enough to derive keys from.
fn check_length(label: &str, secret: &str) -> Result<(), Error> {
    if secret.chars().count() < MIN_SECRET_LEN {
        return Err(Error::config_message(format!(
            "{label}: a secret must be at least {MIN_SECRET_LEN} characters long (got {})",
            secret.chars().count()
        )));
    }
    Ok(())
}

/// One secret: the file's text without its trailing newline.
fn read(label: &str, path: &Path) -> Result<String, Error> {
    let text = read_text(label, path)?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(Error::config_message(format!("{label}: the file is empty")));
    }
    Ok(secret.to_owned())
}

/// Several secrets, one a line; blank lines are skipped. An empty file is
/// an empty list (every previous secret retired).
fn read_lines(label: &str, path: &Path) -> Result<Vec<String>, Error> {
    let text = read_text(label, path)?;
    Ok(text
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

fn read_text(label: &str, path: &Path) -> Result<String, Error> {
    let unreadable =
        |e: std::io::Error| Error::config_message(format!("{label}: cannot read the file: {e}"));
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(Error::config_message(format!(
            "{label}: not a regular file"
        )));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(Error::config_message(format!(
            "{label}: {} bytes is too large for a secret file",
            metadata.len()
        )));
    }
    warn_if_world_readable(label, &metadata);
    let bytes = std::fs::read(path).map_err(unreadable)?;
    String::from_utf8(bytes)
        .map_err(|_| Error::config_message(format!("{label}: the file is not UTF-8 text")))
}

#[cfg(unix)]
fn warn_if_world_readable(label: &str, metadata: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode();
    if mode & 0o004 != 0 {
        tracing::warn!(
            "{label}: the secret file is readable by every user on this host (mode {:o}); make it 0400 or 0600 (Kubernetes: defaultMode: 0400)",
            mode & 0o777
        );
    }
}

#[cfg(not(unix))]
fn warn_if_world_readable(_label: &str, _metadata: &std::fs::Metadata) {}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccc";
    const D: &str = "dddddddddddddddddddddddddddddddddddd";

    struct Files(tempfile::TempDir);

    impl Files {
        fn new() -> Self {
            Self(tempfile::tempdir().unwrap())
        }

        fn write(&self, name: &str, text: &str) -> String {
            let path = self.0.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        }
    }

    fn resolve_with(session: &SessionConfig, env: &[(&str, &str)]) -> Result<Secrets, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(session, &|name| env.get(name).cloned()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_first_that_is_set_wins() {
        let files = Files::new();
        let env_file = files.write("env", &format!("{B}\n"));
        let key_file = files.write("key", &format!("{C}\n"));
        let session = SessionConfig {
            secret: Some(D.into()),
            secret_file: Some(key_file),
            ..SessionConfig::default()
        };
        type Env<'a> = Vec<(&'a str, &'a str)>;
        let cases: [(&str, Env, &str); 4] = [
            (
                "SESSION_SECRET first",
                vec![("SESSION_SECRET", A), ("SESSION_SECRET_FILE", &env_file)],
                A,
            ),
            (
                "then SESSION_SECRET_FILE",
                vec![("SESSION_SECRET_FILE", &env_file)],
                B,
            ),
            (
                "an empty variable counts as unset",
                vec![("SESSION_SECRET", ""), ("SESSION_SECRET_FILE", "")],
                C,
            ),
            ("then session.secret_file", vec![], C),
        ];
        for (case, env, expected) in cases {
            assert_eq!(
                resolve_with(&session, &env).unwrap().current,
                expected,
                "{case}"
            );
        }
        let inline = SessionConfig {
            secret: Some(D.into()),
            ..SessionConfig::default()
        };
        assert_eq!(
            resolve_with(&inline, &[]).unwrap().current,
            D,
            "session.secret last"
        );
    }

    #[test]
    fn the_trailing_newline_is_not_part_of_the_secret() {
        let files = Files::new();
        for (name, text) in [
            ("lf", format!("{A}\n")),
            ("crlf", format!("{A}\r\n")),
            ("none", A.to_owned()),
        ] {
            let path = files.write(name, &text);
            let secrets =
                resolve_with(&SessionConfig::default(), &[("SESSION_SECRET_FILE", &path)]).unwrap();
            assert_eq!(secrets.current, A, "{name}");
        }
    }

    #[test]
    fn bad_files_are_refused_naming_the_file() {
        let files = Files::new();
        let empty = files.write("empty", "\n");
        let short = files.write("short", "too-short\n");
        let missing = files.0.path().join("missing").display().to_string();
        for (case, path, says) in [
            ("empty", &empty, "empty"),
            ("short", &short, "at least 32"),
            ("missing", &missing, "cannot read"),
        ] {
            let error = resolve_with(&SessionConfig::default(), &[("SESSION_SECRET_FILE", path)])
                .unwrap_err();
            assert!(
                error.starts_with("SESSION_SECRET_FILE ("),
                "{case}: {error}"
            );
            assert!(
                error.contains(path.as_str()) && error.contains(says),
                "{case}: {error}"
            );
        }
        let session = SessionConfig {
            secret_file: Some(short.clone()),
            ..SessionConfig::default()
        };
        let error = resolve_with(&session, &[]).unwrap_err();
        assert!(
            error.starts_with(&format!("session.secret_file ({short})")),
            "{error}"
        );
    }

    #[test]
    fn previous_secrets_one_a_line_with_the_same_precedence() {
        let files = Files::new();
        let list = files.write("previous", &format!("{B}\n\n{C}\r\n"));
        let key_list = files.write("key-previous", &format!("{D}\n"));
        let session = SessionConfig {
            secret: Some(A.into()),
            previous_secrets: vec![A.into()],
            previous_secrets_file: Some(key_list),
            ..SessionConfig::default()
        };
        let from = |env: &[(&str, &str)]| resolve_with(&session, env).unwrap().previous;
        assert_eq!(
            from(&[
                ("SESSION_PREVIOUS_SECRETS", &format!("{C}, {B}")),
                ("SESSION_PREVIOUS_SECRETS_FILE", &list)
            ]),
            vec![C, B]
        );
        assert_eq!(
            from(&[("SESSION_PREVIOUS_SECRETS_FILE", &list)]),
            vec![B, C]
        );
        assert_eq!(from(&[]), vec![D]);
        let inline = SessionConfig {
            secret: Some(A.into()),
            previous_secrets: vec![B.into()],
            ..SessionConfig::default()
        };
        assert_eq!(resolve_with(&inline, &[]).unwrap().previous, vec![B]);
        let short = files.write("short-previous", "short\n");
        let error =
            resolve_with(&inline, &[("SESSION_PREVIOUS_SECRETS_FILE", &short)]).unwrap_err();
        assert!(
            error.starts_with(&format!("SESSION_PREVIOUS_SECRETS_FILE ({short})")),
            "{error}"
        );
    }

    #[test]
    fn no_secret_names_the_variable() {
        let error = resolve_with(&SessionConfig::default(), &[]).unwrap_err();
        assert!(error.contains("SESSION_SECRET"), "{error}");
    }
}
