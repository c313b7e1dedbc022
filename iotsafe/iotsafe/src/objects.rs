//! IoT SAFE object records (GET DATA) and applet information.
//!
//! Records are `C1` private key, `C2` public key, `C3` file, `C4` secret.
//! Applets differ (research brief section 1): some put one object per
//! record, some several objects in one record, inner order varies, unknown
//! tags appear. So: parse by the outer length, accept any inner order,
//! skip unknown tags, and start a new object when an id or label repeats.

use std::fmt;

use crate::error::{Error, Result};
use crate::tlv::{self, TlvIter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    PrivateKey,
    PublicKey,
    File,
    Secret,
}

impl ObjectKind {
    pub fn from_record_tag(tag: u8) -> Option<Self> {
        match tag {
            0xC1 => Some(ObjectKind::PrivateKey),
            0xC2 => Some(ObjectKind::PublicKey),
            0xC3 => Some(ObjectKind::File),
            0xC4 => Some(ObjectKind::Secret),
            _ => None,
        }
    }

    pub fn record_tag(self) -> u8 {
        match self {
            ObjectKind::PrivateKey => 0xC1,
            ObjectKind::PublicKey => 0xC2,
            ObjectKind::File => 0xC3,
            ObjectKind::Secret => 0xC4,
        }
    }

    /// Tag carrying the object id in commands and records (84/85/83/86).
    pub fn id_tag(self) -> u8 {
        match self {
            ObjectKind::PrivateKey => 0x84,
            ObjectKind::PublicKey => 0x85,
            ObjectKind::File => 0x83,
            ObjectKind::Secret => 0x86,
        }
    }

    /// Tag carrying the object label (74/75/73/76).
    pub fn label_tag(self) -> u8 {
        match self {
            ObjectKind::PrivateKey => 0x74,
            ObjectKind::PublicKey => 0x75,
            ObjectKind::File => 0x73,
            ObjectKind::Secret => 0x76,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::PrivateKey => "private key",
            ObjectKind::PublicKey => "public key",
            ObjectKind::File => "file",
            ObjectKind::Secret => "secret",
        }
    }
}

/// One object as described by the card. Absent fields stay `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub kind: ObjectKind,
    pub id: Vec<u8>,
    pub label: Vec<u8>,
    pub access: Option<u8>,
    pub state: Option<u8>,
    pub key_type: Option<u8>,
    pub key_usage: Option<u8>,
    pub crypto_functions: Option<u8>,
    pub signature_algos: Option<u8>,
    pub hash_algos: Option<u16>,
    pub key_agreement: Option<u8>,
    pub file_usage: Option<u8>,
    /// Declared file size in bytes (tag 20, big-endian as W/T read it).
    pub file_size: Option<u16>,
}

impl ObjectInfo {
    fn empty(kind: ObjectKind) -> Self {
        ObjectInfo {
            kind,
            id: Vec::new(),
            label: Vec::new(),
            access: None,
            state: None,
            key_type: None,
            key_usage: None,
            crypto_functions: None,
            signature_algos: None,
            hash_algos: None,
            key_agreement: None,
            file_usage: None,
            file_size: None,
        }
    }

    pub fn id_hex(&self) -> String {
        hex::encode_upper(&self.id)
    }

    pub fn label_text(&self) -> String {
        String::from_utf8_lossy(&self.label).into_owned()
    }

    /// Key size in bits derived from the key type, where known.
    pub fn key_bits(&self) -> Option<u16> {
        match self.key_type? {
            0x03 => Some(2048),
            0x13 | 0x14 | 0x23 | 0x24 => Some(256),
            0xA0 => None,
            _ => None,
        }
    }
}

/// Words for tag 4B.
pub fn key_type_name(t: u8) -> &'static str {
    match t {
        0x03 => "RSA-2048",
        0x13 => "EC P-256 (persistent)",
        0x14 => "EC P-256 (volatile)",
        0x23 => "EC brainpoolP256r1 (persistent)",
        0x24 => "EC brainpoolP256r1 (volatile)",
        0xA0 => "HMAC",
        _ => "unknown key type",
    }
}

/// Words for tag 4E.
pub fn key_usage_name(u: u8) -> &'static str {
    match u {
        0x01 => "general",
        0x02 => "TLS 1.2 CertificateVerify",
        0x03 => "TLS 1.3 CertificateVerify",
        _ => "unknown usage",
    }
}

/// Words for tag 21.
pub fn file_usage_name(u: u8) -> &'static str {
    match u {
        0x01 => "general",
        0x02 => "X.509 certificate",
        _ => "unknown usage",
    }
}

/// Words for the bit masks of tags 61 (crypto functions) and 60 (access).
pub fn function_names(mask: u8) -> String {
    let names = [(0x01, "sign"), (0x02, "keygen"), (0x04, "key agreement"), (0x08, "key derivation")];
    join_bits(mask, &names)
}

pub fn access_names(mask: u8) -> String {
    join_bits(mask, &[(0x01, "read"), (0x02, "update")])
}

fn join_bits(mask: u8, names: &[(u8, &str)]) -> String {
    let parts: Vec<&str> = names.iter().filter(|(bit, _)| mask & bit != 0).map(|(_, n)| *n).collect();
    if parts.is_empty() {
        format!("none ({mask:02X})")
    } else {
        parts.join(", ")
    }
}

fn single_byte(tag: u8, value: &[u8]) -> Result<u8> {
    match value {
        [b] => Ok(*b),
        _ => Err(Error::Malformed(format!("tag {tag:02X} should hold 1 byte, holds {}", value.len()))),
    }
}

/// Parses the inner TLVs of one record; may yield several objects.
pub fn parse_record(kind: ObjectKind, body: &[u8]) -> Result<Vec<ObjectInfo>> {
    let mut out = Vec::new();
    let mut cur = ObjectInfo::empty(kind);
    let mut seen_id = false;
    let mut seen_label = false;
    for item in TlvIter::new(body) {
        let t = item.map_err(Error::tlv(format!("{} record", kind.name())))?;
        let v = t.value;
        // A repeated id or label means the next object in a merged record.
        let starts_new = (t.tag == kind.id_tag() && seen_id) || (t.tag == kind.label_tag() && seen_label && seen_id);
        if starts_new {
            out.push(std::mem::replace(&mut cur, ObjectInfo::empty(kind)));
            seen_id = false;
            seen_label = false;
        }
        match t.tag {
            tag if tag == kind.id_tag() => {
                cur.id = v.to_vec();
                seen_id = true;
            }
            tag if tag == kind.label_tag() => {
                cur.label = v.to_vec();
                seen_label = true;
            }
            0x60 => cur.access = Some(single_byte(t.tag, v)?),
            0x4A => cur.state = Some(single_byte(t.tag, v)?),
            0x4B => cur.key_type = Some(single_byte(t.tag, v)?),
            0x4E => cur.key_usage = Some(single_byte(t.tag, v)?),
            0x61 => cur.crypto_functions = Some(single_byte(t.tag, v)?),
            0x92 => cur.signature_algos = Some(single_byte(t.tag, v)?),
            // Hash algorithm is 2 bytes per spec; some applets send 1.
            0x91 => {
                cur.hash_algos = Some(match v {
                    [b] => u16::from(*b),
                    [h, l] => u16::from_be_bytes([*h, *l]),
                    _ => return Err(Error::Malformed(format!("tag 91 holds {} bytes", v.len()))),
                })
            }
            0x6F => cur.key_agreement = Some(single_byte(t.tag, v)?),
            0x21 => cur.file_usage = Some(single_byte(t.tag, v)?),
            0x20 => {
                cur.file_size = Some(match v {
                    [b] => u16::from(*b),
                    [h, l] => u16::from_be_bytes([*h, *l]),
                    _ => return Err(Error::Malformed(format!("file size tag 20 holds {} bytes", v.len()))),
                })
            }
            _ => {} // unknown or vendor tag: tolerated
        }
    }
    if seen_id || seen_label || cur != ObjectInfo::empty(kind) {
        out.push(cur);
    }
    Ok(out)
}

/// Parses a complete (already reassembled) object list.
pub fn parse_object_list(data: &[u8]) -> Result<Vec<ObjectInfo>> {
    let mut out = Vec::new();
    for item in TlvIter::new(data) {
        let t = item.map_err(Error::tlv("object list"))?;
        if let Some(kind) = ObjectKind::from_record_tag(t.tag) {
            out.extend(parse_record(kind, t.value)?);
        }
    }
    Ok(out)
}

/// Parses a single-object GET DATA answer. Some applets omit the outer
/// record tag (Thales `getFileLength`), so accept the bare body too.
pub fn parse_single(kind: ObjectKind, data: &[u8]) -> Result<ObjectInfo> {
    let body = match tlv::find(data, kind.record_tag()) {
        Ok(Some(body)) => body,
        _ => data,
    };
    parse_record(kind, body)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Malformed(format!("empty {} record", kind.name())))
}

/// GET DATA P1=00: what the applet says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppletInfo {
    pub version: Vec<u8>,
    pub applet_id: Vec<u8>,
    pub max_files: Option<u8>,
    pub max_private_keys: Option<u8>,
    pub max_public_keys: Option<u8>,
    pub max_secrets: Option<u8>,
    pub max_sessions: Option<u8>,
    pub crypto_functions: Option<u8>,
    pub hash_algos: Vec<u8>,
    pub signature_algos: Option<u8>,
    pub key_agreement: Option<u8>,
    pub kdf: Option<u8>,
}

impl AppletInfo {
    pub fn parse(data: &[u8]) -> Result<Self> {
        let mut info = AppletInfo::default();
        for item in TlvIter::new(data) {
            let t = item.map_err(Error::tlv("applet information"))?;
            let byte = || t.value.first().copied();
            match t.tag {
                0x10 => info.version = t.value.to_vec(),
                0x11 => info.applet_id = t.value.to_vec(),
                0xB1 => info.max_files = byte(),
                0xB2 => info.max_private_keys = byte(),
                0xB3 => info.max_public_keys = byte(),
                0xB4 => info.max_secrets = byte(),
                0xB7 => info.max_sessions = byte(),
                0x90 => info.crypto_functions = byte(),
                0x91 => info.hash_algos = t.value.to_vec(),
                0x92 => info.signature_algos = byte(),
                0x93 => info.key_agreement = byte(),
                0x94 => info.kdf = byte(),
                _ => {}
            }
        }
        Ok(info)
    }
}

fn opt(v: Option<u8>) -> String {
    v.map_or_else(|| "-".to_string(), |b| b.to_string())
}

impl fmt::Display for AppletInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "version: {}", hex::encode_upper(&self.version))?;
        let id = &self.applet_id;
        if !id.is_empty() && id.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            writeln!(f, "applet id: {}", String::from_utf8_lossy(id))?;
        } else {
            writeln!(f, "applet id: {}", hex::encode_upper(id))?;
        }
        writeln!(
            f,
            "capacity: files {} private keys {} public keys {} secrets {} sessions {}",
            opt(self.max_files),
            opt(self.max_private_keys),
            opt(self.max_public_keys),
            opt(self.max_secrets),
            opt(self.max_sessions)
        )?;
        if let Some(m) = self.crypto_functions {
            writeln!(f, "crypto functions: {}", function_names(m))?;
        }
        Ok(())
    }
}

impl fmt::Display for ObjectInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} id={} label={:?}", self.kind.name(), self.id_hex(), self.label_text())?;
        if let Some(t) = self.key_type {
            write!(f, " type={} ({t:02X})", key_type_name(t))?;
        }
        if let Some(bits) = self.key_bits() {
            write!(f, " size={bits} bits")?;
        }
        if let Some(u) = self.key_usage {
            write!(f, " usage={} ({u:02X})", key_usage_name(u))?;
        }
        if let Some(m) = self.crypto_functions {
            write!(f, " functions={}", function_names(m))?;
        }
        if let Some(u) = self.file_usage {
            write!(f, " usage={} ({u:02X})", file_usage_name(u))?;
        }
        if let Some(s) = self.file_size {
            write!(f, " size={s} bytes")?;
        }
        if let Some(a) = self.access {
            write!(f, " access={}", access_names(a))?;
        }
        if let Some(s) = self.state {
            write!(f, " state={}", if s == 0x01 { "activated" } else { "deactivated" })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The object list the research simulator returned through real pcscd
    // (brief section 1, "Verified example exchanges").
    const LIST: &str = "C129740B494F54534146455F4B4559840101600101 4A0101 4B0113 4E0102 610107 920104 9102 0001 6F0101\
                        C229750B494F54534146455F4B4559850101600101 4A0101 4B0113 4E0102 610107 920104 9102 0001 6F0101\
                        C31D730B434C49454E545F43455254830102600101 4A0101 210102 2002013D\
                        C319730743415F43455254830103600101 4A0101 210102 2002013B";

    fn bytes(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn parses_reference_object_list() {
        let objs = parse_object_list(&bytes(LIST)).unwrap();
        assert_eq!(objs.len(), 4);
        let key = &objs[0];
        assert_eq!(key.kind, ObjectKind::PrivateKey);
        assert_eq!(key.id, vec![1]);
        assert_eq!(key.label_text(), "IOTSAFE_KEY");
        assert_eq!(key.key_type, Some(0x13));
        assert_eq!(key.key_bits(), Some(256));
        assert_eq!(key.hash_algos, Some(1));
        assert_eq!(objs[1].kind, ObjectKind::PublicKey);
        let cert = &objs[2];
        assert_eq!(cert.kind, ObjectKind::File);
        assert_eq!(cert.id, vec![2]);
        assert_eq!(cert.file_size, Some(317));
        assert_eq!(cert.file_usage, Some(2));
        assert_eq!(objs[3].label_text(), "CA_CERT");
        assert_eq!(objs[3].file_size, Some(0x13B));
        let shown = key.to_string();
        assert!(shown.contains("private key id=01 label=\"IOTSAFE_KEY\""), "{shown}");
        assert!(shown.contains("EC P-256 (persistent)"), "{shown}");
        assert!(shown.contains("size=256 bits"), "{shown}");
    }

    #[test]
    fn splits_merged_record_and_tolerates_order() {
        // One C1 holding two keys (Thales style), id before label, plus an
        // unknown vendor tag.
        let rec = tlv::encode(0xC1, &bytes("840101 7401 41 4B0113 EE02FFFF 840102 7401 42 4B0114"));
        let objs = parse_object_list(&rec).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!((objs[0].id.clone(), objs[0].label_text()), (vec![1], "A".into()));
        assert_eq!((objs[1].id.clone(), objs[1].label_text()), (vec![2], "B".into()));
        assert_eq!(objs[1].key_type, Some(0x14));
    }

    #[test]
    fn single_record_with_or_without_outer_tag() {
        let body = bytes("730443455254 830102 2002 0200");
        let with = tlv::encode(0xC3, &body);
        assert_eq!(parse_single(ObjectKind::File, &with).unwrap().file_size, Some(512));
        assert_eq!(parse_single(ObjectKind::File, &body).unwrap().file_size, Some(512));
        assert!(parse_single(ObjectKind::File, &[]).is_err());
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let err = parse_object_list(&bytes("C105 840101")).unwrap_err().to_string();
        assert!(err.contains("object list"), "{err}");
        let err = parse_object_list(&bytes("C103 200301")).unwrap_err().to_string();
        assert!(err.contains("private key record"), "{err}");
        let err = parse_object_list(&bytes("C305 830102 2000")).unwrap_err().to_string();
        assert!(err.contains("file size"), "{err}");
    }

    #[test]
    fn applet_info_display() {
        let data = bytes("100101 110F53494D2D494F54534146452D53494D B10108 B20104 900107 91020001");
        let info = AppletInfo::parse(&data).unwrap();
        assert_eq!(info.max_files, Some(8));
        let text = info.to_string();
        assert!(text.contains("applet id: SIM-IOTSAFE-SIM"), "{text}");
        assert!(text.contains("crypto functions: sign, keygen, key agreement"), "{text}");
    }
}
