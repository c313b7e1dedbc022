//! Attacks on the request check through a real radiusd and eapol_test.
//!
//! The attacker is a participating organisation (org B, "Meters"): its own CA is in the CA
//! set, legitimately, for its own devices, and everything about the victim's device is
//! public (its certificate from DNS, its CA from `.well-known`). The victim here is org V,
//! "Bilar Åkeri", whose CA name is not plain ASCII, as many are. The forgeries make every
//! attribute FreeRADIUS reports about the presented chain (TLS-Client-Cert-* and the
//! depth-1 TLS-Cert-*) equal to those of the victim's genuine authentication, which is
//! what the first design compared: each test checks that equality in radiusd's own log,
//! then that the module still refuses, because the certificate the client proved is not
//! the one DNS publishes.
//!
//! Names that print alike: `X509_NAME_oneline` prints a byte outside ASCII as `\xC3` and
//! leaves a backslash alone, so the UTF-8 `Å`, the ASCII text `\xC3\x85` and the T61String
//! bytes C3 85 all print as `\xC3\x85`, while OpenSSL's name comparison (and the ca_path
//! hash) see three different names. Three ways to use that:
//!
//! - a CA in the trusted set whose DN prints like the victim's CA, with its serial, validity
//!   and key id: it signs the copy of the device directly;
//! - a 2-level client-sent chain under a trusted CA whose DN prints alike;
//! - a 3-level client-sent chain under org B's ordinary CA: nothing in the trusted set
//!   collides, the intermediates exist only in the handshake, and depth 2 is never reported.
//!
//! Also: the victim's genuine certificate presented with another private key (the TLS
//! layer refuses), and a client-sent intermediate copying the victim's CA DN and key id
//! byte for byte (OpenSSL picks the real CA as issuer, the signature fails).
//!
//! Every attack runs under TLS 1.2 and again under TLS 1.3, against the same radiusd.
#![allow(unsafe_code)] // test harness: libc calls

use std::path::{Path, PathBuf};
use std::process::Command;

use foreign_types::ForeignType;
use openssl::asn1::{Asn1Integer, Asn1IntegerRef, Asn1TimeRef, Asn1Type};
use openssl::bn::{BigNum, MsbOption};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Name, X509NameRef, X509};
use rlm_rust::model::pki::oneline;

use testkit::capki::{ec_key, issue, unix_time, Aki, Issued, Spec};
use testkit::eapol::{for_each_tls_version, Credential, Supplicant};
use testkit::pki::{Ca, Device, LeafSpec};
use testkit::radiusd::{Lab, Options, Radiusd};
use testkit::skip;
use testkit::trustmap::{json_policy, Role};

fn load(path: &Path) -> X509 {
    X509::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

fn serial() -> Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(120, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

fn key_id(c: &X509) -> Vec<u8> {
    c.subject_key_id().unwrap().as_slice().to_vec()
}

/// The victim organisation: its CA name has a letter outside ASCII (`Å`, UTF-8 C3 85).
const VICTIM_ORG: &str = "Bilar \u{c5}keri";
const VICTIM_CN: &str = "Bilar Device CA";
const VICTIM: &str = "lastbil9._device.bilar.example";

/// A name of exactly these entries (bytes as given, string type as given).
fn raw_name(entries: &[(Nid, &[u8], Asn1Type)]) -> X509Name {
    // SAFETY: X509_NAME_new returns an owned name (checked for NULL) that X509Name takes
    // over; each add copies `len` bytes from a live slice.
    unsafe {
        let name = openssl_sys::X509_NAME_new();
        assert!(!name.is_null());
        for (nid, bytes, ty) in entries {
            let rc = openssl_sys::X509_NAME_add_entry_by_NID(
                name,
                nid.as_raw(),
                ty.as_raw(),
                bytes.as_ptr() as *mut u8,
                bytes.len() as libc::c_int,
                -1,
                0,
            );
            assert_eq!(rc, 1, "X509_NAME_add_entry_by_NID");
        }
        X509Name::from_ptr(name)
    }
}

fn lookalike(org: &[u8], org_type: Asn1Type) -> X509Name {
    raw_name(&[
        (Nid::COUNTRYNAME, b"SE", Asn1Type::PRINTABLESTRING),
        (Nid::ORGANIZATIONNAME, org, org_type),
        (Nid::COMMONNAME, VICTIM_CN.as_bytes(), Asn1Type::UTF8STRING),
    ])
}

/// Prints like the victim's CA name: the two bytes of `Å` written out as ASCII escapes.
fn lookalike_escaped() -> X509Name {
    lookalike(br"Bilar \xC3\x85keri", Asn1Type::UTF8STRING)
}

/// Prints like it too: the same two bytes in a T61String, which OpenSSL reads as Latin-1.
fn lookalike_t61() -> X509Name {
    lookalike(b"Bilar \xc3\x85keri", Asn1Type::T61STRING)
}

/// The forged names print like `real` and are different names to OpenSSL.
fn assert_prints_alike(real: &X509NameRef, forged: &X509NameRef) {
    assert_eq!(oneline(forged), oneline(real));
    assert_ne!(forged.try_cmp(real).unwrap(), std::cmp::Ordering::Equal, "OpenSSL must see another name");
}

/// What a forged CA copies and where it sits.
struct CaForgery<'a> {
    subject: &'a X509NameRef,
    /// None: self-signed.
    issuer: Option<&'a Issued>,
    serial: &'a Asn1IntegerRef,
    not_before: &'a Asn1TimeRef,
    not_after: &'a Asn1TimeRef,
    key_id: &'a [u8],
    issuer_key_id: &'a [u8],
    key: &'a PKey<Private>,
}

/// Serial bytes of `serial`, to copy it into a `Spec`.
fn serial_bytes(serial: &Asn1IntegerRef) -> Vec<u8> {
    serial.to_bn().unwrap().to_vec()
}

fn forge_ca(f: &CaForgery<'_>) -> Issued {
    let spec = Spec::ca("", "")
        .name(f.subject)
        .key(f.key)
        .serial(&serial_bytes(f.serial))
        .validity(unix_time(f.not_before), unix_time(f.not_after))
        .aki(Aki::Explicit(f.issuer_key_id.to_vec()));
    issue(&Spec { ski: Some(f.key_id.to_vec()), ..spec }, f.issuer)
}

/// A leaf copying every printable field of `victim` (no SKI, the victim's AKI), issued
/// by `issuer`.
fn forge_leaf(victim: &X509, issuer: &Issued, key: &PKey<Private>) -> X509 {
    let spec = Spec::leaf("", VICTIM)
        .name(victim.subject_name())
        .key(key)
        .serial(&serial_bytes(victim.serial_number()))
        .validity_of(victim)
        .aki(Aki::Explicit(victim.authority_key_id().unwrap().as_slice().to_vec()));
    issue(&Spec { ski: Some(vec![]), ..spec }, Some(issuer)).cert
}

const SSID: &str = "Bilar-WiFi";

/// The lab: the victim's device published (its certificate in the map), the victim's, org
/// A's and org B's CAs trusted, plus `extra_trusted`. Returns the victim's CA and device.
struct VictimLab {
    lab: Lab,
    ca: Ca,
    device: Device,
}

impl VictimLab {
    fn new() -> VictimLab {
        let lab = Lab::new(Options::default());
        let ca = testkit::pki::make_ca(&lab.pki.dir, "bilar-ca", &[("C", "SE"), ("O", VICTIM_ORG), ("CN", VICTIM_CN)]);
        let device = lab
            .pki
            .leaf(&ca, &LeafSpec { stem: "lastbil9", cn: VICTIM, sans: &[VICTIM], aki: testkit::pki::Aki::KeyId });
        let policy =
            json_policy("t", &[Role { ssid: SSID, members: &[VICTIM], reply: &[("Tunnel-Private-Group-Id", "10")] }]);
        lab.write_map(&policy, &[device.cert.as_path()]);
        let v = VictimLab { lab, ca, device };
        v.trust(&[]);
        v
    }

    /// The CA set: the three organisations' CAs, and `extra`.
    fn trust(&self, extra: &[&Ca]) {
        let mut cas = vec![&self.ca, &self.lab.pki.cars_ca, &self.lab.pki.meters_ca];
        cas.extend_from_slice(extra);
        testkit::pki::write_ca_path(&self.lab.certdir.join("dane-ca"), &cas);
    }

    fn victim_leaf(&self) -> X509 {
        load(&self.device.cert)
    }

    /// Writes a client chain (leaf, then what the client sends above it) and its key.
    fn client_files(&self, stem: &str, chain: &[&X509], key: &PKey<Private>) -> Credential {
        let work = &self.lab.work;
        let (cert, key_path) = (work.join(format!("{stem}.chain.pem")), work.join(format!("{stem}.key")));
        let pem: Vec<u8> = chain.iter().flat_map(|c| c.to_pem().unwrap()).collect();
        std::fs::write(&cert, pem).unwrap();
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        Credential::Files { client_cert: cert, private_key: key_path }
    }

    /// Authenticates the genuine device, then the forged credential, under each TLS
    /// version; asserts the forgery prints exactly like the genuine chain, passed TLS, and
    /// was refused by the certificate binding with EAP-Failure.
    fn assert_forgery_refused(&mut self, forged: Credential) {
        let rd = self.lab.start();
        for_each_tls_version(|_| {
            let mark = rd.mark();
            self.lab.eapol(&self.lab.supplicant(&self.device, SSID)).assert_accepted();
            rd.wait_reply_logged(mark);
            let genuine = printed_fields(&rd, mark);

            let mark = rd.mark();
            let s = Supplicant::with_credential(VICTIM, forged.clone(), &self.lab.pki.server_ca.pem, SSID);
            let r = self.lab.eapol(&s);
            let log = rd.wait_reply_logged(mark);
            r.assert_rejected_with_eap_failure();
            assert_eq!(printed_fields(&rd, mark), genuine, "the forgery should print exactly like the genuine chain");
            assert!(
                log.contains("captured the presented certificate"),
                "TLS refused the chain, the check never ran:\n{log}"
            );
            let reject =
                format!("rlm_rust[rust]: reject name={VICTIM} ssid={SSID} reason=certificate matches no association");
            assert!(log.contains(&reject), "{log}");
            assert!(!log.contains(&format!("accept name={VICTIM}")), "{log}");
        });
    }
}

/// The printable attributes radiusd logged for the first authentication after `mark`.
fn printed_fields(rd: &Radiusd, mark: usize) -> Vec<(String, String)> {
    const FIELDS: [&str; 11] = [
        "TLS-Client-Cert-Serial",
        "TLS-Client-Cert-Subject",
        "TLS-Client-Cert-Issuer",
        "TLS-Client-Cert-Valid-Since",
        "TLS-Client-Cert-Expiration",
        "TLS-Client-Cert-X509v3-Authority-Key-Identifier",
        "TLS-Cert-Serial",
        "TLS-Cert-Subject",
        "TLS-Cert-Issuer",
        "TLS-Cert-Valid-Since",
        "TLS-Cert-Expiration",
    ];
    let log = rd.log_since(mark);
    FIELDS
        .iter()
        .map(|f| {
            let needle = format!(" {f} ");
            let value = log
                .lines()
                .find_map(|l| {
                    l.split_once(&needle).and_then(|(_, rest)| rest.split_once(' ')).map(|(_, v)| v.to_string())
                })
                .unwrap_or_else(|| panic!("{f} not in the log:\n{log}"));
            (f.to_string(), value)
        })
        .collect()
}

fn fresh_dates() -> (openssl::asn1::Asn1Time, openssl::asn1::Asn1Time) {
    (openssl::asn1::Asn1Time::days_from_now(0).unwrap(), openssl::asn1::Asn1Time::days_from_now(3650).unwrap())
}

fn self_key_id(key: &PKey<Private>) -> Vec<u8> {
    openssl::sha::sha1(&key.public_key_to_der().unwrap()).to_vec()
}

#[test]
fn trusted_ca_whose_name_prints_like_the_victims_signs_a_copy_of_its_device() {
    if skip() {
        return;
    }
    let mut v = VictimLab::new();
    let real = v.ca.cert.clone();
    // Org B's CA in the set: its DN prints like the victim's CA, and it copies the victim
    // CA's serial, dates and key id (a hand-made CA set has no rule against that).
    let rogue_key = ec_key();
    let name = lookalike_escaped();
    assert_prints_alike(real.subject_name(), &name);
    let rogue = forge_ca(&CaForgery {
        subject: &name,
        issuer: None,
        serial: real.serial_number(),
        not_before: real.not_before(),
        not_after: real.not_after(),
        key_id: &key_id(&real),
        issuer_key_id: &key_id(&real),
        key: &rogue_key,
    });
    let rogue_ca = Ca { cert: rogue.cert.clone(), key: rogue_key.clone(), pem: v.lab.work.join("rogue.pem") };
    v.trust(&[&rogue_ca]);
    let leaf_key = ec_key();
    let leaf = forge_leaf(&v.victim_leaf(), &rogue, &leaf_key);
    let forged = v.client_files("forged-a", &[&leaf], &leaf_key);
    v.assert_forgery_refused(forged);
}

#[test]
fn two_level_client_sent_chain_under_a_lookalike_trusted_ca_is_refused() {
    if skip() {
        return;
    }
    let mut v = VictimLab::new();
    let real = v.ca.cert.clone();
    // Org B's own root, in the set with its own key id: only its DN prints like the
    // victim's CA (it would pass the sync's CA set rules, which compare names as OpenSSL).
    let root_key = ec_key();
    let root_name = lookalike_escaped();
    let root_id = self_key_id(&root_key);
    let (nb, na) = fresh_dates();
    let root = forge_ca(&CaForgery {
        subject: &root_name,
        issuer: None,
        serial: &serial(),
        not_before: &nb,
        not_after: &na,
        key_id: &root_id,
        issuer_key_id: &root_id,
        key: &root_key,
    });
    v.trust(&[&Ca { cert: root.cert.clone(), key: root_key.clone(), pem: v.lab.work.join("root-b.pem") }]);
    // Sent by the client: an intermediate copying the victim CA's serial, dates and key
    // id, whose subject prints like the victim's CA (and its issuer, org B's root, too).
    let mid_key = ec_key();
    let mid_name = lookalike_t61();
    assert_prints_alike(real.subject_name(), &mid_name);
    let mid = forge_ca(&CaForgery {
        subject: &mid_name,
        issuer: Some(&root),
        serial: real.serial_number(),
        not_before: real.not_before(),
        not_after: real.not_after(),
        key_id: &key_id(&real),
        issuer_key_id: &root_id,
        key: &mid_key,
    });
    let leaf_key = ec_key();
    let leaf = forge_leaf(&v.victim_leaf(), &mid, &leaf_key);
    let forged = v.client_files("forged-b", &[&leaf, &mid.cert], &leaf_key);
    v.assert_forgery_refused(forged);
}

#[test]
fn three_level_client_sent_chain_without_any_collision_in_the_trusted_set_is_refused() {
    if skip() {
        return;
    }
    // Nothing but the organisations' ordinary CAs is trusted.
    let mut v = VictimLab::new();
    let real = v.ca.cert.clone();
    let meters = v.lab.pki.meters_ca.issued();
    // Depth 2, never reported: under org B's CA, its subject prints like the victim's CA.
    let upper_key = ec_key();
    let upper_name = lookalike_escaped();
    let upper_id = self_key_id(&upper_key);
    let upper = forge_ca(&CaForgery {
        subject: &upper_name,
        issuer: Some(&meters),
        serial: &serial(),
        not_before: meters.cert.not_before(),
        not_after: meters.cert.not_after(),
        key_id: &upper_id,
        issuer_key_id: &key_id(&meters.cert),
        key: &upper_key,
    });
    // Depth 1, reported as TLS-Cert-*: every field like the victim's CA.
    let mid_key = ec_key();
    let mid_name = lookalike_t61();
    let mid = forge_ca(&CaForgery {
        subject: &mid_name,
        issuer: Some(&upper),
        serial: real.serial_number(),
        not_before: real.not_before(),
        not_after: real.not_after(),
        key_id: &key_id(&real),
        issuer_key_id: &upper_id,
        key: &mid_key,
    });
    let leaf_key = ec_key();
    let leaf = forge_leaf(&v.victim_leaf(), &mid, &leaf_key);
    let forged = v.client_files("forged-c", &[&leaf, &mid.cert, &upper.cert], &leaf_key);
    v.assert_forgery_refused(forged);
}

#[test]
fn client_sent_intermediate_copying_the_victims_ca_byte_for_byte_fails_the_signature() {
    if skip() {
        return;
    }
    let mut v = VictimLab::new();
    let real = v.ca.cert.clone();
    let meters = v.lab.pki.meters_ca.issued();
    let mid_key = ec_key();
    let mid = forge_ca(&CaForgery {
        subject: real.subject_name(),
        issuer: Some(&meters),
        serial: real.serial_number(),
        not_before: real.not_before(),
        not_after: real.not_after(),
        key_id: &key_id(&real),
        issuer_key_id: &key_id(&meters.cert),
        key: &mid_key,
    });
    let leaf_key = ec_key();
    let leaf = forge_leaf(&v.victim_leaf(), &mid, &leaf_key);
    let forged = v.client_files("forged-d", &[&leaf, &mid.cert], &leaf_key);
    let rd = v.lab.start();
    for_each_tls_version(|_| {
        let mark = rd.mark();
        let r = v.lab.eapol(&Supplicant::with_credential(VICTIM, forged.clone(), &v.lab.pki.server_ca.pem, SSID));
        let log = rd.wait_reply_logged(mark);
        r.assert_rejected_with_eap_failure();
        // The real CA is in the set, so OpenSSL picks it as the issuer and the signature fails.
        assert!(log.contains("certificate signature failure"), "refused for another reason:\n{log}");
        assert!(!log.contains(&format!("accept name={VICTIM}")), "{log}");
    });
}

/// Builds an LD_PRELOAD object that makes the supplicant's OpenSSL skip its own check that
/// a private key belongs to the certificate: the attacker's client, not ours.
fn key_check_bypass(dir: &Path) -> PathBuf {
    let src = dir.join("bypass.c");
    let so = dir.join("bypass.so");
    std::fs::write(
        &src,
        "int X509_check_private_key(const void *x, const void *k) { (void)x; (void)k; return 1; }\n\
         int SSL_check_private_key(const void *s) { (void)s; return 1; }\n\
         int SSL_CTX_check_private_key(const void *c) { (void)c; return 1; }\n",
    )
    .unwrap();
    let ok = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&so).arg(&src).status().unwrap().success();
    assert!(ok, "cc failed to build the key-check bypass");
    so
}

#[test]
fn genuine_certificate_with_another_private_key_is_refused_by_tls() {
    if skip() {
        return;
    }
    let mut v = VictimLab::new();
    let wrong_key = ec_key();
    let key_path = v.lab.work.join("wrong.key");
    std::fs::write(&key_path, wrong_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let bypass = key_check_bypass(&v.lab.work);
    let rd = v.lab.start();
    for_each_tls_version(|_| {
        let mark = rd.mark();
        let s = Supplicant::with_credential(
            VICTIM,
            Credential::Files { client_cert: v.device.chain.clone(), private_key: key_path.clone() },
            &v.lab.pki.server_ca.pem,
            SSID,
        )
        .env("LD_PRELOAD", &bypass.display().to_string());
        let r = v.lab.eapol(&s);
        let log = rd.wait_reply_logged(mark);
        // The supplicant did send the genuine certificate and signed with the wrong key...
        assert!(r.output.contains("Private key loaded successfully"), "the bypass did not take:\n{}", r.tail());
        r.assert_rejected_with_eap_failure();
        // ...and the server's TLS refused the handshake (CertificateVerify): no decision at all.
        assert!(!log.contains("rlm_rust[rust]: accept"), "{log}");
        assert!(!log.contains("Validating certificate"), "the handshake completed:\n{log}");
    });
}
