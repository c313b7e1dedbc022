//! Throwaway PKIs for the harness, made with the `openssl` crate (system OpenSSL, the same
//! library radiusd uses).
//!
//! - a RADIUS server CA and the server certificate radiusd presents;
//! - org A, "Cars Device CA" (the legitimate issuer of `*._device.cars.example`), and
//!   org B, "Meters Device CA" (trusted for its own devices, and the cross-domain attacker
//!   when it issues a certificate for org A's name). Both self-signed EC P-256 with SKI
//!   and AKI;
//! - device leaves: CN and SAN dNSName = the identity name, EKU clientAuth.
//!
//! Files are PEM: `<stem>.pem` (leaf), `<stem>.key` (PKCS#8), `<stem>.chain.pem`
//! (leaf, then the issuing CA: what a device sends and what `rlm-rust pin` reads).

use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};

/// The identity names used across the tests.
pub const CAR54: &str = "car54._device.cars.example";
pub const CAR55: &str = "car55._device.cars.example";
pub const CAR77: &str = "car77._device.cars.example";
pub const METER7: &str = "meter7._device.meters.example";

/// A certificate authority (or the server certificate's issuer) with its key.
pub struct Ca {
    pub cert: X509,
    pub key: PKey<Private>,
    /// The CA certificate alone, PEM.
    pub pem: PathBuf,
}

/// A device certificate on disk.
#[derive(Clone, Debug)]
pub struct Device {
    /// The name the tests make it claim by default (its first SAN).
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Leaf + issuing CA.
    pub chain: PathBuf,
}

/// The whole test PKI, written under `dir`.
pub struct TestPki {
    pub dir: PathBuf,
    pub server_ca: Ca,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Org A: the legitimate issuer of `*._device.cars.example`.
    pub cars_ca: Ca,
    /// Org B: issues for its own names, and (attack) for org A's names.
    pub meters_ca: Ca,
}

/// Which key identifier form a leaf's AKI takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aki {
    /// `keyid:always` (the common form: FreeRADIUS prints the bare hex key id).
    KeyId,
    /// `keyid,issuer:always` (FreeRADIUS prints three lines with a `keyid:` prefix).
    KeyIdAndIssuer,
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey")
}

fn name(entries: &[(&str, &str)]) -> X509Name {
    let mut b = X509NameBuilder::new().expect("name builder");
    for (k, v) in entries {
        b.append_entry_by_text(k, v).expect("name entry");
    }
    b.build()
}

fn random_serial() -> Asn1Integer {
    let mut bn = BigNum::new().expect("bn");
    // 127 bits, top bit may be zero: a positive serial of up to 16 bytes.
    bn.rand(127, MsbOption::MAYBE_ZERO, false).expect("rand");
    bn.to_asn1_integer().expect("asn1 int")
}

fn validity(b: &mut X509Builder, days: u32) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now - 3600).expect("time")).expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(days).expect("time")).expect("not after");
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Makes a self-signed EC P-256 CA with SKI and AKI (keyid) and writes `<stem>.pem` in `dir`.
pub fn make_ca(dir: &Path, stem: &str, subject: &[(&str, &str)]) -> Ca {
    let key = ec_key();
    let subject = name(subject);
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("v3");
    b.set_serial_number(&random_serial()).expect("serial");
    b.set_subject_name(&subject).expect("subject");
    b.set_issuer_name(&subject).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    validity(&mut b, 3650);
    b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc")).expect("bc");
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().expect("ku")).expect("ku");
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None)).expect("ski");
    b.append_extension(ski).expect("ski");
    let aki = AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(None, None)).expect("aki");
    b.append_extension(aki).expect("aki");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = b.build();
    let pem = dir.join(format!("{stem}.pem"));
    write(&pem, &cert.to_pem().expect("pem"));
    Ca { cert, key, pem }
}

/// Options of one device leaf.
#[derive(Clone, Debug)]
pub struct LeafSpec<'a> {
    /// File stem in the PKI dir.
    pub stem: &'a str,
    /// Subject CN.
    pub cn: &'a str,
    /// SAN dNSNames (at least one).
    pub sans: &'a [&'a str],
    pub aki: Aki,
}

impl TestPki {
    /// Creates the server PKI and both device CAs under `dir`.
    pub fn new(dir: &Path) -> TestPki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let server_ca = make_ca(dir, "server-ca", &[("O", "Test RADIUS"), ("CN", "Test RADIUS Server CA")]);
        let cars_ca = make_ca(dir, "cars-ca", &[("C", "SE"), ("O", "Cars Org"), ("CN", "Cars Device CA")]);
        let meters_ca = make_ca(dir, "meters-ca", &[("C", "DE"), ("O", "Meters Org"), ("CN", "Meters Device CA")]);
        let (server_cert, server_key) = issue_server(dir, &server_ca);
        TestPki { dir: dir.to_path_buf(), server_ca, server_cert, server_key, cars_ca, meters_ca }
    }

    /// A device certificate from `ca` whose CN and only SAN are `name`.
    pub fn device(&self, ca: &Ca, stem: &str, name: &str) -> Device {
        self.leaf(ca, &LeafSpec { stem, cn: name, sans: &[name], aki: Aki::KeyId })
    }

    /// A device certificate as described by `spec`.
    pub fn leaf(&self, ca: &Ca, spec: &LeafSpec<'_>) -> Device {
        assert!(!spec.sans.is_empty(), "a device leaf needs a SAN");
        let key = ec_key();
        let mut b = X509Builder::new().expect("builder");
        b.set_version(2).expect("v3");
        b.set_serial_number(&random_serial()).expect("serial");
        b.set_subject_name(&name(&[("O", "Test Devices"), ("CN", spec.cn)])).expect("subject");
        b.set_issuer_name(ca.cert.subject_name()).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        validity(&mut b, 825);
        b.append_extension(BasicConstraints::new().critical().build().expect("bc")).expect("bc");
        b.append_extension(KeyUsage::new().critical().digital_signature().build().expect("ku")).expect("ku");
        b.append_extension(ExtendedKeyUsage::new().client_auth().build().expect("eku")).expect("eku");
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&ca.cert), None)).expect("ski");
        b.append_extension(ski).expect("ski");
        let mut aki = AuthorityKeyIdentifier::new();
        aki.keyid(true);
        if spec.aki == Aki::KeyIdAndIssuer {
            aki.issuer(true);
        }
        let aki = aki.build(&b.x509v3_context(Some(&ca.cert), None)).expect("aki");
        b.append_extension(aki).expect("aki");
        let mut san = SubjectAlternativeName::new();
        for s in spec.sans {
            san.dns(s);
        }
        let san = san.build(&b.x509v3_context(Some(&ca.cert), None)).expect("san");
        b.append_extension(san).expect("san");
        b.sign(&ca.key, MessageDigest::sha256()).expect("sign");
        let cert = b.build();

        let cert_path = self.dir.join(format!("{}.pem", spec.stem));
        let key_path = self.dir.join(format!("{}.key", spec.stem));
        let chain_path = self.dir.join(format!("{}.chain.pem", spec.stem));
        let leaf_pem = cert.to_pem().expect("pem");
        write(&cert_path, &leaf_pem);
        write(&key_path, &key.private_key_to_pem_pkcs8().expect("key pem"));
        let mut chain = leaf_pem;
        chain.extend_from_slice(&ca.cert.to_pem().expect("pem"));
        write(&chain_path, &chain);
        Device { name: spec.sans[0].to_string(), cert: cert_path, key: key_path, chain: chain_path }
    }

    /// Both device CAs: what the eap module trusts (TLS accepts both orgs; rlm_rust must
    /// do the rejecting).
    pub fn device_cas(&self) -> [&Ca; 2] {
        [&self.cars_ca, &self.meters_ca]
    }
}

fn issue_server(dir: &Path, ca: &Ca) -> (PathBuf, PathBuf) {
    let key = ec_key();
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("v3");
    b.set_serial_number(&random_serial()).expect("serial");
    b.set_subject_name(&name(&[("O", "Test RADIUS"), ("CN", "radius.test")])).expect("subject");
    b.set_issuer_name(ca.cert.subject_name()).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    validity(&mut b, 825);
    b.append_extension(BasicConstraints::new().critical().build().expect("bc")).expect("bc");
    b.append_extension(KeyUsage::new().critical().digital_signature().build().expect("ku")).expect("ku");
    b.append_extension(ExtendedKeyUsage::new().server_auth().build().expect("eku")).expect("eku");
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&ca.cert), None)).expect("ski");
    b.append_extension(ski).expect("ski");
    let aki = AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(Some(&ca.cert), None)).expect("aki");
    b.append_extension(aki).expect("aki");
    let san =
        SubjectAlternativeName::new().dns("radius.test").build(&b.x509v3_context(Some(&ca.cert), None)).expect("san");
    b.append_extension(san).expect("san");
    b.sign(&ca.key, MessageDigest::sha256()).expect("sign");
    let cert = b.build();
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    // radiusd sends the chain in certificate_file: leaf then its CA.
    let mut pem = cert.to_pem().expect("pem");
    pem.extend_from_slice(&ca.cert.to_pem().expect("pem"));
    write(&cert_path, &pem);
    write(&key_path, &key.private_key_to_pem_pkcs8().expect("key pem"));
    (cert_path, key_path)
}

/// Writes `cas` into `dir` in OpenSSL hashed-name form (`<subject hash>.N`, as
/// `openssl rehash` does), for the eap module's `ca_path`.
pub fn write_ca_path(dir: &Path, cas: &[&Ca]) {
    std::fs::create_dir_all(dir).expect("ca_path dir");
    for ca in cas {
        let hash = ca.cert.subject_name_hash();
        let pem = ca.cert.to_pem().expect("pem");
        let mut n = 0;
        loop {
            let p = dir.join(format!("{hash:08x}.{n}"));
            if !p.exists() {
                write(&p, &pem);
                break;
            }
            if std::fs::read(&p).expect("read ca") == pem {
                break;
            }
            n += 1;
        }
    }
}

/// Writes `cas` as one PEM bundle (for a `ca_file`).
pub fn write_ca_file(path: &Path, cas: &[&Ca]) {
    let mut pem = Vec::new();
    for ca in cas {
        pem.extend_from_slice(&ca.cert.to_pem().expect("pem"));
    }
    write(path, &pem);
}
