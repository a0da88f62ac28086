//! `admin.token`: the bearer token of the admin session API.

use super::Config;
use crate::error::Error;

/// Shortest admin token accepted: it guards logging out every user.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl Config {
    /// The admin API's token, if one is set: `ADMIN_TOKEN`, then the file
    /// `ADMIN_TOKEN_FILE` names (a trailing newline is not part of it),
    /// then `admin.token`. `None` turns the API off (404).
    ///
    /// # Errors
    ///
    /// A configuration error naming the source when the token is shorter
    /// than 16 characters or its file cannot be read.
    pub fn admin_token(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, Error> {
        let (source, token) = if let Some(token) = env("ADMIN_TOKEN").filter(|t| !t.is_empty()) {
            ("ADMIN_TOKEN", token)
        } else if let Some(path) = env("ADMIN_TOKEN_FILE").filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::config_message(format!("ADMIN_TOKEN_FILE: cannot read {path}: {e}"))
            })?;
            let token = text.strip_suffix('\n').unwrap_or(&text);
            let token = token.strip_suffix('\r').unwrap_or(token).to_owned();
            ("ADMIN_TOKEN_FILE", token)
        } else if let Some(token) = self.admin.token.clone().filter(|t| !t.is_empty()) {
            ("admin.token", token)
        } else {
            return Ok(None);
        };
        if token.chars().count() < MIN_ADMIN_TOKEN_LEN {
            return Err(Error::config(
                source,
                format!("the admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters long"),
            ));
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        let text = format!("session:\n  secret: {}\n{yaml}", "s".repeat(40));
        Config::parse(&text, &|_| None).unwrap()
    }

    #[test]
    fn the_environment_wins_then_the_file_then_the_config() {
        let config = config("admin:\n  token: from-the-config-file-123\n");
        assert_eq!(
            config.admin_token(&|_| None).unwrap().as_deref(),
            Some("from-the-config-file-123")
        );
        let env = |name: &str| (name == "ADMIN_TOKEN").then(|| "from-the-environment-1".to_owned());
        assert_eq!(
            config.admin_token(&env).unwrap().as_deref(),
            Some("from-the-environment-1")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-a-mounted-file-12\n").unwrap();
        let path = path.to_string_lossy().into_owned();
        let env = move |name: &str| (name == "ADMIN_TOKEN_FILE").then(|| path.clone());
        assert_eq!(
            config.admin_token(&env).unwrap().as_deref(),
            Some("from-a-mounted-file-12")
        );
    }

    #[test]
    fn a_short_token_or_a_missing_file_is_refused() {
        let error = config("admin:\n  token: short\n")
            .admin_token(&|_| None)
            .unwrap_err();
        assert!(error.to_string().contains("admin.token"), "{error}");
        let env =
            |name: &str| (name == "ADMIN_TOKEN_FILE").then(|| "/nonexistent/token".to_owned());
        let error = config("").admin_token(&env).unwrap_err();
        assert!(error.to_string().contains("ADMIN_TOKEN_FILE"), "{error}");
        assert_eq!(config("").admin_token(&|_| None).unwrap(), None);
    }
}
