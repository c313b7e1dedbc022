//! Throwaway PKIs for the harness, on disk. The certificates come from `capki` (system
//! OpenSSL, the same library radiusd uses); this module holds the lab's profiles (subjects,
//! validity, serial size) and names and writes the files.
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

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::capki::{self, Issued, Spec, DAY};

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

/// The lab's validity: from an hour ago for `days` days.
fn valid_for(spec: Spec, days: i64) -> Spec {
    let now = capki::now();
    spec.validity(now - 3600, now + days * DAY)
}

/// The lab's serials: 127 random bits, a positive serial of up to 16 bytes.
fn lab_serial(spec: Spec) -> Spec {
    spec.serial(&capki::random_serial(127))
}

/// A lab leaf: `O=<org>, CN=<cn>`, CA:FALSE, digitalSignature, `eku`, SKI, AKI keyid,
/// SAN dNSNames `sans`, valid 825 days.
fn leaf_spec(org: &str, cn: &str, sans: &[&str], eku: &'static str) -> Spec {
    lab_serial(valid_for(Spec::leaf(org, cn).subject(&[("O", org), ("CN", cn)]).sans(sans).eku(&[eku]), 825))
}

/// The profile of the lab's device leaves, as `TestPki::leaf` issues them: `O=Test
/// Devices, CN=<cn>`, SAN dNSNames `sans`, EKU clientAuth, SKI, AKI as `aki` says.
pub fn device_spec(cn: &str, sans: &[&str], aki: Aki) -> Spec {
    let spec = leaf_spec("Test Devices", cn, sans, "clientAuth");
    match aki {
        Aki::KeyId => spec,
        Aki::KeyIdAndIssuer => spec.aki(capki::Aki::FromIssuerWithName),
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Makes a self-signed EC P-256 CA with SKI and AKI (keyid) and writes `<stem>.pem` in `dir`.
pub fn make_ca(dir: &Path, stem: &str, subject: &[(&str, &str)]) -> Ca {
    let Issued { cert, key } = capki::issue(&lab_serial(valid_for(Spec::ca("", "").subject(subject), 3650)), None);
    let pem = dir.join(format!("{stem}.pem"));
    write(&pem, &cert.to_pem().expect("pem"));
    Ca { cert, key, pem }
}

impl Ca {
    /// The CA as a `capki` issuer.
    pub fn issued(&self) -> Issued {
        Issued { cert: self.cert.clone(), key: self.key.clone() }
    }
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
        let Issued { cert, key } = capki::issue(&device_spec(spec.cn, spec.sans, spec.aki), Some(&ca.issued()));

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

/// The certificate radiusd presents: `O=Test RADIUS, CN=radius.test`, SAN radius.test,
/// EKU serverAuth.
fn issue_server(dir: &Path, ca: &Ca) -> (PathBuf, PathBuf) {
    let spec = leaf_spec("Test RADIUS", "radius.test", &["radius.test"], "serverAuth");
    let Issued { cert, key } = capki::issue(&spec, Some(&ca.issued()));
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
