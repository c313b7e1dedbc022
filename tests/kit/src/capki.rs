//! Certificate factory for CA-chain tests: every field an attacker could play with is a
//! knob (subject, key, key ids, CA flag, path length, key usage, EKU, SAN, validity), so
//! tests can build legitimate chains and their forgeries with the system OpenSSL.

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509Extension, X509NameBuilder, X509};

pub const DAY: i64 = 86_400;

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

pub fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey")
}

pub fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).expect("RSA key")).expect("PKey")
}

/// The key id a key gets unless a test forces one: RFC 5280 method 1, the SHA-1 of the
/// subjectPublicKey bits (what OpenSSL and most CAs write), so a `2 1 x` record's key
/// finds its CA at `.well-known`.
pub fn key_id_of(key: &PKey<Private>) -> Vec<u8> {
    let bits = if let Ok(rsa) = key.rsa() {
        rsa.public_key_to_der_pkcs1().expect("RSAPublicKey")
    } else {
        let ec = key.ec_key().expect("an RSA or EC key");
        let mut ctx = openssl::bn::BigNumContext::new().expect("bn ctx");
        ec.public_key().to_bytes(ec.group(), openssl::ec::PointConversionForm::UNCOMPRESSED, &mut ctx).expect("point")
    };
    openssl::sha::sha1(&bits).to_vec()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ku {
    None,
    /// keyCertSign + cRLSign (critical).
    Ca,
    /// digitalSignature (critical).
    Leaf,
    /// digitalSignature only, on a CA (no keyCertSign).
    CaWithoutCertSign,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Aki {
    /// The issuer's SKI (or our own when self-signed).
    FromIssuer,
    Explicit(Vec<u8>),
    Absent,
}

#[derive(Clone)]
pub struct Spec {
    pub subject: Vec<(String, String)>,
    /// None: a fresh P-256 key.
    pub key: Option<PKey<Private>>,
    /// None: no basicConstraints at all.
    pub ca: Option<bool>,
    pub path_len: Option<u32>,
    pub key_usage: Ku,
    /// "clientAuth", "serverAuth": the extendedKeyUsage (empty: none).
    pub eku: Vec<&'static str>,
    pub sans: Vec<String>,
    /// None: derived from the key; Some(empty): no SKI extension.
    pub ski: Option<Vec<u8>>,
    pub aki: Aki,
    pub not_before: i64,
    pub not_after: i64,
    /// Adds a critical extension OpenSSL does not know.
    pub unknown_critical: bool,
    /// None: a random serial.
    pub serial: Option<Vec<u8>>,
}

fn subject(o: &str, cn: &str) -> Vec<(String, String)> {
    vec![("C".into(), "SE".into()), ("O".into(), o.into()), ("CN".into(), cn.into())]
}

impl Spec {
    /// A root or intermediate CA with the usual profile, valid from an hour ago for a year.
    pub fn ca(org: &str, cn: &str) -> Spec {
        let t = now();
        Spec {
            subject: subject(org, cn),
            key: None,
            ca: Some(true),
            path_len: None,
            key_usage: Ku::Ca,
            eku: vec![],
            sans: vec![],
            ski: None,
            aki: Aki::FromIssuer,
            not_before: t - 3600,
            not_after: t + 365 * DAY,
            unknown_critical: false,
            serial: None,
        }
    }

    /// A device certificate: CN and SAN = `name`, EKU clientAuth, CA:FALSE.
    pub fn leaf(org: &str, name: &str) -> Spec {
        let t = now();
        Spec {
            subject: subject(org, name),
            key: None,
            ca: Some(false),
            path_len: None,
            key_usage: Ku::Leaf,
            eku: vec!["clientAuth"],
            sans: vec![name.to_string()],
            ski: None,
            aki: Aki::FromIssuer,
            not_before: t - 3600,
            not_after: t + 90 * DAY,
            unknown_critical: false,
            serial: None,
        }
    }

    pub fn key(mut self, key: &PKey<Private>) -> Spec {
        self.key = Some(key.clone());
        self
    }

    pub fn subject(mut self, entries: &[(&str, &str)]) -> Spec {
        self.subject = entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self
    }

    pub fn validity(mut self, not_before: i64, not_after: i64) -> Spec {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

/// A certificate and its private key.
#[derive(Clone)]
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl Issued {
    pub fn ski(&self) -> Vec<u8> {
        self.cert.subject_key_id().map(|k| k.as_slice().to_vec()).unwrap_or_default()
    }

    pub fn pem(&self) -> Vec<u8> {
        self.cert.to_pem().expect("pem")
    }
}

/// DER of an OCTET STRING / context [0] with a short length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    assert!(content.len() < 128, "test key ids are short");
    let mut v = vec![tag, content.len() as u8];
    v.extend_from_slice(content);
    v
}

fn raw_ext(oid: &str, critical: bool, value_der: &[u8]) -> X509Extension {
    let oid = Asn1Object::from_str(oid).expect("oid");
    let value = Asn1OctetString::new_from_bytes(value_der).expect("octets");
    X509Extension::new_from_der(&oid, critical, &value).expect("extension")
}

/// Issues `spec`, signed by `issuer` (None: self-signed with the spec's own key).
pub fn issue(spec: &Spec, issuer: Option<&Issued>) -> Issued {
    let key = spec.key.clone().unwrap_or_else(ec_key);
    let mut name = X509NameBuilder::new().expect("name");
    for (k, v) in &spec.subject {
        name.append_entry_by_text(k, v).expect("name entry");
    }
    let name = name.build();
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("v3");
    let mut serial = BigNum::new().expect("bn");
    match &spec.serial {
        Some(bytes) => serial = BigNum::from_slice(bytes).expect("serial"),
        None => serial.rand(120, MsbOption::MAYBE_ZERO, false).expect("rand"),
    }
    b.set_serial_number(&serial.to_asn1_integer().expect("serial")).expect("serial");
    b.set_subject_name(&name).expect("subject");
    match issuer {
        Some(i) => b.set_issuer_name(i.cert.subject_name()).expect("issuer"),
        None => b.set_issuer_name(&name).expect("issuer"),
    }
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::from_unix(spec.not_before).expect("time")).expect("nb");
    b.set_not_after(&Asn1Time::from_unix(spec.not_after).expect("time")).expect("na");
    if let Some(ca) = spec.ca {
        let mut bc = BasicConstraints::new();
        bc.critical();
        if ca {
            bc.ca();
        }
        if let Some(p) = spec.path_len {
            bc.pathlen(p);
        }
        b.append_extension(bc.build().expect("bc")).expect("bc");
    }
    match spec.key_usage {
        Ku::None => {}
        Ku::Ca => {
            b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().expect("ku")).expect("ku")
        }
        Ku::Leaf | Ku::CaWithoutCertSign => {
            b.append_extension(KeyUsage::new().critical().digital_signature().build().expect("ku")).expect("ku")
        }
    }
    if !spec.eku.is_empty() {
        let mut e = ExtendedKeyUsage::new();
        for u in &spec.eku {
            match *u {
                "clientAuth" => e.client_auth(),
                "serverAuth" => e.server_auth(),
                other => e.other(other),
            };
        }
        b.append_extension(e.build().expect("eku")).expect("eku");
    }
    if !spec.sans.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for s in &spec.sans {
            san.dns(s);
        }
        let ext = san.build(&b.x509v3_context(None, None)).expect("san");
        b.append_extension(ext).expect("san");
    }
    let ski = match &spec.ski {
        Some(s) => s.clone(),
        None => key_id_of(&key),
    };
    if !ski.is_empty() {
        b.append_extension(raw_ext("2.5.29.14", false, &tlv(0x04, &ski))).expect("ski");
    }
    let aki = match (&spec.aki, issuer) {
        (Aki::Absent, _) => None,
        (Aki::Explicit(k), _) => Some(k.clone()),
        (Aki::FromIssuer, Some(i)) => Some(i.ski()),
        (Aki::FromIssuer, None) => Some(ski.clone()),
    };
    if let Some(aki) = aki.filter(|k| !k.is_empty()) {
        b.append_extension(raw_ext("2.5.29.35", false, &tlv(0x30, &tlv(0x80, &aki)))).expect("aki");
    }
    if spec.unknown_critical {
        // A private-arc OID no OpenSSL knows, critical: verifiers must refuse it.
        b.append_extension(raw_ext("1.3.6.1.4.1.99999.1", true, &[0x05, 0x00])).expect("unknown ext");
    }
    let signer = issuer.map(|i| &i.key).unwrap_or(&key);
    b.sign(signer, MessageDigest::sha256()).expect("sign");
    Issued { cert: b.build(), key }
}

/// Org A's legitimate PKI: RSA root -> P-256 intermediate -> devices.
pub struct OrgPki {
    pub root: Issued,
    pub intermediate: Issued,
}

impl OrgPki {
    pub fn new(org: &str) -> OrgPki {
        let root = issue(&Spec::ca(org, &format!("{org} Root CA")).key(&rsa_key()), None);
        let intermediate = issue(&Spec::ca(org, &format!("{org} Device CA")), Some(&root));
        OrgPki { root, intermediate }
    }

    pub fn device(&self, org: &str, name: &str) -> Issued {
        issue(&Spec::leaf(org, name), Some(&self.intermediate))
    }
}
