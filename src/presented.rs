//! The client certificate as FreeRADIUS describes it in request attributes, and how it is
//! compared with a [`Pin`].
//!
//! Comparison is by parsed value: serials and key ids as bytes (hex case, colons and a
//! `keyid:` prefix do not matter), times as instants (UTCTime and GeneralizedTime agree),
//! DNs as the exact `X509_NAME_oneline` text both sides produce with the same OpenSSL call.
//! Nothing here allocates: this runs on every request.

use crate::pki::{strip_leading_zeros, Pin};

/// The attributes of one request (borrowed from radiusd's request for the call's duration).
#[derive(Debug, Clone, Copy, Default)]
pub struct PresentedCert<'a> {
    pub serial: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub valid_since: Option<&'a str>,
    pub expiration: Option<&'a str>,
    pub authority_key_id: Option<&'a str>,
    pub san_dns: &'a [&'a str],
    pub ca_serial: Option<&'a str>,
    pub ca_subject: Option<&'a str>,
    pub ca_issuer: Option<&'a str>,
    pub ca_valid_since: Option<&'a str>,
    pub ca_expiration: Option<&'a str>,
}

/// Attributes the check cannot do without (AKI is optional: a certificate may lack it).
pub const REQUIRED: [&str; 10] = [
    "TLS-Client-Cert-Serial",
    "TLS-Client-Cert-Subject",
    "TLS-Client-Cert-Issuer",
    "TLS-Client-Cert-Valid-Since",
    "TLS-Client-Cert-Expiration",
    "TLS-Cert-Serial",
    "TLS-Cert-Subject",
    "TLS-Cert-Issuer",
    "TLS-Cert-Valid-Since",
    "TLS-Cert-Expiration",
];

impl<'a> PresentedCert<'a> {
    /// Builds the view from attributes looked up by their FreeRADIUS names (fixtures,
    /// replayed logs, fuzz inputs); `san_dns` holds every `TLS-Client-Cert-Subject-Alt-Name-Dns`.
    pub fn from_attributes(get: impl Fn(&str) -> Option<&'a str>, san_dns: &'a [&'a str]) -> Self {
        PresentedCert {
            serial: get("TLS-Client-Cert-Serial"),
            subject: get("TLS-Client-Cert-Subject"),
            issuer: get("TLS-Client-Cert-Issuer"),
            valid_since: get("TLS-Client-Cert-Valid-Since"),
            expiration: get("TLS-Client-Cert-Expiration"),
            authority_key_id: get("TLS-Client-Cert-X509v3-Authority-Key-Identifier"),
            san_dns,
            ca_serial: get("TLS-Cert-Serial"),
            ca_subject: get("TLS-Cert-Subject"),
            ca_issuer: get("TLS-Cert-Issuer"),
            ca_valid_since: get("TLS-Cert-Valid-Since"),
            ca_expiration: get("TLS-Cert-Expiration"),
        }
    }

    /// The first required attribute that is absent, by its FreeRADIUS name.
    pub fn first_missing(&self) -> Option<&'static str> {
        let present = [
            self.serial,
            self.subject,
            self.issuer,
            self.valid_since,
            self.expiration,
            self.ca_serial,
            self.ca_subject,
            self.ca_issuer,
            self.ca_valid_since,
            self.ca_expiration,
        ];
        present.iter().zip(REQUIRED).find(|(v, _)| v.is_none_or(str::is_empty)).map(|(_, name)| name)
    }

    /// True when every pinned field equals the presented one.
    pub fn matches(&self, pin: &Pin) -> bool {
        let aki_ok = match self.authority_key_id {
            Some(text) => key_id_eq(text, &pin.authority_key_id),
            None => pin.authority_key_id.is_empty(),
        };
        aki_ok
            && opt_eq(self.subject, &pin.subject)
            && opt_eq(self.issuer, &pin.issuer)
            && self.serial.is_some_and(|s| hex_eq(s, &pin.serial))
            && self.valid_since.and_then(parse_asn1_time) == Some(pin.not_before)
            && self.expiration.and_then(parse_asn1_time) == Some(pin.not_after)
            && opt_eq(self.ca_subject, &pin.ca.subject)
            && opt_eq(self.ca_issuer, &pin.ca.issuer)
            && self.ca_serial.is_some_and(|s| hex_eq(s, &pin.ca.serial))
            && self.ca_valid_since.and_then(parse_asn1_time) == Some(pin.ca.not_before)
            && self.ca_expiration.and_then(parse_asn1_time) == Some(pin.ca.not_after)
    }
}

fn opt_eq(a: Option<&str>, b: &str) -> bool {
    a == Some(b)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex digit pairs from `text` (skipping ':' separators) and compares them with
/// `bytes`, ignoring leading zero bytes on both sides. Invalid hex never matches.
pub fn hex_eq(text: &str, bytes: &[u8]) -> bool {
    let digits = text.bytes().filter(|b| *b != b':');
    let mut decoded = HexBytes { digits, bad: false };
    // Skip leading zero bytes of the text.
    let mut first = None;
    for b in decoded.by_ref() {
        if b != 0 {
            first = Some(b);
            break;
        }
    }
    let mut want = strip_leading_zeros(bytes).iter().copied();
    let equal = match first {
        None => want.next().is_none(),
        Some(b) => want.next() == Some(b) && decoded.by_ref().eq(want),
    };
    // When equal, `decoded` ran to its end; a bad digit there ended it early.
    equal && !decoded.bad
}

struct HexBytes<I: Iterator<Item = u8>> {
    digits: I,
    bad: bool,
}

impl<I: Iterator<Item = u8>> Iterator for HexBytes<I> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let hi = self.digits.next()?;
        let (Some(hi), Some(lo)) = (hex_val(hi), self.digits.next().and_then(hex_val)) else {
            self.bad = true;
            return None;
        };
        Some(hi << 4 | lo)
    }
}

/// Compares FreeRADIUS' rendering of the Authority Key Identifier with pinned key id bytes.
///
/// OpenSSL 3 prints `85:38:...:30` (possibly followed by a newline); older versions print
/// `keyid:85:38:...`, and an AKI carrying issuer+serial adds `DirName:`/`serial:` lines,
/// which we ignore: only the key identifier is pinned.
pub fn key_id_eq(text: &str, key_id: &[u8]) -> bool {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let hexpart = first.strip_prefix("keyid:").unwrap_or(first);
    if key_id.is_empty() {
        return hexpart.is_empty();
    }
    // Key ids are opaque bytes: compare exactly, leading zeros included.
    let mut it = HexBytes { digits: hexpart.bytes().filter(|b| *b != b':'), bad: false };
    it.by_ref().eq(key_id.iter().copied()) && !it.bad
}

/// Parses a DER time as FreeRADIUS copies it: UTCTime `YYMMDDHHMMSSZ` (years 1950-2049)
/// or GeneralizedTime `YYYYMMDDHHMMSSZ`. Returns Unix seconds.
pub fn parse_asn1_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let (year, rest) = match b.len() {
        13 => {
            let yy = two(&b[0..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &b[2..])
        }
        15 => (two(&b[0..2])? * 100 + two(&b[2..4])?, &b[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let (month, day) = (two(&rest[0..2])?, two(&rest[2..4])?);
    let (hour, min, sec) = (two(&rest[4..6])?, two(&rest[6..8])?, two(&rest[8..10])?);
    // As strict as OpenSSL, which made the pin: no leap second, no 31 February. Otherwise
    // two texts would name one instant (`...235960Z` = next day's `...000000Z`).
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

fn two(d: &[u8]) -> Option<i64> {
    match d {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some(i64::from(a - b'0') * 10 + i64::from(b - b'0')),
        _ => None,
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_compares_bytes_not_text() {
        assert!(hex_eq("2ddb5dbb", &[0x2d, 0xdb, 0x5d, 0xbb]));
        assert!(hex_eq("2DDB5DBB", &[0x2d, 0xdb, 0x5d, 0xbb]));
        assert!(hex_eq("00:2d:db", &[0x2d, 0xdb]));
        assert!(hex_eq("2ddb", &[0, 0x2d, 0xdb]));
        assert!(!hex_eq("2ddb5d", &[0x2d, 0xdb, 0x5d, 0xbb]));
        assert!(!hex_eq("2ddb5dbb00", &[0x2d, 0xdb, 0x5d, 0xbb]));
        assert!(!hex_eq("2ddb5dbx", &[0x2d, 0xdb, 0x5d, 0xbb]));
        assert!(!hex_eq("2ddb5dbb0", &[0x2d, 0xdb, 0x5d, 0xbb]));
        assert!(hex_eq("", &[]));
        assert!(hex_eq("00", &[0]));
    }

    #[test]
    fn key_id_accepts_both_openssl_renderings() {
        let id = [0x85, 0x38, 0xd8, 0xc4];
        assert!(key_id_eq("85:38:D8:C4", &id));
        assert!(key_id_eq("85:38:D8:C4\n", &id));
        assert!(key_id_eq("keyid:85:38:D8:C4\n", &id));
        assert!(key_id_eq("keyid:85:38:D8:C4\nDirName:/CN=Root\nserial:01\n", &id));
        assert!(!key_id_eq("85:38:D8:C5", &id));
        assert!(!key_id_eq("00:85:38:D8:C4", &id));
        assert!(!key_id_eq("", &id));
    }

    #[test]
    fn asn1_times_parse_to_instants() {
        assert_eq!(parse_asn1_time("700101000000Z"), Some(0));
        assert_eq!(parse_asn1_time("261123082143Z"), Some(1_795_422_103));
        assert_eq!(parse_asn1_time("20261123082143Z"), Some(1_795_422_103));
        assert_eq!(parse_asn1_time("491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_asn1_time("500101000000Z"), Some(-631_152_000));
        assert_eq!(parse_asn1_time("261323082143Z"), None);
        assert_eq!(parse_asn1_time("2611230821Z"), None);
        assert_eq!(parse_asn1_time("261123082143+"), None);
        assert_eq!(parse_asn1_time("26112308214xZ"), None);
    }

    #[test]
    fn asn1_times_that_do_not_exist_are_refused() {
        // Found by the presented fuzz target against OpenSSL (fuzz/regressions/presented/):
        // a leap second or 31 February parsed to the instant of another text.
        assert_eq!(parse_asn1_time("20261123020260Z"), None);
        assert_eq!(parse_asn1_time("261123235960Z"), None);
        assert_eq!(parse_asn1_time("260231000000Z"), None);
        assert_eq!(parse_asn1_time("260229000000Z"), None);
        assert_eq!(parse_asn1_time("260431000000Z"), None);
        assert_eq!(parse_asn1_time("21000229000000Z"), None);
        assert_eq!(parse_asn1_time("280229000000Z"), Some(1_835_395_200));
        assert_eq!(parse_asn1_time("20000229000000Z"), Some(951_782_400));
        assert_eq!(parse_asn1_time("261231235959Z"), Some(1_798_761_599));
    }
}
