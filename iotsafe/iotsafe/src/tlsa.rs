//! TLSA zone-file lines for a device certificate.
//!
//! The admission module looks devices up by `TLSA 4 0 0` (usage 4 =
//! PKIX-CD, the whole certificate in the record); `3 1 1` (DANE-EE, SPKI
//! digest) is the common alternative. Hex is lower-case, as `dig` prints it.

use openssl::x509::X509;

use crate::csr::normalize_dns_name;
use crate::error::{Error, Result};

/// TLSA selector (RFC 6698 2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    FullCert = 0,
    Spki = 1,
}

/// TLSA matching type (RFC 6698 2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    Full = 0,
    Sha256 = 1,
    Sha512 = 2,
}

impl TryFrom<u8> for Selector {
    type Error = Error;
    fn try_from(v: u8) -> Result<Self> {
        match v {
            0 => Ok(Selector::FullCert),
            1 => Ok(Selector::Spki),
            _ => Err(Error::Invalid(format!("TLSA selector {v} (expected 0 or 1)"))),
        }
    }
}

impl TryFrom<u8> for Matching {
    type Error = Error;
    fn try_from(v: u8) -> Result<Self> {
        match v {
            0 => Ok(Matching::Full),
            1 => Ok(Matching::Sha256),
            2 => Ok(Matching::Sha512),
            _ => Err(Error::Invalid(format!("TLSA matching type {v} (expected 0, 1 or 2)"))),
        }
    }
}

/// The certificate association data for `cert_der`.
pub fn association_data(cert_der: &[u8], selector: Selector, matching: Matching) -> Result<Vec<u8>> {
    let cert = X509::from_der(cert_der)
        .map_err(|e| Error::Malformed(format!("certificate does not parse as DER X.509: {e}")))?;
    let selected = match selector {
        // Re-encode so trailing garbage after the certificate is never published.
        Selector::FullCert => cert.to_der()?,
        Selector::Spki => cert.public_key()?.public_key_to_der()?,
    };
    Ok(match matching {
        Matching::Full => selected,
        Matching::Sha256 => openssl::sha::sha256(&selected).to_vec(),
        Matching::Sha512 => openssl::sha::sha512(&selected).to_vec(),
    })
}

/// `<name>. IN TLSA <usage> <selector> <matching> <hex>`
pub fn record(name: &str, usage: u8, selector: Selector, matching: Matching, cert_der: &[u8]) -> Result<String> {
    if usage > 4 {
        return Err(Error::Invalid(format!("TLSA usage {usage} (expected 0..4)")));
    }
    let name = normalize_dns_name(name)?;
    let data = association_data(cert_der, selector, matching)?;
    Ok(format!("{name}. IN TLSA {usage} {} {} {}", selector as u8, matching as u8, hex::encode(data)))
}

/// The first dNSName SAN of a certificate, else its CN: the name a TLSA
/// record for it belongs under when the operator gives none.
pub fn certificate_dns_name(cert_der: &[u8]) -> Result<String> {
    let cert = X509::from_der(cert_der)
        .map_err(|e| Error::Malformed(format!("certificate does not parse as DER X.509: {e}")))?;
    if let Some(sans) = cert.subject_alt_names() {
        if let Some(dns) = sans.iter().find_map(|g| g.dnsname().map(str::to_string)) {
            return Ok(dns);
        }
    }
    cert.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .ok_or_else(|| Error::Invalid("certificate has no DNS SAN or CN; pass --name".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder};

    fn cert(cn: &str, san: Option<&str>) -> Vec<u8> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        if let Some(san) = san {
            let ext = SubjectAlternativeName::new().dns(san).build(&b.x509v3_context(None, None)).unwrap();
            b.append_extension(ext).unwrap();
        }
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build().to_der().unwrap()
    }

    #[test]
    fn default_record_is_4_0_0_with_full_cert() {
        let der = cert("car54._device.cars.example", None);
        let line = record("car54._device.cars.example", 4, Selector::FullCert, Matching::Full, &der).unwrap();
        let expected = format!("car54._device.cars.example. IN TLSA 4 0 0 {}", hex::encode(&der));
        assert_eq!(line, expected);
    }

    #[test]
    fn usage_3_spki_sha256_matches_openssl_digest() {
        let der = cert("x.example", None);
        let spki = X509::from_der(&der).unwrap().public_key().unwrap().public_key_to_der().unwrap();
        let digest = openssl::hash::hash(MessageDigest::sha256(), &spki).unwrap();
        let line = record("x.example.", 3, Selector::Spki, Matching::Sha256, &der).unwrap();
        assert_eq!(line, format!("x.example. IN TLSA 3 1 1 {}", hex::encode(digest)));
        // Full cert + SHA-256 differs from SPKI + SHA-256.
        let full = record("x.example", 3, Selector::FullCert, Matching::Sha256, &der).unwrap();
        assert_ne!(full, line);
        assert_eq!(full.rsplit(' ').next().unwrap().len(), 64);
    }

    #[test]
    fn names_come_from_san_then_cn() {
        assert_eq!(certificate_dns_name(&cert("cn.example", Some("san.example"))).unwrap(), "san.example");
        assert_eq!(certificate_dns_name(&cert("cn.example", None)).unwrap(), "cn.example");
    }

    #[test]
    fn rejects_garbage_and_bad_parameters() {
        let err = record("a.example", 4, Selector::FullCert, Matching::Full, b"\x30\x03abc").unwrap_err().to_string();
        assert!(err.contains("does not parse"), "{err}");
        assert!(record("a.example", 9, Selector::FullCert, Matching::Full, &[]).is_err());
        assert!(Selector::try_from(2).is_err());
        assert!(Matching::try_from(3).is_err());
    }
}
