//! The radiusd boundary: what radiusd calls through the C shim.
//!
//! Owns every raw pointer that comes in ([`ffi`]), the bridge from `log` to radiusd's log
//! ([`logging`]), and the configured [`instance`]. Converts and delegates; decides
//! nothing itself. No panic crosses it: every entry catches.

pub mod ffi;
pub mod instance;
pub mod logging;
