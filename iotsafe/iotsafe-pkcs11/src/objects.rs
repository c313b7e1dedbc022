//! PKCS#11 objects built from what the IoT SAFE applet reports, with the
//! attributes libp11 0.4.12 reads (research brief section 4).

use cryptoki_sys::*;
use openssl::x509::X509;

use iotsafe::objects::{ObjectInfo, ObjectKind};

/// DER OID of prime256v1: the CKA_EC_PARAMS of every IoT SAFE P-256 key.
pub const EC_PARAMS_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub class: CK_OBJECT_CLASS,
    /// IoT SAFE private key id, for signing.
    pub key_id: Option<Vec<u8>>,
    pub attrs: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
}

pub fn ulong(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

pub fn bool_attr(v: bool) -> Vec<u8> {
    vec![if v { CK_TRUE } else { CK_FALSE }]
}

/// CKA_EC_POINT is the point wrapped in a DER OCTET STRING (`04 41 04..`).
pub fn ec_point_attr(point: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04, point.len() as u8];
    out.extend_from_slice(point);
    out
}

impl Object {
    pub fn attr(&self, t: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        self.attrs.iter().find(|(at, _)| *at == t).map(|(_, v)| v.as_slice())
    }

    /// True if every (type, value) of a search template matches.
    pub fn matches(&self, template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> bool {
        template.iter().all(|(t, v)| self.attr(*t) == Some(v.as_slice()))
    }
}

fn common(class: CK_OBJECT_CLASS, id: &[u8], label: &[u8]) -> Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)> {
    vec![
        (CKA_CLASS, ulong(class)),
        (CKA_ID, id.to_vec()),
        (CKA_LABEL, label.to_vec()),
        (CKA_TOKEN, bool_attr(true)),
        (CKA_PRIVATE, bool_attr(false)),
        (CKA_MODIFIABLE, bool_attr(false)),
    ]
}

pub fn private_key(info: &ObjectInfo, point: Option<&[u8]>) -> Object {
    let mut attrs = common(CKO_PRIVATE_KEY, &info.id, &info.label);
    attrs.extend([
        (CKA_KEY_TYPE, ulong(CKK_EC)),
        (CKA_SIGN, bool_attr(true)),
        (CKA_DECRYPT, bool_attr(false)),
        (CKA_DERIVE, bool_attr(false)),
        (CKA_SENSITIVE, bool_attr(true)),
        (CKA_EXTRACTABLE, bool_attr(false)),
        (CKA_ALWAYS_SENSITIVE, bool_attr(true)),
        (CKA_NEVER_EXTRACTABLE, bool_attr(true)),
        (CKA_ALWAYS_AUTHENTICATE, bool_attr(false)),
        (CKA_EC_PARAMS, EC_PARAMS_P256.to_vec()),
    ]);
    if let Some(p) = point {
        attrs.push((CKA_EC_POINT, ec_point_attr(p)));
    }
    Object { class: CKO_PRIVATE_KEY, key_id: Some(info.id.clone()), attrs }
}

pub fn public_key(info: &ObjectInfo, point: &[u8]) -> Object {
    let mut attrs = common(CKO_PUBLIC_KEY, &info.id, &info.label);
    attrs.extend([
        (CKA_KEY_TYPE, ulong(CKK_EC)),
        (CKA_VERIFY, bool_attr(true)),
        (CKA_ENCRYPT, bool_attr(false)),
        (CKA_EC_PARAMS, EC_PARAMS_P256.to_vec()),
        (CKA_EC_POINT, ec_point_attr(point)),
    ]);
    Object { class: CKO_PUBLIC_KEY, key_id: None, attrs }
}

/// A certificate object. Its CKA_ID is the id of the key pair whose public
/// key it certifies (libp11 pairs key and certificate by CKA_ID, while
/// IoT SAFE keeps them under unrelated ids, e.g. key 01 / file 02).
pub fn certificate(file: &ObjectInfo, der: &[u8], key_points: &[(Vec<u8>, Vec<u8>)]) -> Option<Object> {
    let cert = X509::from_der(der).ok()?;
    let cert_point = cert.public_key().ok().and_then(|k| k.ec_key().ok()).and_then(|k| {
        let group = k.group();
        let mut ctx = openssl::bn::BigNumContext::new().ok()?;
        k.public_key().to_bytes(group, openssl::ec::PointConversionForm::UNCOMPRESSED, &mut ctx).ok()
    });
    let id = key_points
        .iter()
        .find(|(_, p)| Some(p) == cert_point.as_ref())
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| file.id.clone());
    let mut attrs = common(CKO_CERTIFICATE, &id, &file.label);
    attrs.extend([
        (CKA_CERTIFICATE_TYPE, ulong(CKC_X_509)),
        (CKA_TRUSTED, bool_attr(false)),
        (CKA_VALUE, der.to_vec()),
    ]);
    if let Ok(subject) = cert.subject_name().to_der() {
        attrs.push((CKA_SUBJECT, subject));
    }
    if let Ok(issuer) = cert.issuer_name().to_der() {
        attrs.push((CKA_ISSUER, issuer));
    }
    if let Ok(serial) = cert.serial_number().to_bn().and_then(|bn| bn.to_vec_padded(1)) {
        let mut content = serial;
        if content.first().is_some_and(|b| b & 0x80 != 0) {
            content.insert(0, 0);
        }
        let mut der_int = vec![0x02, content.len() as u8];
        der_int.extend_from_slice(&content);
        attrs.push((CKA_SERIAL_NUMBER, der_int));
    }
    Some(Object { class: CKO_CERTIFICATE, key_id: None, attrs })
}

/// Builds the token's objects from the card's object list. `read_point`
/// and `read_file` go to the card; failures drop only that object.
pub fn build(
    list: &[ObjectInfo],
    mut read_point: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    mut read_file: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Vec<Object> {
    let mut out = Vec::new();
    let mut points: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for info in list.iter().filter(|o| o.kind == ObjectKind::PublicKey) {
        if let Some(p) = read_point(&info.id) {
            out.push(public_key(info, &p));
            points.push((info.id.clone(), p));
        }
    }
    for info in list.iter().filter(|o| o.kind == ObjectKind::PrivateKey) {
        let point = points.iter().find(|(id, _)| *id == info.id).map(|(_, p)| p.as_slice());
        out.push(private_key(info, point));
    }
    for info in list.iter().filter(|o| o.kind == ObjectKind::File) {
        if info.file_usage == Some(0x01) {
            continue; // general-purpose file, not a certificate
        }
        if let Some(der) = read_file(&info.id) {
            if let Some(cert) = certificate(info, &der, &points) {
                out.push(cert);
            }
        }
    }
    out
}

/// ECDSA input to the 32 bytes the card signs as a "SHA-256" digest. For
/// P-256, ECDSA uses the leftmost 256 bits of the hash: longer digests are
/// truncated; shorter ones are left-padded, which keeps their integer value.
pub fn digest_for_card(data: &[u8]) -> Option<[u8; 32]> {
    if !(20..=64).contains(&data.len()) {
        return None;
    }
    let mut out = [0u8; 32];
    if data.len() >= 32 {
        out.copy_from_slice(&data[..32]);
    } else {
        out[32 - data.len()..].copy_from_slice(data);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: ObjectKind, id: u8, label: &str) -> ObjectInfo {
        let rec =
            [iotsafe::tlv::encode(kind.id_tag(), &[id]), iotsafe::tlv::encode(kind.label_tag(), label.as_bytes())]
                .concat();
        iotsafe::objects::parse_record(kind, &rec).unwrap().remove(0)
    }

    fn key_and_cert() -> (Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        iotsafe_sim::provision::provision(dir.path(), "d.example").unwrap();
        let store = iotsafe_sim::store::Store::open(dir.path()).unwrap();
        let key = &store.keys[&vec![1u8]].key;
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let point =
            key.public_key().to_bytes(key.group(), openssl::ec::PointConversionForm::UNCOMPRESSED, &mut ctx).unwrap();
        (point, store.files[&vec![2u8]].data.clone())
    }

    #[test]
    fn certificate_takes_the_key_id_of_its_public_key() {
        let (point, cert) = key_and_cert();
        let list = vec![
            info(ObjectKind::PrivateKey, 1, "IOTSAFE_KEY"),
            info(ObjectKind::PublicKey, 1, "IOTSAFE_KEY"),
            info(ObjectKind::File, 2, "CLIENT_CERT"),
        ];
        let objs = build(&list, |_| Some(point.clone()), |_| Some(cert.clone()));
        assert_eq!(objs.len(), 3);
        let c = objs.iter().find(|o| o.class == CKO_CERTIFICATE).unwrap();
        assert_eq!(c.attr(CKA_ID), Some(&[1u8][..]));
        assert_eq!(c.attr(CKA_LABEL), Some(&b"CLIENT_CERT"[..]));
        assert_eq!(c.attr(CKA_VALUE), Some(cert.as_slice()));
        let k = objs.iter().find(|o| o.class == CKO_PRIVATE_KEY).unwrap();
        assert_eq!(k.attr(CKA_EC_POINT).unwrap()[..3], [0x04, 0x41, 0x04]);
        assert_eq!(k.attr(CKA_KEY_TYPE), Some(ulong(CKK_EC).as_slice()));
        assert_eq!(k.attr(CKA_ALWAYS_AUTHENTICATE), Some(&[CK_FALSE][..]));
        assert!(k.matches(&[(CKA_CLASS, ulong(CKO_PRIVATE_KEY)), (CKA_ID, vec![1])]));
        assert!(!k.matches(&[(CKA_ID, vec![2])]));
        // Serial 1 encodes as DER INTEGER 02 01 01.
        assert_eq!(c.attr(CKA_SERIAL_NUMBER), Some(&[2u8, 1, 1][..]));
    }

    #[test]
    fn unmatched_certificate_keeps_file_id_and_garbage_is_skipped() {
        let (_, cert) = key_and_cert();
        let (other_point, _) = key_and_cert();
        let list = vec![
            info(ObjectKind::PublicKey, 1, "K"),
            info(ObjectKind::File, 2, "C"),
            info(ObjectKind::File, 3, "JUNK"),
        ];
        let objs = build(
            &list,
            |_| Some(other_point.clone()),
            |id| Some(if id == [2] { cert.clone() } else { vec![1, 2, 3] }),
        );
        let certs: Vec<_> = objs.iter().filter(|o| o.class == CKO_CERTIFICATE).collect();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].attr(CKA_ID), Some(&[2u8][..]));
    }

    #[test]
    fn digest_normalisation() {
        assert_eq!(digest_for_card(&[0xAA; 19]), None);
        assert_eq!(digest_for_card(&[0xAA; 65]), None);
        let d20 = digest_for_card(&[0xAA; 20]).unwrap();
        assert_eq!(&d20[..12], &[0; 12]);
        assert_eq!(&d20[12..], &[0xAA; 20]);
        let mut d48 = vec![0x11; 32];
        d48.extend([0x22; 16]);
        assert_eq!(digest_for_card(&d48).unwrap(), [0x11; 32]);
    }
}
