//! The per-request decision: pure, allocation-free, no I/O.
//!
//! Accept only when all hold, checked in this order so the reason names the first failure:
//! a trust map is loaded; User-Name is a valid DNS name; Called-Station-Id carries an SSID
//! the policy knows; the name is allowed on that SSID (by its own entry or its domain's);
//! the TLS hook captured the certificate the client proved; the name's DNS answer is in
//! (a name allowed through its domain is discovered on demand); and one of the
//! certificate associations DNS published for the name matches it. The last step is what defeats cross-domain signing: another
//! organisation's CA can issue a certificate for the name, but not the one DNS publishes.

use std::fmt;

use crate::model::name::{self, MAX_NAME_LEN};
use crate::model::policy::{ReplyAttr, Verdict};
use crate::model::trustmap::TrustMap;
use crate::request::presented::{CaptureError, PresentedCert};

/// Why a request was rejected. The `Display` text is what operators grep for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No trust map has loaded yet (no readable file, no publication from the sync):
    /// every request is rejected until one does.
    NoTrustMap,
    /// User-Name is absent, not UTF-8, or not a valid device name.
    InvalidName,
    /// Called-Station-Id is absent or carries no SSID after the MAC address: the NAS must
    /// send `MAC:SSID`.
    NoSsid,
    /// The policy has no entry on this SSID.
    UnknownSsid,
    /// The policy lists neither the name nor its parent domain on this SSID.
    NameNotAllowed,
    /// The certificate the client proved is not available (or not consistent).
    Capture(CaptureError),
    /// No usable certificate association is known for the name: DNS published none the
    /// sync could authenticate, or the last good one was dropped (withdrawn, past
    /// `max_stale`, expired).
    NotPublished,
    /// The name is allowed only through its domain and its first lookup is not done yet;
    /// the supplicant's retry is admitted once the answer is in.
    DiscoveryPending,
    /// The name has associations, but none names the certificate the client proved: a
    /// certificate DNS does not publish for the name (another organisation's CA signing
    /// for it, or a device whose records are out of date).
    NoAssociationMatch,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoTrustMap => f.write_str("no trust map loaded"),
            Reason::InvalidName => f.write_str("invalid name in User-Name"),
            Reason::NoSsid => f.write_str("no SSID in Called-Station-Id"),
            Reason::UnknownSsid => f.write_str("unknown SSID"),
            Reason::NameNotAllowed => f.write_str("name not allowed on SSID"),
            Reason::Capture(e) => e.fmt(f),
            Reason::NotPublished => f.write_str("name has no published certificate association"),
            Reason::DiscoveryPending => f.write_str("discovery pending"),
            Reason::NoAssociationMatch => f.write_str("certificate matches no association of the name"),
        }
    }
}

impl Reason {
    /// Every reason, in the order of [`Reason::index`] (capture errors as one).
    pub const LABELS: [&'static str; 10] = [
        "no_trust_map",
        "invalid_name",
        "no_ssid",
        "unknown_ssid",
        "name_not_allowed",
        "no_capture",
        "capture_malformed",
        "not_published",
        "discovery_pending",
        "no_association_match",
    ];

    /// A stable slot for counting (the metrics' `reason` label is `LABELS[index]`).
    pub fn index(self) -> usize {
        match self {
            Reason::NoTrustMap => 0,
            Reason::InvalidName => 1,
            Reason::NoSsid => 2,
            Reason::UnknownSsid => 3,
            Reason::NameNotAllowed => 4,
            Reason::Capture(CaptureError::Absent) => 5,
            Reason::Capture(CaptureError::Malformed(_)) => 6,
            Reason::NotPublished => 7,
            Reason::DiscoveryPending => 8,
            Reason::NoAssociationMatch => 9,
        }
    }
}

/// The inputs of one request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// User-Name as received: the device name the client claims (attacker-controlled;
    /// the check validates and normalises it). None when absent or not UTF-8.
    pub user_name: Option<&'a str>,
    /// Called-Station-Id as received (`MAC:SSID`), where the SSID comes from. None when
    /// absent or not UTF-8.
    pub called_station_id: Option<&'a str>,
    /// The certificate the TLS hook captured, or why there is none.
    pub cert: Result<PresentedCert<'a>, CaptureError>,
}

impl Default for Request<'_> {
    fn default() -> Self {
        Request { user_name: None, called_station_id: None, cert: Err(CaptureError::Absent) }
    }
}

/// The outcome. On accept, `reply` lists the attributes of the SSID's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'m> {
    /// The name is allowed on the SSID and the certificate is one DNS publishes for it.
    Accept {
        /// The reply attributes of the policy entry that allows the name (borrowed from
        /// the snapshot).
        reply: &'m [ReplyAttr],
    },
    /// Refused, for the first check that failed.
    Reject(Reason),
}

/// The SSID of a Called-Station-Id (`MAC:SSID`, the MAC with dashes, colons or neither):
/// the text after the MAC address, so an SSID may itself contain ':'. A colon-separated
/// MAC ends after its sixth octet; any other form at the first ':'. None when there is no
/// SSID.
pub fn ssid_of(called_station_id: &str) -> Option<&str> {
    let (mac, ssid) = called_station_id.split_once(':')?;
    // `aa:bb:cc:dd:ee:ff` with no SSID would otherwise read as SSID "bb:cc:dd:ee:ff".
    let octet = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit());
    if octet(mac) {
        let mut rest = ssid.splitn(6, ':');
        if rest.by_ref().take(5).filter(|p| octet(p)).count() == 5 {
            return rest.next().filter(|s| !s.is_empty());
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
    let (reply, exact) = match map.policy().verdict(ssid, name) {
        Verdict::UnknownSsid => return Decision::Reject(Reason::UnknownSsid),
        Verdict::NotAllowed => return Decision::Reject(Reason::NameNotAllowed),
        Verdict::Allowed { reply, exact } => (reply, exact),
    };
    let cert = match &req.cert {
        Ok(cert) => cert,
        Err(e) => return Decision::Reject(Reason::Capture(*e)),
    };
    let associations = match map.entry(name) {
        Some(entry) => &entry.associations[..],
        // A name allowed only through its domain is looked up when it first shows up: the
        // answer is not in yet (the supplicant's retry is admitted once it is).
        None if !exact => return Decision::Reject(Reason::DiscoveryPending),
        None => &[],
    };
    if associations.is_empty() {
        return Decision::Reject(Reason::NotPublished);
    }
    if associations.iter().any(|a| a.matches(cert, name)) {
        Decision::Accept { reply }
    } else {
        Decision::Reject(Reason::NoAssociationMatch)
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

    use std::collections::BTreeMap;

    use crate::model::association::{Association, Matching, Selector, Usage};
    use crate::model::policy::{Entry, Policy};
    use crate::model::trustmap::NameEntry;
    use crate::request::presented::{RawCapture, Source};

    const CAR: &str = "car54._device.cars.example";
    const SPARE: &str = "car55._device.cars.example";

    const FLEET: &str = "_device.fleet.example";

    fn map() -> TrustMap {
        let mut policy = Policy::default();
        for n in [CAR, SPARE] {
            policy.allow("SSID1", Entry::Name(n.into()), &[]).unwrap();
        }
        policy.allow("SSID1", Entry::Domain(FLEET.into()), &[]).unwrap();
        let digest = Association::from_data(Usage::PkixCd, Selector::Cert, Matching::Sha256, &[1; 32], None).unwrap();
        let names = BTreeMap::from([
            (CAR.to_string(), NameEntry { associations: vec![digest.clone()].into(), ..Default::default() }),
            // Discovered on demand: one with a record, one that DNS says has none.
            (
                "bus1._device.fleet.example".to_string(),
                NameEntry { associations: vec![digest].into(), ..Default::default() },
            ),
            ("bus2._device.fleet.example".to_string(), NameEntry::default()),
        ]);
        TrustMap::new(policy, names, 1, 0)
    }

    /// Decides `name` on SSID1 with a one-certificate capture whose digests are all `fill`.
    fn decide(map: &TrustMap, name: &str, station: &str, fill: Option<u8>) -> Decision<'static> {
        let (short, long) = (vec![fill.unwrap_or(0); 32], vec![fill.unwrap_or(0); 64]);
        let (s, l) = ([short.as_slice()], [long.as_slice()]);
        let raw = RawCapture {
            source: fill.map(|_| Source::Handshake),
            cert_sha256: &s,
            cert_sha512: &l,
            spki_sha256: &s,
            spki_sha512: &l,
            san_dns: &[],
            chain_length: Some(1),
        };
        let req = Request {
            user_name: Some(name),
            called_station_id: Some(station),
            cert: PresentedCert::from_capture(&raw),
        };
        match check(Some(map), &req) {
            Decision::Accept { .. } => Decision::Accept { reply: &[] },
            Decision::Reject(r) => Decision::Reject(r),
        }
    }

    #[test]
    fn the_first_failing_step_names_the_reject() {
        let m = map();
        let on = "00-00-00-00-00-01:SSID1";
        assert_eq!(decide(&m, CAR, on, Some(1)), Decision::Accept { reply: &[] });
        assert_eq!(decide(&m, CAR, on, Some(2)), Decision::Reject(Reason::NoAssociationMatch));
        assert_eq!(decide(&m, CAR, on, None), Decision::Reject(Reason::Capture(CaptureError::Absent)));
        assert_eq!(decide(&m, SPARE, on, Some(1)), Decision::Reject(Reason::NotPublished));
        assert_eq!(decide(&m, "car56._device.cars.example", on, Some(1)), Decision::Reject(Reason::NameNotAllowed));
        assert_eq!(decide(&m, CAR, "00-00-00-00-00-01:SSID2", Some(1)), Decision::Reject(Reason::UnknownSsid));
        assert_eq!(decide(&m, CAR, "00-00-00-00-00-01", Some(1)), Decision::Reject(Reason::NoSsid));
        assert_eq!(decide(&m, "not a name", on, Some(1)), Decision::Reject(Reason::InvalidName));
        assert_eq!(decide(&m, "bus1._device.fleet.example", on, Some(1)), Decision::Accept { reply: &[] });
        assert_eq!(decide(&m, "bus2._device.fleet.example", on, Some(1)), Decision::Reject(Reason::NotPublished));
        assert_eq!(decide(&m, "bus3._device.fleet.example", on, Some(1)), Decision::Reject(Reason::DiscoveryPending));
        assert_eq!(
            decide(&m, "a.bus3._device.fleet.example", on, Some(1)),
            Decision::Reject(Reason::NameNotAllowed),
            "one label below the domain only"
        );
        // Names compare in normal form.
        assert_eq!(decide(&m, "CAR54._device.cars.example.", on, Some(1)), Decision::Accept { reply: &[] });
        let req = Request { user_name: Some(CAR), called_station_id: Some(on), ..Default::default() };
        assert_eq!(check(None, &req), Decision::Reject(Reason::NoTrustMap));
    }

    #[test]
    fn reasons_read_as_documented() {
        assert_eq!(Reason::NoAssociationMatch.to_string(), "certificate matches no association of the name");
        assert_eq!(Reason::Capture(CaptureError::Absent).to_string(), "no certificate captured from the TLS handshake");
        assert_eq!(
            Reason::Capture(CaptureError::Malformed("no chain length")).to_string(),
            "captured certificate malformed (no chain length)"
        );
    }
}
