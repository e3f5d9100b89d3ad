//! Outpost: an endpoint edge agent for LLM traffic.
//!
//! A per-device daemon runs a local HTTPS forward proxy. For known LLM
//! provider hosts it terminates TLS with leaves from a local, name-constrained
//! CA and forwards each API call; every other host is tunnelled untouched.
//! See `README.md` for use and `../shared/design.md` for the layout.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod gateway;
pub mod glob;
pub mod guard;
pub mod install;
pub mod located;
pub mod policy;
pub mod provider;
pub mod proxy;
pub mod refusal;
pub mod sync;
pub mod tls;
pub mod upstream;
#[cfg(windows)]
pub mod winservice;
