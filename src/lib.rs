//! rlm_rust: admit EAP-TLS devices by the DNS name that publishes their certificate.
//!
//! The modules are layers, and data flows one way through them:
//!
//! ```text
//! radiusd ─> boundary ─> request ─> model <─ sync ─> stores ─> files radiusd reads
//!               └─> ops ─> request, sync
//! ```
//!
//! The sync stores each new trust map in the model's snapshot cell; requests load it.
//!
//! - [`boundary`]: the `extern "C"` entries the C shim calls, the log bridge, and the
//!   instance radiusd configures (which starts the sync and the exporter).
//! - [`request`]: the per-request check against the certificate the TLS hook captured.
//!   Reads one immutable snapshot; never does I/O, never takes a lock.
//! - [`model`]: what the sync proves and the check reads: names, policy, certificate
//!   associations, the trust map and the cell that holds the current one, X.509 facts.
//!   Pure data and parsing.
//! - [`sync`]: everything that talks to the network: DNS (DNSSEC in process), CA fetch
//!   over HTTPS, chains, the IoT Registry, the schedule, discovery, the engine.
//! - [`stores`]: the files the module writes (the CA set radiusd reads, the persisted
//!   trust map), each replaced atomically.
//! - [`ops`]: what an operator reads: the metrics endpoint and the status view.
//! - [`config`]: the `rust { }` section, parsed into each layer's options.
//! - [`contract`]: the types and limits of the C boundary header, shared by the shim,
//!   [`boundary`] and [`request`]; generated, no code. [`clock`]: Unix time.
//!
//! A module names only its own layer and the layers below it (`tests/layers.rs` checks);
//! ARCHITECTURE.md explains the layers, the binding, the invariants and the FreeRADIUS
//! facts the C shim relies on.

pub mod boundary;
pub mod clock;
pub mod config;
pub mod contract;
pub mod model;
pub mod ops;
pub mod request;
pub mod stores;
pub mod sync;
