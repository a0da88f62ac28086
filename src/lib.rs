//! sessiongate: a reverse proxy that gives a session-less backend real
//! sessions.
//!
//! A request's path, module by module:
//!
//! 1. [`server`] accepts the connection (plain or TLS), bounds it, and hands
//!    each request to the [`gateway`], which picks its [`route`] (backend,
//!    session rule, cross-origin check);
//! 2. [`session`] resolves the session from the cookie and the [`store`],
//!    and writes it into the request headers;
//! 3. [`proxy`] forwards the request upstream and streams the response back;
//! 4. [`session`] applies the backend's instructions to the store before the
//!    response head leaves, and sets the cookie;
//! 5. [`admin`] reports health, readiness and metrics on its own port.
//!
//! [`config`] reads `gateway.yaml`; [`app`] starts it all; [`demo`] is the
//! built-in echo backend; [`error`] is the one error type.
//!
//! Imports run one way: `config` and `error` are the ground floor and import
//! nothing else from the crate; `store` builds on them; `session` on
//! `store`; `proxy` on `config`; `route` on `proxy`; `gateway` joins
//! `session`, `route` and `proxy`;
//! `server`, `admin` and `app` sit on top.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod admin;
pub mod app;
pub mod config;
pub mod demo;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod proxy;
pub mod route;
pub mod server;
pub mod session;
pub mod store;

pub use error::{Error, Result};
