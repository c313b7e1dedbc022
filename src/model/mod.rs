//! The trust model: the facts the sync proves and the check reads.
//!
//! Device [`name`]s, the operator's [`policy`] (which names on which SSID), certificate
//! [`association`]s (what a TLSA record commits to), the [`trustmap`] (name ->
//! associations, one immutable snapshot), the [`snapshot`] cell where the sync hands a
//! new map to the request path (both point here, neither at the other), and the X.509
//! facts ([`pki`]) both sides need.
//! Pure data and parsing: no network, no threads.

pub mod association;
pub mod digests;
pub mod name;
pub mod pki;
pub mod policy;
pub mod snapshot;
pub mod strict_json;
pub mod trustmap;
