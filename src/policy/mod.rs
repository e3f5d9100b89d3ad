//! Policy: which hosts are intercepted, and (later) what is allowed on them.
//!
//! `intercept` is the part the proxy core needs: the host list from the
//! shipped `policy/default.toml` that decides tunnel vs intercept.

pub mod intercept;

/// The shipped default policy, compiled in.
pub const DEFAULT_POLICY: &str = include_str!("../../policy/default.toml");
