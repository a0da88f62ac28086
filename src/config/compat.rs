//! `session.compat`: sharing sessions with a running Node app, and the
//! checks that go with it.

use serde::Deserialize;

use super::{Config, DynamoLayout, StoreConfig};
use crate::error::Error;

/// `session.compat`: whose cookie and stored format the gateway speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compat {
    /// sessiongate's own formats.
    #[default]
    None,
    /// express-session's `s:` cookie and stored JSON (server stores).
    ExpressSession,
    /// iron-session v8's sealed cookie (the cookie store).
    IronSession,
}

/// The cookie name express-session uses when none is given.
pub const EXPRESS_COOKIE_NAME: &str = "connect.sid";

/// Checks that the mode fits the rest of the configuration.
pub(super) fn validate(config: &Config) -> Result<(), Error> {
    let session = &config.session;
    let server_store = !matches!(config.store, StoreConfig::Cookie(_));
    if let StoreConfig::Dynamodb(dynamo) = &config.store
        && dynamo.layout != DynamoLayout::Native
        && session.compat != Compat::ExpressSession
    {
        return Err(Error::config(
            "store.layout",
            "connect-dynamodb and cyclic hold express-session's sessions: they need session.compat: express-session",
        ));
    }
    match session.compat {
        Compat::None => Ok(()),
        Compat::ExpressSession if !server_store => Err(Error::config(
            "session.compat",
            "express-session needs a server store (store.type: redis, mysql, dynamodb or memory)",
        )),
        Compat::IronSession if server_store => Err(Error::config(
            "session.compat",
            "iron-session keeps the session in the cookie: it needs store.type: cookie",
        )),
        _ if session.absolute_ttl.is_some() => Err(Error::config(
            "session.absolute_ttl",
            "cannot be used with session.compat: express-session and iron-session store no creation time",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, &|_| None)
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("should be refused: {text}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn express_session_names_its_cookie_connect_sid_unless_told() {
        let config =
            parse("session:\n  compat: express-session\nstore:\n  type: memory\n").unwrap();
        assert_eq!(config.session.compat, Compat::ExpressSession);
        assert_eq!(config.session.cookie.name, "connect.sid");
        let named = parse(
            "session:\n  compat: express-session\n  cookie:\n    name: sid\nstore:\n  type: memory\n",
        )
        .unwrap();
        assert_eq!(named.session.cookie.name, "sid");
        let iron = parse("session:\n  compat: iron-session\n").unwrap();
        assert_eq!(iron.session.cookie.name, "sid");
        assert_eq!(parse("").unwrap().session.compat, Compat::None);
    }

    #[test]
    fn each_mode_needs_its_kind_of_store_and_no_absolute_ttl() {
        assert!(error("session:\n  compat: express-session\n").starts_with("session.compat:"));
        assert!(
            error("session:\n  compat: iron-session\nstore:\n  type: memory\n")
                .starts_with("session.compat:")
        );
        assert!(
            error("session:\n  compat: iron-session\n  absolute_ttl: 7d\n")
                .starts_with("session.absolute_ttl:")
        );
        assert!(error("session:\n  compat: nodejs\n").starts_with("session.compat:"));
        assert!(error("store:\n  type: dynamodb\n  layout: cyclic\n").starts_with("store.layout:"));
        assert!(
            error(
                "session:\n  compat: express-session\nstore:\n  type: dynamodb\n  layout: connect-dynamodb\n  sort_key: sk\n"
            )
            .starts_with("store.sort_key:")
        );
        parse("session:\n  compat: express-session\nstore:\n  type: dynamodb\n  layout: cyclic\n")
            .unwrap();
    }

    #[test]
    fn express_session_accepts_a_short_previous_secret() {
        let env = |name: &str| match name {
            "SESSION_SECRET" => Some("n".repeat(32)),
            "SESSION_PREVIOUS_SECRETS" => Some("keyboard cat".into()),
            _ => None,
        };
        let express =
            parse("session:\n  compat: express-session\nstore:\n  type: memory\n").unwrap();
        assert_eq!(
            express.secrets(&env).unwrap().previous,
            vec!["keyboard cat"]
        );
        let native = parse("store:\n  type: memory\n").unwrap();
        assert!(native.secrets(&env).unwrap_err().to_string().contains("32"));
    }
}
