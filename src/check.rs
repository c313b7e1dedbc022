//! The per-request decision: pure, allocation-free, no I/O.
//!
//! Accept only when all hold, checked in this order so the reason names the first failure:
//! a trust map is loaded; User-Name is a valid DNS name; Called-Station-Id carries an SSID
//! the policy knows; the name is allowed on that SSID; the certificate attributes are all
//! there; the certificate's SAN contains the name; the presented certificate equals one of
//! the name's pins (which is what defeats cross-domain signing).

use std::fmt;

use crate::name::{self, MAX_NAME_LEN};
use crate::pki::dns_eq;
use crate::policy::ReplyAttr;
use crate::presented::PresentedCert;
use crate::trustmap::TrustMap;

/// Why a request was rejected. The `Display` text is what operators grep for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NoTrustMap,
    InvalidName,
    NoSsid,
    UnknownSsid,
    NameNotAllowed,
    MissingCertAttributes(&'static str),
    SanMismatch,
    NotPublished,
    NoPinMatch,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoTrustMap => f.write_str("no trust map loaded"),
            Reason::InvalidName => f.write_str("invalid name in User-Name"),
            Reason::NoSsid => f.write_str("no SSID in Called-Station-Id"),
            Reason::UnknownSsid => f.write_str("unknown SSID"),
            Reason::NameNotAllowed => f.write_str("name not allowed on SSID"),
            Reason::MissingCertAttributes(a) => write!(f, "missing certificate attributes ({a})"),
            Reason::SanMismatch => f.write_str("SAN does not contain the name"),
            Reason::NotPublished => f.write_str("name has no published certificate"),
            Reason::NoPinMatch => f.write_str("certificate matches no pin of the name"),
        }
    }
}

/// The inputs of one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub user_name: Option<&'a str>,
    pub called_station_id: Option<&'a str>,
    pub cert: PresentedCert<'a>,
}

/// The outcome. On accept, `reply` lists the attributes of the SSID's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'m> {
    Accept { reply: &'m [ReplyAttr] },
    Reject(Reason),
}

/// The SSID of a Called-Station-Id (`MAC:SSID` or `MAC-with-dashes:SSID`): the text after
/// the first ':' — which is why a colon-separated MAC cannot carry an SSID, and why an
/// SSID may itself contain ':'. None when there is no SSID.
pub fn ssid_of(called_station_id: &str) -> Option<&str> {
    let (mac, ssid) = called_station_id.split_once(':')?;
    // `aa:bb:cc:dd:ee:ff` with no SSID would otherwise read as SSID "bb:cc:dd:ee:ff".
    if mac.len() == 2 && mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        let rest: Vec<&str> = ssid.splitn(6, ':').collect();
        if rest.len() >= 5 && rest[..5].iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())) {
            return rest.get(5).copied().filter(|s| !s.is_empty());
        }
    }
    Some(ssid).filter(|s| !s.is_empty())
}

/// Decides one request against `map`.
pub fn check<'m>(map: Option<&'m TrustMap>, req: &Request<'_>) -> Decision<'m> {
    let Some(map) = map else {
        return Decision::Reject(Reason::NoTrustMap);
    };
    let mut buf = [0u8; MAX_NAME_LEN];
    let Some(name) = req.user_name.and_then(|u| name::normalize_into(u, &mut buf).ok()) else {
        return Decision::Reject(Reason::InvalidName);
    };
    let Some(ssid) = req.called_station_id.and_then(ssid_of) else {
        return Decision::Reject(Reason::NoSsid);
    };
    let Some(role) = map.role(ssid) else {
        return Decision::Reject(Reason::UnknownSsid);
    };
    if !role.allows(name) {
        return Decision::Reject(Reason::NameNotAllowed);
    }
    if let Some(missing) = req.cert.first_missing() {
        return Decision::Reject(Reason::MissingCertAttributes(missing));
    }
    if !req.cert.san_dns.iter().any(|san| dns_eq(san, name)) {
        return Decision::Reject(Reason::SanMismatch);
    }
    let pins = map.pins(name);
    if pins.is_empty() {
        return Decision::Reject(Reason::NotPublished);
    }
    if pins.iter().any(|pin| req.cert.matches(pin)) {
        Decision::Accept { reply: &role.reply }
    } else {
        Decision::Reject(Reason::NoPinMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssid_forms() {
        assert_eq!(ssid_of("00-00-00-00-00-01:SSID1"), Some("SSID1"));
        assert_eq!(ssid_of("000000000001:SSID1"), Some("SSID1"));
        assert_eq!(ssid_of("00-00-00-00-00-01:Cafe:Bar"), Some("Cafe:Bar"));
        assert_eq!(ssid_of("00:00:00:00:00:01:SSID1"), Some("SSID1"));
        assert_eq!(ssid_of("00:00:00:00:00:01"), None);
        assert_eq!(ssid_of("00-00-00-00-00-01"), None);
        assert_eq!(ssid_of("00-00-00-00-00-01:"), None);
        assert_eq!(ssid_of(""), None);
    }

    #[test]
    fn reasons_read_as_documented() {
        assert_eq!(Reason::NoPinMatch.to_string(), "certificate matches no pin of the name");
        assert_eq!(
            Reason::MissingCertAttributes("TLS-Cert-Serial").to_string(),
            "missing certificate attributes (TLS-Cert-Serial)"
        );
    }
}
