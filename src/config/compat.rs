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
