//! The request path: runs inside radiusd's worker threads, on every request.
//!
//! [`presented`] is the certificate the TLS hook captured (the one the client proved
//! possession of), [`check`] decides it against one trust map snapshot, [`counters`]
//! counts decisions. Nothing here does I/O, blocks, or takes a lock: it reads one
//! immutable snapshot and returns.

pub mod check;
pub mod counters;
pub mod presented;
