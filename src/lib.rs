//! sessiongate: a reverse proxy that gives a session-less backend real
//! sessions.
//!
//! A request's path, module by module:
//!
//! 1. [`server`] accepts the connection (plain or TLS), bounds it, and hands
//!    each request to the [`gateway`];
//! 2. [`session`] resolves the session from the cookie and the [`store`],
//!    and writes it into the request headers;
//! 3. [`proxy`] forwards the request upstream and streams the response back;
//! 4. [`session`] applies the backend's instructions to the store before the
//!    response head leaves, and sets the cookie;
//! 5. [`admin`] reports health, readiness and metrics on its own port.
//!
//! [`config`] reads `gateway.yaml`; [`app`] starts it all; [`demo`] is the
//! built-in echo backend.

pub mod admin;
pub mod app;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod proxy;
pub mod server;
pub mod session;
pub mod store;
