//! Factory provisioning of a simulated card: the slot map wolfSSL and the
//! Thales PKCS#11 use (key 01, client certificate file 02).

use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Builder, X509NameBuilder};

use crate::store::Store;
use crate::SimError;

pub const KEY_ID: u8 = 0x01;
pub const CERT_ID: u8 = 0x02;

fn ossl(e: openssl::error::ErrorStack) -> SimError {
    SimError(format!("OpenSSL: {e}"))
}

/// Self-signed certificate for `key` with CN and DNS SAN `name`.
pub fn self_signed(key: &PKey<Private>, name: &str) -> Result<Vec<u8>, SimError> {
    let mut n = X509NameBuilder::new().map_err(ossl)?;
    n.append_entry_by_nid(Nid::COMMONNAME, name).map_err(ossl)?;
    let n = n.build();
    let mut b = X509Builder::new().map_err(ossl)?;
    b.set_version(2).map_err(ossl)?;
    let serial = BigNum::from_u32(1).and_then(|bn| bn.to_asn1_integer()).map_err(ossl)?;
    b.set_serial_number(&serial).map_err(ossl)?;
    b.set_subject_name(&n).map_err(ossl)?;
    b.set_issuer_name(&n).map_err(ossl)?;
    b.set_pubkey(key).map_err(ossl)?;
    let not_before = Asn1Time::days_from_now(0).map_err(ossl)?;
    let not_after = Asn1Time::days_from_now(3650).map_err(ossl)?;
    b.set_not_before(&not_before).map_err(ossl)?;
    b.set_not_after(&not_after).map_err(ossl)?;
    let san = SubjectAlternativeName::new().dns(name).build(&b.x509v3_context(None, None)).map_err(ossl)?;
    b.append_extension(san).map_err(ossl)?;
    b.sign(key, MessageDigest::sha256()).map_err(ossl)?;
    b.build().to_der().map_err(ossl)
}

/// Creates key 01 ("IOTSAFE_KEY") and a self-signed certificate for it in
/// file 02 ("CLIENT_CERT"), replacing what was there.
pub fn provision(dir: &Path, name: &str) -> Result<(), SimError> {
    let mut store = Store::open(dir)?;
    store.generate_key(&[KEY_ID], Some(b"IOTSAFE_KEY"))?;
    let key = store
        .keys
        .get(&vec![KEY_ID])
        .map(|k| k.key.clone())
        .ok_or_else(|| SimError("key 01 vanished after generation".into()))?;
    let pkey = PKey::from_ec_key(key).map_err(ossl)?;
    let cert = self_signed(&pkey, name)?;
    store.put_file(&[CERT_ID], &cert, Some(b"CLIENT_CERT"))
}
