//! The DNS layer of the trust sync: TLSA records at device names, validated with DNSSEC
//! in process. Split the way hickory splits its resolver from its protocol crate:
//! [`tlsa`] is the records and what they can be used for (pure), [`resolver`] asks DNS.

pub mod resolver;
pub mod tlsa;
