//! rlm_rust: admit EAP-TLS devices by the DNS name that publishes their certificate.
//!
//! Data flows one way: policy + DNS (TLSA, DNSSEC) + CA chains -> [`sync`] -> a
//! [`trustmap::TrustMap`] snapshot of certificate associations -> [`check::check`] on
//! every request, against the certificate the TLS hook captured ([`presented`]). The
//! request path only reads an immutable snapshot; everything that does I/O lives in the
//! sync thread (or [`watch`], for hand-made maps). [`ffi`] is the thin boundary radiusd
//! calls through the C shim.

pub mod association;
pub mod cabook;
pub mod cafetch;
pub mod caset;
pub mod chain;
pub mod check;
pub mod config;
pub mod counters;
pub mod dane;
pub mod discover;
pub mod exporter;
pub mod ffi;
pub mod https;
pub mod instance;
pub mod logging;
pub mod name;
pub mod ondemand;
pub mod pki;
pub mod policy;
pub mod policyfeed;
pub mod presented;
pub mod registry;
pub mod schedule;
pub mod status;
pub mod strict_json;
pub mod sync;
pub mod trustmap;
pub mod watch;
