//! The stores: the files the module writes and reads back. The CA set radiusd trusts for
//! EAP-TLS ([`caset`]), the persisted trust map ([`trust_map_file`]), and how each of
//! them is written so a reader interleaved with a write always sees a complete file
//! ([`files`]). No network; only the sync thread (and the operator CLI) writes.

pub mod caset;
pub mod files;
pub mod trust_map_file;
