//! The handful of DER encoders a PKCS#10 request needs. Hand-rolled because
//! the private key never leaves the card: OpenSSL's `X509Req` builder wants
//! to sign with a local key, so we build the TBS bytes ourselves and only
//! ask the card for the signature.

fn header(tag: u8, len: usize, out: &mut Vec<u8>) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Any TLV with a definite length.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    header(tag, content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

pub fn sequence(items: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

pub fn set(items: &[&[u8]]) -> Vec<u8> {
    tlv(0x31, &items.concat())
}

/// Non-negative INTEGER from a small value.
pub fn small_int(v: u8) -> Vec<u8> {
    if v < 0x80 {
        tlv(0x02, &[v])
    } else {
        tlv(0x02, &[0, v])
    }
}

/// OBJECT IDENTIFIER from its already-encoded content bytes.
pub fn oid(content: &[u8]) -> Vec<u8> {
    tlv(0x06, content)
}

pub fn utf8_string(s: &str) -> Vec<u8> {
    tlv(0x0C, s.as_bytes())
}

pub fn octet_string(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

/// BIT STRING with zero unused bits.
pub fn bit_string(b: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(b.len() + 1);
    content.push(0);
    content.extend_from_slice(b);
    tlv(0x03, &content)
}

/// Encoded OID contents used by the CSR.
pub mod oids {
    /// 2.5.4.3 commonName
    pub const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    /// 1.2.840.113549.1.9.14 extensionRequest
    pub const EXTENSION_REQUEST: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x0E];
    /// 2.5.29.17 subjectAltName
    pub const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];
    /// 1.2.840.10045.2.1 id-ecPublicKey
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7 prime256v1
    pub const PRIME256V1: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    /// 1.2.840.10045.4.3.2 ecdsa-with-SHA256
    pub const ECDSA_WITH_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_minimal_long_form() {
        assert_eq!(tlv(0x04, &[0; 3])[..2], [0x04, 0x03]);
        assert_eq!(tlv(0x04, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(tlv(0x04, &[0; 0x100])[..4], [0x04, 0x82, 0x01, 0x00]);
    }

    #[test]
    fn integers_and_bit_strings() {
        assert_eq!(small_int(0), vec![0x02, 0x01, 0x00]);
        assert_eq!(small_int(0x80), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(bit_string(&[0xAB]), vec![0x03, 0x02, 0x00, 0xAB]);
    }
}
