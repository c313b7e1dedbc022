//! What an operator reads: the metrics and status endpoint ([`exporter`]) and the status
//! view for a person ([`status`]). Reads the request counters and the sync's reports;
//! never changes what the module decides.

pub mod exporter;
pub mod status;
