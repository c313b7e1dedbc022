//! The certificate factory of the tests: every certificate the tests and the kit need is
//! built here, from a `Spec`. Every field an attacker could play with is a knob (subject,
//! key, key ids, CA flag, path length, key usage, EKU, SAN, validity, serial), so tests can
//! build legitimate chains and their forgeries with the system OpenSSL. `pki` uses it for
//! the lab's CAs and leaves and only names and writes the files.

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time, Asn1TimeRef};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509Extension, X509Name, X509NameBuilder, X509NameRef, X509Ref, X509};

pub const DAY: i64 = 86_400;

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// `t` as seconds since the epoch (to copy another certificate's validity).
pub fn unix_time(t: &Asn1TimeRef) -> i64 {
    let d = Asn1Time::from_unix(0).expect("epoch").diff(t).expect("time diff");
    i64::from(d.days) * DAY + i64::from(d.secs)
}

/// A random positive serial of up to `bits` bits, as big-endian bytes.
pub fn random_serial(bits: i32) -> Vec<u8> {
    let mut bn = BigNum::new().expect("bn");
    bn.rand(bits, MsbOption::MAYBE_ZERO, false).expect("rand");
    bn.to_vec()
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
pub fn key_id_of<T: HasPublic>(key: &PKeyRef<T>) -> Vec<u8> {
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
    /// keyCertSign alone (critical), without cRLSign.
    CertSignOnly,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Aki {
    /// The issuer's SKI (or our own when self-signed).
    FromIssuer,
    Explicit(Vec<u8>),
    Absent,
    /// The issuer's SKI, plus the issuer's own issuer name and serial (OpenSSL's
    /// `keyid,issuer:always`).
    FromIssuerWithName,
}

#[derive(Clone)]
pub struct Spec {
    pub subject: Vec<(String, String)>,
    /// A Name as DER, used instead of `subject`: an exact copy of another certificate's
    /// name, or one the entry list cannot spell (string types, raw bytes).
    pub subject_der: Option<Vec<u8>>,
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
    /// None: a random serial of up to 120 bits.
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
            subject_der: None,
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
            subject_der: None,
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

    /// The subject, copied as it is encoded in `name`.
    pub fn name(mut self, name: &X509NameRef) -> Spec {
        self.subject_der = Some(name.to_der().expect("name der"));
        self
    }

    pub fn validity(mut self, not_before: i64, not_after: i64) -> Spec {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// The validity of `cert`, to the second.
    pub fn validity_of(self, cert: &X509Ref) -> Spec {
        self.validity(unix_time(cert.not_before()), unix_time(cert.not_after()))
    }

    /// The SAN dNSNames (empty: no SAN extension).
    pub fn sans(mut self, names: &[&str]) -> Spec {
        self.sans = names.iter().map(|n| n.to_string()).collect();
        self
    }

    pub fn eku(mut self, usages: &[&'static str]) -> Spec {
        self.eku = usages.to_vec();
        self
    }

    /// The serial as big-endian bytes (a positive INTEGER).
    pub fn serial(mut self, bytes: &[u8]) -> Spec {
        self.serial = Some(bytes.to_vec());
        self
    }

    pub fn aki(mut self, aki: Aki) -> Spec {
        self.aki = aki;
        self
    }

    /// Neither SKI nor AKI.
    pub fn no_key_ids(mut self) -> Spec {
        self.ski = Some(vec![]);
        self.aki = Aki::Absent;
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
    let signer = issuer.map(|i| &i.key).unwrap_or(&key);
    let cert = build(spec, &key, issuer, signer);
    Issued { cert, key }
}

/// Certifies `public`, a key whose private half the test does not hold (a CSR's), as
/// `spec` describes (its `key` is not used), signed by `issuer`.
pub fn certify<T: HasPublic>(spec: &Spec, public: &PKeyRef<T>, issuer: &Issued) -> X509 {
    build(spec, public, Some(issuer), &issuer.key)
}

/// The certificate of `spec` for `key`. Extensions in this order: basicConstraints,
/// keyUsage, extendedKeyUsage, SKI, AKI, SAN, then the unknown critical one.
fn build<T: HasPublic>(spec: &Spec, key: &PKeyRef<T>, issuer: Option<&Issued>, signer: &PKey<Private>) -> X509 {
    let name = match &spec.subject_der {
        Some(der) => X509Name::from_der(der).expect("subject der"),
        None => {
            let mut name = X509NameBuilder::new().expect("name");
            for (k, v) in &spec.subject {
                name.append_entry_by_text(k, v).expect("name entry");
            }
            name.build()
        }
    };
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("v3");
    let serial = match &spec.serial {
        Some(bytes) => BigNum::from_slice(bytes).expect("serial"),
        None => BigNum::from_slice(&random_serial(120)).expect("serial"),
    };
    b.set_serial_number(&serial.to_asn1_integer().expect("serial")).expect("serial");
    b.set_subject_name(&name).expect("subject");
    match issuer {
        Some(i) => b.set_issuer_name(i.cert.subject_name()).expect("issuer"),
        None => b.set_issuer_name(&name).expect("issuer"),
    }
    b.set_pubkey(key).expect("pubkey");
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
        Ku::CertSignOnly => {
            b.append_extension(KeyUsage::new().critical().key_cert_sign().build().expect("ku")).expect("ku")
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
    let ski = match &spec.ski {
        Some(s) => s.clone(),
        None => key_id_of(key),
    };
    if !ski.is_empty() {
        b.append_extension(raw_ext("2.5.29.14", false, &tlv(0x04, &ski))).expect("ski");
    }
    let aki = match (&spec.aki, issuer) {
        (Aki::Absent, _) => None,
        (Aki::FromIssuerWithName, _) => {
            // OpenSSL copies the issuer's SKI, issuer name and serial (self when None).
            let ctx = b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None);
            let ext = AuthorityKeyIdentifier::new().keyid(true).issuer(true).build(&ctx).expect("aki");
            b.append_extension(ext).expect("aki");
            None
        }
        (Aki::Explicit(k), _) => Some(k.clone()),
        (Aki::FromIssuer, Some(i)) => Some(i.ski()),
        (Aki::FromIssuer, None) => Some(ski.clone()),
    };
    if let Some(aki) = aki.filter(|k| !k.is_empty()) {
        b.append_extension(raw_ext("2.5.29.35", false, &tlv(0x30, &tlv(0x80, &aki)))).expect("aki");
    }
    if !spec.sans.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for s in &spec.sans {
            san.dns(s);
        }
        let ext = san.build(&b.x509v3_context(None, None)).expect("san");
        b.append_extension(ext).expect("san");
    }
    if spec.unknown_critical {
        // A private-arc OID no OpenSSL knows, critical: verifiers must refuse it.
        b.append_extension(raw_ext("1.3.6.1.4.1.99999.1", true, &[0x05, 0x00])).expect("unknown ext");
    }
    b.sign(signer, MessageDigest::sha256()).expect("sign");
    b.build()
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
