//! PKCS#10 certificate requests for a device's DNS identity, signed on the
//! card. The subject is `CN=<name>` and the request asks for a
//! subjectAltName dNSName with the same name, which is what the DANE
//! (TLSA 4 / PKIX-CD) admission path matches on.

use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::X509Req;

use crate::der::{self, oids};
use crate::error::{Error, Result};
use crate::signature::{raw_to_der, RAW_LEN};

/// Checks and normalises a DNS name (drops one trailing dot). Underscore is
/// allowed because device names live under `_device` labels.
pub fn normalize_dns_name(name: &str) -> Result<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let bad = |why: &str| Error::Invalid(format!("DNS name {name:?} {why}"));
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.len() > 253 {
        return Err(bad("is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("has an empty or over-long (>63) label"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(bad("contains characters outside [A-Za-z0-9-_]"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("has a label starting or ending with '-'"));
        }
    }
    Ok(name.to_string())
}

/// SubjectPublicKeyInfo for an uncompressed P-256 point (`04 X Y`).
pub fn spki_p256(point: &[u8]) -> Result<Vec<u8>> {
    // Let OpenSSL check that the point is on the curve before we put it in
    // a request: a garbled READ PUBLIC KEY answer must not become a CSR.
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let mut ctx = openssl::bn::BigNumContext::new()?;
    EcPoint::from_bytes(&group, point, &mut ctx)
        .map_err(|e| Error::Malformed(format!("public key is not a P-256 point: {e}")))?;
    if point.len() != 65 || point[0] != 0x04 {
        return Err(Error::Malformed("public key is not an uncompressed P-256 point".into()));
    }
    let alg = der::sequence(&[&der::oid(oids::EC_PUBLIC_KEY), &der::oid(oids::PRIME256V1)]);
    Ok(der::sequence(&[&alg, &der::bit_string(point)]))
}

/// The CertificationRequestInfo (the bytes that get signed).
pub fn request_info(dns_name: &str, spki: &[u8]) -> Vec<u8> {
    let cn = der::sequence(&[&der::oid(oids::COMMON_NAME), &der::utf8_string(dns_name)]);
    let subject = der::sequence(&[&der::set(&[&cn])]);
    // GeneralNames ::= SEQUENCE OF GeneralName; dNSName is [2] IA5String.
    let general_names = der::sequence(&[&der::tlv(0x82, dns_name.as_bytes())]);
    let san = der::sequence(&[&der::oid(oids::SUBJECT_ALT_NAME), &der::octet_string(&general_names)]);
    let extensions = der::sequence(&[&san]);
    let ext_req = der::sequence(&[&der::oid(oids::EXTENSION_REQUEST), &der::set(&[&extensions])]);
    // attributes [0] IMPLICIT SET OF Attribute
    let attributes = der::tlv(0xA0, &ext_req);
    der::sequence(&[&der::small_int(0), &subject, spki, &attributes])
}

/// Builds a DER CSR. `sign` receives SHA-256(TBS) and must return `r||s`
/// from the card. The result is verified against `point` before returning,
/// so a card that signs with a different key than it reported is caught.
pub fn build_csr<F>(dns_name: &str, point: &[u8], sign: F) -> Result<Vec<u8>>
where
    F: FnOnce(&[u8; 32]) -> Result<[u8; RAW_LEN]>,
{
    let name = normalize_dns_name(dns_name)?;
    let spki = spki_p256(point)?;
    let tbs = request_info(&name, &spki);
    let digest = openssl::sha::sha256(&tbs);
    let raw = sign(&digest)?;
    let sig = raw_to_der(&raw)?;
    let alg = der::sequence(&[&der::oid(oids::ECDSA_WITH_SHA256)]);
    let csr = der::sequence(&[&tbs, &alg, &der::bit_string(&sig)]);

    let req = X509Req::from_der(&csr)?;
    let key = public_key(point)?;
    if !req.verify(&key)? {
        return Err(Error::Malformed(
            "the card's signature over the CSR does not verify with the key's public key".into(),
        ));
    }
    Ok(csr)
}

/// OpenSSL public key object for an uncompressed P-256 point.
pub fn public_key(point: &[u8]) -> Result<PKey<openssl::pkey::Public>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let mut ctx = openssl::bn::BigNumContext::new()?;
    let p = EcPoint::from_bytes(&group, point, &mut ctx)
        .map_err(|e| Error::Malformed(format!("public key is not a P-256 point: {e}")))?;
    Ok(PKey::from_ec_key(EcKey::from_public_key(&group, &p)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::BigNumContext;
    use openssl::ec::PointConversionForm;
    use openssl::ecdsa::EcdsaSig;

    fn soft_key() -> (EcKey<openssl::pkey::Private>, Vec<u8>) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = EcKey::generate(&group).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let point = key.public_key().to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx).unwrap();
        (key, point)
    }

    fn soft_sign(key: &EcKey<openssl::pkey::Private>, digest: &[u8; 32]) -> Result<[u8; 64]> {
        let sig = EcdsaSig::sign(digest, key)?;
        crate::signature::der_to_raw(&sig.to_der()?)
    }

    #[test]
    fn csr_verifies_and_carries_name_in_cn_and_san() {
        let (key, point) = soft_key();
        let name = "car54._device.cars.example";
        let der = build_csr(&format!("{name}."), &point, |d| soft_sign(&key, d)).unwrap();
        let req = X509Req::from_der(&der).unwrap();
        assert!(req.verify(&public_key(&point).unwrap()).unwrap());
        let cn = req.subject_name().entries_by_nid(Nid::COMMONNAME).next().unwrap().data().to_string().unwrap();
        assert_eq!(cn, name);
        // OpenSSL's own text dump shows the requested SAN: independent check
        // of our hand-made extensionRequest encoding.
        let text = String::from_utf8(req.to_text().unwrap()).unwrap();
        assert!(text.contains(&format!("DNS:{name}")), "{text}");
        assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    }

    #[test]
    fn wrong_key_signature_is_rejected() {
        let (_, point) = soft_key();
        let (other, _) = soft_key();
        let err = build_csr("dev._device.example", &point, |d| soft_sign(&other, d)).unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
    }

    #[test]
    fn rejects_bad_names_and_points() {
        for bad in ["", "a..b", "-a.example", "sp ace.example", &"x".repeat(64)] {
            assert!(normalize_dns_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(normalize_dns_name("A_b.example.").unwrap(), "A_b.example");
        let mut point = soft_key().1;
        point[10] ^= 0xFF;
        assert!(spki_p256(&point).is_err());
        assert!(spki_p256(&[0x04; 3]).is_err());
    }

    #[test]
    fn spki_matches_openssl_encoding() {
        let (key, point) = soft_key();
        let ours = spki_p256(&point).unwrap();
        let theirs = PKey::from_ec_key(key).unwrap().public_key_to_der().unwrap();
        assert_eq!(ours, theirs);
    }
}
