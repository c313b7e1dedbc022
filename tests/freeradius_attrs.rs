//! Pins made from a certificate must match what FreeRADIUS 3.2.1 really reported for it.
//!
//! Fixtures: `tests/fixtures/freeradius-attrs/<case>/{chain.pem,attributes.json}`, captured
//! byte-exact from radiusd's post-auth (see the README there). No radiusd needed here.

use std::path::{Path, PathBuf};

use openssl::x509::X509;
use rlm_rust::pki::{FreeradiusAttrs, Pin};
use rlm_rust::presented::{key_id_eq, PresentedCert};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/freeradius-attrs")
}

/// One captured authentication: the chain the client sent and the attributes radiusd made.
struct Case {
    name: String,
    leaf: X509,
    issuer: X509,
    attrs: Vec<(String, String)>,
}

impl Case {
    fn load(dir: &Path) -> Case {
        let pem = std::fs::read(dir.join("chain.pem")).expect("chain.pem");
        let mut certs = X509::stack_from_pem(&pem).expect("parse chain.pem");
        assert_eq!(certs.len(), 2, "{}: leaf + issuing CA expected", dir.display());
        let issuer = certs.pop().expect("issuer");
        let leaf = certs.pop().expect("leaf");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("attributes.json")).expect("attributes.json"))
                .expect("attributes.json is JSON");
        let attrs = json
            .as_array()
            .expect("array")
            .iter()
            .map(|e| (e["attr"].as_str().expect("attr").to_string(), e["value"].as_str().expect("value").to_string()))
            .collect();
        Case { name: dir.file_name().unwrap().to_string_lossy().into_owned(), leaf, issuer, attrs }
    }

    fn one(&self, attr: &str) -> Option<&str> {
        let mut it = self.attrs.iter().filter(|(a, _)| a == attr);
        let v = it.next().map(|(_, v)| v.as_str());
        assert!(it.next().is_none(), "{}: {attr} repeats", self.name);
        v
    }

    fn all(&self, attr: &str) -> Vec<&str> {
        self.attrs.iter().filter(|(a, _)| a == attr).map(|(_, v)| v.as_str()).collect()
    }

    fn with_presented<R>(&self, f: impl FnOnce(&PresentedCert<'_>) -> R) -> R {
        let sans = self.all("TLS-Client-Cert-Subject-Alt-Name-Dns");
        let p = PresentedCert {
            serial: self.one("TLS-Client-Cert-Serial"),
            subject: self.one("TLS-Client-Cert-Subject"),
            issuer: self.one("TLS-Client-Cert-Issuer"),
            valid_since: self.one("TLS-Client-Cert-Valid-Since"),
            expiration: self.one("TLS-Client-Cert-Expiration"),
            authority_key_id: self.one("TLS-Client-Cert-X509v3-Authority-Key-Identifier"),
            san_dns: &sans,
            ca_serial: self.one("TLS-Cert-Serial"),
            ca_subject: self.one("TLS-Cert-Subject"),
            ca_issuer: self.one("TLS-Cert-Issuer"),
            ca_valid_since: self.one("TLS-Cert-Valid-Since"),
            ca_expiration: self.one("TLS-Cert-Expiration"),
        };
        f(&p)
    }

    fn pin(&self) -> Pin {
        Pin::new(&self.leaf, &self.issuer).expect("pin")
    }
}

fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("chain.pem").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "fixtures missing: {dirs:?}");
    dirs.iter().map(|d| Case::load(d)).collect()
}

#[test]
fn every_captured_certificate_matches_its_own_pin() {
    for case in cases() {
        assert!(case.with_presented(|p| p.first_missing()).is_none(), "{}: attributes incomplete", case.name);
        let pin = case.pin();
        assert!(
            case.with_presented(|p| p.matches(&pin)),
            "{}: the pin of chain.pem does not match what FreeRADIUS reported",
            case.name
        );
    }
}

#[test]
fn no_captured_certificate_matches_another_ones_pin() {
    let cases = cases();
    for a in &cases {
        for b in &cases {
            if a.name != b.name {
                let pin = b.pin();
                assert!(!a.with_presented(|p| p.matches(&pin)), "{} matches the pin of {}", a.name, b.name);
            }
        }
    }
}

/// The cross-domain pair: same name, same serial, same subject DN, different issuing CA.
#[test]
fn same_name_same_serial_from_another_org_does_not_match() {
    let cases = cases();
    let get = |n: &str| cases.iter().find(|c| c.name == n).expect(n);
    let (legit, forged) = (get("car54-cars"), get("car54-meters"));
    assert_eq!(legit.one("TLS-Client-Cert-Serial"), forged.one("TLS-Client-Cert-Serial"));
    assert_eq!(legit.one("TLS-Client-Cert-Subject"), forged.one("TLS-Client-Cert-Subject"));
    let pin = legit.pin();
    assert!(!forged.with_presented(|p| p.matches(&pin)));
}

/// `FreeradiusAttrs::of` (used by `rlm-rust explain`) reproduces radiusd's strings.
#[test]
fn freeradius_attrs_reproduce_the_captured_strings() {
    for case in cases() {
        for (cert, prefix) in [(&case.leaf, "TLS-Client-Cert-"), (&case.issuer, "TLS-Cert-")] {
            let mine = FreeradiusAttrs::of(cert).expect("attrs");
            let want = |a: &str| case.one(&format!("{prefix}{a}")).unwrap_or_default();
            let ctx = format!("{} {prefix}", case.name);
            assert_eq!(mine.serial, want("Serial"), "{ctx}Serial");
            assert_eq!(mine.subject, want("Subject"), "{ctx}Subject");
            assert_eq!(mine.issuer, want("Issuer"), "{ctx}Issuer");
            assert_eq!(mine.valid_since, want("Valid-Since"), "{ctx}Valid-Since");
            assert_eq!(mine.expiration, want("Expiration"), "{ctx}Expiration");
        }
        let mine = FreeradiusAttrs::of(&case.leaf).expect("attrs");
        assert_eq!(mine.san_dns, case.all("TLS-Client-Cert-Subject-Alt-Name-Dns"), "{} SANs", case.name);
        let aki = case.one("TLS-Client-Cert-X509v3-Authority-Key-Identifier").expect("AKI");
        let key_id = case.leaf.authority_key_id().expect("AKI ext");
        assert!(key_id_eq(aki, key_id.as_slice()), "{}: key id of {aki:?}", case.name);
        if !aki.contains('\n') {
            assert_eq!(mine.authority_key_id, aki, "{} AKI", case.name);
        }
    }
}

/// The AKI with issuer and serial really is printed on three lines with a `keyid:` prefix.
#[test]
fn multi_line_aki_is_what_freeradius_prints() {
    let cases = cases();
    let c = cases.iter().find(|c| c.name == "car55-akiissuer").expect("car55");
    let aki = c.one("TLS-Client-Cert-X509v3-Authority-Key-Identifier").unwrap();
    let lines: Vec<&str> = aki.lines().collect();
    assert_eq!(lines.len(), 3, "{aki:?}");
    assert!(lines[0].starts_with("keyid:"), "{aki:?}");
    assert!(lines[1].starts_with("DirName:"), "{aki:?}");
    assert!(lines[2].starts_with("serial:"), "{aki:?}");
}
