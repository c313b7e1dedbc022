//! The trust sync: the background thread that turns the policy and DNS into trust map
//! snapshots and the CA set.
//!
//! [`dns`] resolves TLSA with DNSSEC in process, [`cafetch`] and [`chain`] fetch and
//! verify CA chains over [`https`], [`cabook`] keeps every CA identity unambiguous,
//! [`registry`] asks the IoT Registry, [`discover`] turns one name's answers into
//! associations, [`schedule`] decides when each name is looked at again, [`ondemand`]
//! takes hints from the request path, [`policyfeed`] reads the policy, [`engine`] runs
//! it all and publishes, as [`options`] say. [`watch`] is the alternative feeder for hand-made trust maps.
//! Everything blocking lives here, never on the request path.

pub mod cabook;
pub mod cafetch;
pub mod chain;
pub mod discover;
pub mod dns;
pub mod engine;
pub mod https;
pub mod ondemand;
pub mod options;
pub mod policyfeed;
pub mod registry;
pub mod schedule;
pub mod watch;
