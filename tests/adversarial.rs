//! Attacks on the pin check through a real radiusd and eapol_test, beyond the plain
//! cross-domain certificate (tests/eap_tls.rs): a client-sent intermediate that
//! impersonates org A's CA, and a leaf that copies every pinned field of org A's device.
//!
//! The forger controls org B's CA, which the CA set trusts (for org B's own devices). It
//! mints an intermediate with org A's CA subject DN and key identifier, and under it a leaf
//! copying org A's device serial, subject, issuer, AKI and validity. Whatever OpenSSL does
//! with that chain, the device must be refused with EAP-Failure (ARCHITECTURE.md, "Why
//! pins": with org A's CA in the set the handshake fails; if it succeeded, depth 1 would be
//! org B's intermediate and differ from the pin).

mod support;

use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509Extension, X509};

use support::eapol::Credential;
use support::pki::CAR54;
use support::radiusd::{Lab, Options};
use support::trustmap::{json_policy, Role};

const CARS_WIFI: &str = "Cars-WiFi";

fn ec_key() -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap()
}

fn load(path: &Path) -> X509 {
    X509::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

const SKI_OID: &str = "2.5.29.14";
const AKI_OID: &str = "2.5.29.35";

/// A raw extension with DER `value` (to copy key identifiers byte for byte).
fn ext(oid: &str, value_der: &[u8]) -> X509Extension {
    let obj = openssl::asn1::Asn1Object::from_str(oid).unwrap();
    let octets = openssl::asn1::Asn1OctetString::new_from_bytes(value_der).unwrap();
    X509Extension::new_from_der(&obj, false, &octets).unwrap()
}

fn octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![0x04, bytes.len() as u8];
    v.extend_from_slice(bytes);
    v
}

fn aki_keyid(bytes: &[u8]) -> Vec<u8> {
    // AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier }
    let mut inner = vec![0x80, bytes.len() as u8];
    inner.extend_from_slice(bytes);
    let mut v = vec![0x30, inner.len() as u8];
    v.extend(inner);
    v
}

#[test]
fn client_sent_intermediate_impersonating_org_a_is_refused() {
    if std::env::var_os("RLM_RUST_SKIP_EAP_TLS").is_some() {
        return;
    }
    let mut lab = Lab::new(Options::default());
    let real = lab.cars_device("car54", CAR54);
    lab.pin(&json_policy("t", &[Role { ssid: CARS_WIFI, members: &[CAR54], reply: &[] }]), &[real.chain.as_path()]);
    let rd = lab.start();
    lab.eapol(&lab.supplicant(&real, CARS_WIFI)).assert_accepted();

    let cars_ca = &lab.pki.cars_ca.cert;
    let meters = &lab.pki.meters_ca;
    let real_leaf = load(&real.cert);
    let ca_ski = cars_ca.subject_key_id().unwrap().as_slice().to_vec();

    // The forged intermediate: org A's DN and key id, a key of the forger's, signed by org B.
    let fake_key = ec_key();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(4242).unwrap().to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(cars_ca.subject_name()).unwrap();
    b.set_issuer_name(meters.cert.subject_name()).unwrap();
    b.set_pubkey(&fake_key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
    b.append_extension(KeyUsage::new().critical().key_cert_sign().build().unwrap()).unwrap();
    b.append_extension(ext(SKI_OID, &octet_string(&ca_ski))).unwrap();
    let meters_ski = meters.cert.subject_key_id().unwrap().as_slice().to_vec();
    b.append_extension(ext(AKI_OID, &aki_keyid(&meters_ski))).unwrap();
    b.sign(&meters.key, MessageDigest::sha256()).unwrap();
    let fake_ca = b.build();

    // The leaf copies every field the pin holds.
    let leaf_key = ec_key();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(real_leaf.serial_number()).unwrap();
    b.set_subject_name(real_leaf.subject_name()).unwrap();
    b.set_issuer_name(real_leaf.issuer_name()).unwrap();
    b.set_pubkey(&leaf_key).unwrap();
    b.set_not_before(real_leaf.not_before()).unwrap();
    b.set_not_after(real_leaf.not_after()).unwrap();
    b.append_extension(BasicConstraints::new().critical().build().unwrap()).unwrap();
    b.append_extension(KeyUsage::new().critical().digital_signature().build().unwrap()).unwrap();
    b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap()).unwrap();
    b.append_extension(ext(AKI_OID, &aki_keyid(&ca_ski))).unwrap();
    let san = SubjectAlternativeName::new().dns(CAR54).build(&b.x509v3_context(None, None)).unwrap();
    b.append_extension(san).unwrap();
    b.sign(&fake_key, MessageDigest::sha256()).unwrap();
    let forged = b.build();
    assert_eq!(forged.serial_number().to_bn().unwrap(), real_leaf.serial_number().to_bn().unwrap());

    let chain = lab.work.join("forged.chain.pem");
    let key = lab.work.join("forged.key");
    let mut pem = forged.to_pem().unwrap();
    pem.extend(fake_ca.to_pem().unwrap());
    std::fs::write(&chain, pem).unwrap();
    std::fs::write(&key, leaf_key.private_key_to_pem_pkcs8().unwrap()).unwrap();

    let mark = rd.mark();
    let s = support::eapol::Supplicant::with_credential(
        CAR54,
        Credential::Files { client_cert: chain, private_key: key },
        &lab.pki.server_ca.pem,
        CARS_WIFI,
    );
    let r = lab.eapol(&s);
    r.assert_rejected_with_eap_failure();
    let log = rd.wait_reply_logged(mark);
    assert!(!log.contains(&format!("accept name={CAR54}")), "the module must never accept it:\n{log}");
    // Org A's CA is in the set, so OpenSSL picks it as the issuer and the signature fails;
    // should the handshake ever pass, the module's depth-1 comparison must refuse it.
    assert!(
        log.contains("certificate signature failure") || log.contains("reason=certificate matches no pin of the name"),
        "refused for the wrong reason:\n{log}"
    );
}
