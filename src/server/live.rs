//! What the listener serves right now: the gateway and the TLS acceptor,
//! swapped whole on a reload.
//!
//! Each request loads the gateway once, when it starts, and keeps it to the
//! end, so a reload changes new requests only: requests in flight finish on
//! the configuration they began with, and an old gateway (its store
//! included) is dropped once its last request is done. Each TLS handshake
//! loads the acceptor the same way, so a rotated certificate serves new
//! connections.

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio_rustls::TlsAcceptor;

use crate::gateway::Gateway;

/// The gateway and TLS acceptor in force.
pub struct Live {
    gateway: ArcSwap<Gateway>,
    tls: ArcSwapOption<TlsAcceptor>,
}

/// The acceptor is not `Debug`: shows whether there is one.
impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("gateway", &self.gateway.load())
            .field("tls", &self.tls.load().is_some())
            .finish()
    }
}

impl Live {
    /// Starts with `gateway`, and `tls` when the listener is HTTPS.
    pub fn new(gateway: Gateway, tls: Option<TlsAcceptor>) -> Self {
        Self {
            gateway: ArcSwap::from_pointee(gateway),
            tls: ArcSwapOption::new(tls.map(Arc::new)),
        }
    }

    /// The gateway for a request that starts now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.load_full()
    }

    /// The acceptor for a connection that starts now; `None` on a plain
    /// HTTP listener.
    pub fn tls(&self) -> Option<Arc<TlsAcceptor>> {
        self.tls.load_full()
    }

    /// New requests and handshakes use `gateway` and `tls` from now on.
    /// Whether the listener is HTTPS was fixed at start: the reload refuses
    /// to turn TLS on or off.
    pub fn replace(&self, gateway: Gateway, tls: Option<TlsAcceptor>) {
        self.gateway.store(Arc::new(gateway));
        self.tls.store(tls.map(Arc::new));
    }
}
