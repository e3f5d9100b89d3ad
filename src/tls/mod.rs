//! TLS for both sides of an intercepted connection.
//!
//! - [`ca`]: the local, name-constrained CA;
//! - [`store`]: where its key lives;
//! - [`cache`]: per-host leaf certificates as ready `rustls::ServerConfig`s.
//!
//! Everything here uses the `ring` crypto provider explicitly; nothing relies
//! on a process-wide default.

pub mod ca;
pub mod cache;
pub mod store;

use std::sync::Arc;

/// The crypto provider every rustls config in Outpost uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN protocols Outpost offers and accepts, best first.
pub const ALPN_H2_H1: [&[u8]; 2] = [b"h2", b"http/1.1"];
