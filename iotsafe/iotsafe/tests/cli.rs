//! End-to-end tests of the `iotsafe` binary through a real pcscd, the vpcd
//! reader driver and the simulated IoT SAFE card. Need root (pcscd owns
//! /run/pcscd) and the apt packages listed in ci.sh; tests serialize on the
//! rig lock because only one pcscd can run per host.

mod common;

use std::process::Command;

use common::{iotsafe, iotsafe_err, iotsafe_ok, run_with_timeout, s, Env, CMD_TIMEOUT};
use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509Builder, X509NameBuilder, X509Req, X509};

fn openssl_cli(args: &[&str]) -> common::Out {
    run_with_timeout(Command::new("openssl").args(args), CMD_TIMEOUT)
}

/// Verifies a DER signature over `msg` with a PEM public key, using the
/// openssl command (independent of the code under test).
fn openssl_verifies(env: &Env, pubkey_pem: &std::path::Path, msg: &[u8], sig_der: &[u8]) -> bool {
    let m = env.path("verify.msg");
    let sg = env.path("verify.sig");
    std::fs::write(&m, msg).unwrap();
    std::fs::write(&sg, sig_der).unwrap();
    let out = openssl_cli(&["dgst", "-sha256", "-verify", s(pubkey_pem), "-signature", s(&sg), s(&m)]);
    out.ok && out.text().contains("Verified OK")
}

#[test]
fn readers_shows_both_vpcd_slots_and_atr() {
    let mut env = Env::new();
    env.insert(0);
    let out = iotsafe_ok(&["readers"]);
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], format!("{}\tcard\tATR 3B80800101", env.reader(0)));
    assert_eq!(lines[1], format!("{}\tempty", env.reader(1)));
}

#[test]
fn info_lists_applet_and_every_object() {
    let mut env = Env::new();
    env.insert(0);
    let text = iotsafe_ok(&["info"]).text();
    assert!(text.contains(&format!("reader: {}", env.reader(0))), "{text}");
    assert!(text.contains("applet id: IOTSAFE-SIM-RS"), "{text}");
    assert!(text.contains("objects: 3"), "{text}");
    assert!(
        text.contains("private key id=01 label=\"IOTSAFE_KEY\" type=EC P-256 (persistent) (13) size=256 bits"),
        "{text}"
    );
    assert!(text.contains("public key id=01"), "{text}");
    let cert_len = std::fs::metadata(env.card_dir(0).join("file-02.bin")).unwrap().len();
    assert!(
        text.contains(&format!("file id=02 label=\"CLIENT_CERT\" usage=X.509 certificate (02) size={cert_len} bytes")),
        "{text}"
    );
}

#[test]
fn key_generate_then_public_and_sign_verify() {
    let mut env = Env::new();
    env.insert(0);
    let generated = iotsafe_ok(&["key", "generate", "--id", "03", "--format", "hex"]).text();
    let public = iotsafe_ok(&["key", "public", "--id", "03", "--format", "hex"]).text();
    assert_eq!(generated, public);
    assert_eq!(generated.trim().len(), 130);
    let old = iotsafe_ok(&["key", "public", "--id", "01", "--format", "hex"]).text();
    assert_ne!(old, public, "slot 03 must hold a new key");
    assert!(iotsafe_ok(&["info"]).text().contains("private key id=03"));

    let pem = env.path("pub03.pem");
    iotsafe_ok(&["key", "public", "--id", "03", "-o", s(&pem)]);
    let msg = env.path("msg");
    std::fs::write(&msg, b"EAP-TLS CertificateVerify stand-in").unwrap();
    let sig = env.path("sig.der");
    iotsafe_ok(&["sign", "--key", "03", "--data", s(&msg), "-o", s(&sig)]);
    let sig_der = std::fs::read(&sig).unwrap();
    assert!(openssl_verifies(&env, &pem, b"EAP-TLS CertificateVerify stand-in", &sig_der));
    // A signature with key 01 must not verify under key 03.
    let sig01 = env.path("sig01.der");
    iotsafe_ok(&["sign", "--key", "01", "--data", s(&msg), "-o", s(&sig01)]);
    let sig01 = std::fs::read(&sig01).unwrap();
    assert!(!openssl_verifies(&env, &pem, b"EAP-TLS CertificateVerify stand-in", &sig01));
}

#[test]
fn sign_raw_digest_in_every_card_encoding() {
    let mut env = Env::new();
    env.insert(0);
    let pem = env.path("pub.pem");
    iotsafe_ok(&["key", "public", "-o", s(&pem)]);
    let key = PKey::public_key_from_pem(&std::fs::read(&pem).unwrap()).unwrap();
    let key = key.ec_key().unwrap();
    let digest = openssl::sha::sha256(b"abc");
    for (faults, label) in
        [("sig raw2", "33 00 40"), ("sig raw1", "33 40"), ("sig der", "DER"), ("t0\nsig raw1", "T=0 61xx")]
    {
        env.faults(0, faults);
        let out = iotsafe_ok(&["sign", "--digest", &hex::encode(digest), "--format", "raw"]);
        let raw = hex::decode(out.text().trim()).unwrap();
        assert_eq!(raw.len(), 64, "{label}");
        let sig = openssl::ecdsa::EcdsaSig::from_private_components(
            openssl::bn::BigNum::from_slice(&raw[..32]).unwrap(),
            openssl::bn::BigNum::from_slice(&raw[32..]).unwrap(),
        )
        .unwrap();
        assert!(sig.verify(&digest, &key).unwrap(), "signature via {label} does not verify");
    }
}

#[test]
fn csr_is_signed_on_card_and_verifies_with_openssl() {
    let mut env = Env::new();
    env.insert(0);
    let csr = env.path("req.pem");
    let name = "car54._device.cars.example";
    iotsafe_ok(&["csr", "--name", name, "-o", s(&csr)]);
    let out = openssl_cli(&["req", "-in", s(&csr), "-noout", "-verify", "-text"]);
    assert!(out.ok, "{}", out.stderr);
    let all = format!("{}{}", out.text(), out.stderr);
    assert!(all.contains("verify OK"), "{all}");
    assert!(all.contains(&format!("CN = {name}")), "{all}");
    assert!(all.contains(&format!("DNS:{name}")), "{all}");
    // The CSR carries the card's key 01.
    let req = X509Req::from_pem(&std::fs::read(&csr).unwrap()).unwrap();
    let pem = iotsafe_ok(&["key", "public"]).stdout;
    assert_eq!(req.public_key().unwrap().public_key_to_pem().unwrap(), pem);
    let err = iotsafe_err(&["csr", "--name", "bad name.example"]);
    assert!(err.contains("DNS name"), "{err}");
}

/// A CA-signed certificate for `point`'s key, as an enrolment would yield.
fn ca_signed_cert(pubkey_pem: &[u8], cn: &str) -> X509 {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ca = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut issuer = X509NameBuilder::new().unwrap();
    issuer.append_entry_by_nid(Nid::COMMONNAME, "Test CA").unwrap();
    let issuer = issuer.build();
    let mut subject = X509NameBuilder::new().unwrap();
    subject.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let subject = subject.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&subject).unwrap();
    b.set_issuer_name(&issuer).unwrap();
    b.set_pubkey(&PKey::public_key_from_pem(pubkey_pem).unwrap()).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    b.sign(&ca, MessageDigest::sha256()).unwrap();
    b.build()
}

#[test]
fn cert_write_then_read_round_trip_and_tlsa() {
    let mut env = Env::new();
    let dir = env.insert(0);
    let pubkey = iotsafe_ok(&["key", "public"]).stdout;
    let cert = ca_signed_cert(&pubkey, "car54._device.cars.example");
    let der = cert.to_der().unwrap();
    assert!(der.len() > 255, "must need several UPDATE chunks");
    let pem_in = env.path("in.pem");
    std::fs::write(&pem_in, cert.to_pem().unwrap()).unwrap();
    iotsafe_ok(&["cert", "write", "--id", "02", "--in", s(&pem_in)]);
    assert_eq!(std::fs::read(dir.join("file-02.bin")).unwrap(), der);

    let read = iotsafe_ok(&["cert", "read", "--format", "der"]).stdout;
    assert_eq!(read, der);
    let pem = iotsafe_ok(&["cert", "read", "--chunk", "50"]).stdout;
    assert_eq!(pem, cert.to_pem().unwrap());

    // Name defaults to the certificate's CN (no SAN here).
    let line = iotsafe_ok(&["tlsa"]).text();
    assert_eq!(line.trim(), format!("car54._device.cars.example. IN TLSA 4 0 0 {}", hex::encode(&der)));
    let spki = cert.public_key().unwrap().public_key_to_der().unwrap();
    let line =
        iotsafe_ok(&["tlsa", "--name", "x.example", "--usage", "3", "--selector", "1", "--matching", "1"]).text();
    assert_eq!(line.trim(), format!("x.example. IN TLSA 3 1 1 {}", hex::encode(openssl::sha::sha256(&spki))));
    // From a file, no card needed for the data.
    let line = iotsafe_ok(&["tlsa", "--cert", s(&pem_in), "--matching", "1"]).text();
    assert_eq!(
        line.trim(),
        format!("car54._device.cars.example. IN TLSA 4 0 1 {}", hex::encode(openssl::sha::sha256(&der)))
    );
}

#[test]
fn no_pcscd_running_is_a_clear_error() {
    let _lock = iotsafe_sim::rig::lock(std::time::Duration::from_secs(600)).unwrap();
    assert_eq!(iotsafe_sim::rig::running_pcscd(), None, "a pcscd is running outside the rig");
    let err = iotsafe_err(&["readers"]);
    assert!(err.contains("PC/SC service not available: is pcscd running?"), "{err}");
    let err = iotsafe_err(&["info"]);
    assert!(err.contains("is pcscd running?"), "{err}");
}

#[test]
fn two_readers_are_chosen_by_name() {
    let mut env = Env::new();
    env.insert(0);
    env.insert(1);
    let err = iotsafe_err(&["key", "public"]);
    assert!(err.contains("ambiguous"), "{err}");
    assert!(err.contains(&env.reader(0)) && err.contains(&env.reader(1)), "{err}");
    let a = iotsafe_ok(&["--reader", &env.reader(0), "key", "public", "--format", "hex"]).text();
    let b = iotsafe_ok(&["--reader", "00 01", "key", "public", "--format", "hex"]).text();
    assert_ne!(a, b, "two cards must hold different keys");
    let a_file = iotsafe_ok(&["-r", "sim 00 00", "key", "public", "--format", "hex"]).text();
    assert_eq!(a, a_file);
    let err = iotsafe_err(&["--reader", "Gemalto", "info"]);
    assert!(err.contains("no reader matches \"Gemalto\""), "{err}");
    let err = iotsafe_err(&["--reader", "IoTSAFE", "info"]);
    assert!(err.contains("ambiguous"), "{err}");
}

#[test]
fn card_removed_between_commands_and_reinserted() {
    let mut env = Env::new();
    env.insert(0);
    let before = iotsafe_ok(&["key", "public", "--format", "hex"]).text();
    env.remove(0);
    let err = iotsafe_err(&["--reader", "00 00", "key", "public"]);
    assert!(err.contains(&format!("no card in reader \"{}\"", env.reader(0))), "{err}");
    let err = iotsafe_err(&["key", "public"]);
    assert!(err.contains("no card in reader"), "{err}");
    env.insert(0);
    let after = iotsafe_ok(&["key", "public", "--format", "hex"]).text();
    assert_eq!(before, after, "card memory must survive removal");
}

#[test]
fn card_removed_mid_sequence() {
    let mut env = Env::new();
    env.insert(0);
    env.faults(0, "remove-on 2B");
    let err = iotsafe_err(&["--reader", "00 00", "sign", "--digest", &"11".repeat(32)]);
    assert!(err.contains(&env.reader(0)), "{err}");
    assert!(
        err.contains(&format!("card removed from reader \"{}\" during APDU INS 2B", env.reader(0))),
        "error should say the card went away: {err}"
    );
}

#[test]
fn applet_absent_is_decoded() {
    let mut env = Env::new();
    env.insert(0);
    let err = iotsafe_err(&["--reader", "00 00", "--aid", "A0000005590011", "info"]);
    assert!(
        err.contains("IoT SAFE applet A0000005590011 not present on the card in \"IoTSAFE Sim 00 00\": SELECT returned 6A82 (not found"),
        "{err}"
    );
    // Without --reader the probe finds no reader with that applet.
    let err = iotsafe_err(&["--aid", "A000000030", "info"]);
    assert!(err.contains("6A82"), "{err}");
}

#[test]
fn wrong_cla_style_is_reported() {
    let mut env = Env::new();
    env.insert(0);
    env.faults(0, "strict-cla 80");
    let err = iotsafe_err(&["--cla", "00", "info"]);
    assert!(err.contains("6E00 (class not supported"), "{err}");
    iotsafe_ok(&["--cla", "80", "info"]);
    iotsafe_ok(&["--cla", "81", "--channel", "open", "key", "public"]);
    env.faults(0, "strict-cla 00");
    iotsafe_ok(&["--cla", "00", "info"]);
    let err = iotsafe_err(&["info"]);
    assert!(err.contains("6E00"), "{err}");
    // Basic channel without MANAGE CHANNEL works too.
    iotsafe_ok(&["--cla", "00", "--channel", "0", "key", "public"]);
}

#[test]
fn missing_object_ids_are_named() {
    let mut env = Env::new();
    env.insert(0);
    let err = iotsafe_err(&["key", "public", "--id", "09"]);
    assert!(err.contains("public key 09 not found on the card"), "{err}");
    let err = iotsafe_err(&["sign", "--key", "09", "--digest", &"00".repeat(32)]);
    assert!(err.contains("private key 09 not found on the card"), "{err}");
    let err = iotsafe_err(&["cert", "read", "--id", "0A"]);
    assert!(err.contains("file 0A not found on the card"), "{err}");
    let err = iotsafe_err(&["sign", "--digest", "0011"]);
    assert!(err.contains("digest must be 32 bytes"), "{err}");
}

#[test]
fn certificate_shorter_than_declared_size() {
    let mut env = Env::new();
    let dir = env.insert(0);
    let real = std::fs::metadata(dir.join("file-02.bin")).unwrap().len();
    env.faults(0, &format!("declare-size 02 {}", real + 100));
    let err = iotsafe_err(&["cert", "read"]);
    assert!(
        err.contains(&format!("file 02 is shorter than its declared size: declared {} bytes, got {real}", real + 100)),
        "{err}"
    );
}

#[test]
fn unknown_signature_format_and_status_words() {
    let mut env = Env::new();
    env.insert(0);
    let digest = "ab".repeat(32);
    env.faults(0, "sig junk");
    let err = iotsafe_err(&["sign", "--digest", &digest]);
    assert!(err.contains("unknown signature format from card: 33050102030405"), "{err}");
    env.faults(0, "sw 2B 6985");
    let err = iotsafe_err(&["sign", "--digest", &digest]);
    assert!(
        err.contains("COMPUTE SIGNATURE UPDATE (private key 01) failed: 6985 (conditions of use not satisfied)"),
        "{err}"
    );
    // The session was closed despite the failure: signing works again.
    env.faults(0, "");
    iotsafe_ok(&["sign", "--digest", &digest]);
}

#[test]
fn truncated_responses_are_errors() {
    let mut env = Env::new();
    env.insert(0);
    env.faults(0, "cut CD 1");
    let err = iotsafe_err(&["key", "public"]);
    assert!(err.contains("no status word (truncated?)"), "{err}");
    env.faults(0, "truncate CD 10");
    let err = iotsafe_err(&["key", "public"]);
    assert!(err.contains("malformed"), "{err}");
    // Short READ FILE answers are legal (wolfSSL advances by what it got):
    // the helper must keep reading and still return the exact file.
    env.faults(0, "truncate B0 5");
    let der = iotsafe_ok(&["cert", "read", "--format", "der"]).stdout;
    assert_eq!(der, std::fs::read(env.card_dir(0).join("file-02.bin")).unwrap());
}

#[test]
fn transport_quirks_t0_6cxx_and_split_object_list() {
    let mut env = Env::new();
    env.insert(0);
    let plain = iotsafe_ok(&["info"]).text();
    env.faults(0, "t0\nwrong-le\nlist-chunk 17");
    let quirky = iotsafe_ok(&["info"]).text();
    assert_eq!(plain, quirky);
    let der = iotsafe_ok(&["cert", "read", "--format", "der"]).stdout;
    assert!(X509::from_der(&der).is_ok());
}

#[test]
fn helper_errors_without_card_tools() {
    // Argument errors need no pcscd at all.
    let err = iotsafe_err(&["--aid", "zz", "info"]);
    assert!(err.contains("AID \"zz\" is not hex"), "{err}");
    let out = iotsafe(&["--cla", "40", "info"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("invalid value '40'"), "{}", out.stderr);
}
