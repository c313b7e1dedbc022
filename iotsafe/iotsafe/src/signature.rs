//! The computed-signature tag 33 and ECDSA signature encodings.
//!
//! Applets answer COMPUTE SIGNATURE UPDATE in three ways (brief section 1):
//! `33 00 40 r||s` (two-byte length, wolfSSL default), `33 40 r||s`
//! (one-byte length), or a DER ECDSA-Sig-Value inside tag 33 (Orange notes
//! "some applets return ASN.1"). All are normalised to 64-byte `r||s`.

use crate::error::{Error, Result};

/// P-256 `r||s` length.
pub const RAW_LEN: usize = 64;

/// Extracts `r||s` from a COMPUTE SIGNATURE answer.
pub fn parse_signature_response(data: &[u8]) -> Result<[u8; RAW_LEN]> {
    let unknown = || {
        Error::Malformed(format!(
            "unknown signature format from card: {}",
            hex::encode_upper(&data[..data.len().min(16)])
        ))
    };
    let body = match data {
        [0x33, 0x00, hi, rest @ ..] if usize::from(*hi) == rest.len() => rest,
        [0x33, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        [0x33, len, rest @ ..] if *len < 0x80 && usize::from(*len) == rest.len() => rest,
        _ => return Err(unknown()),
    };
    if body.len() == RAW_LEN {
        let mut out = [0u8; RAW_LEN];
        out.copy_from_slice(body);
        return Ok(out);
    }
    if body.first() == Some(&0x30) {
        return der_to_raw(body)
            .map_err(|e| Error::Malformed(format!("card returned a DER signature that does not parse: {e}")));
    }
    Err(unknown())
}

/// DER ECDSA-Sig-Value -> 64-byte `r||s`.
pub fn der_to_raw(der: &[u8]) -> Result<[u8; RAW_LEN]> {
    let sig = openssl::ecdsa::EcdsaSig::from_der(der)?;
    let r = sig.r().to_vec_padded(32)?;
    let s = sig.s().to_vec_padded(32)?;
    let mut out = [0u8; RAW_LEN];
    out[..32].copy_from_slice(&r);
    out[32..].copy_from_slice(&s);
    Ok(out)
}

/// 64-byte `r||s` -> DER ECDSA-Sig-Value (what X.509/CSR and OpenSSL want).
pub fn raw_to_der(raw: &[u8; RAW_LEN]) -> Result<Vec<u8>> {
    let r = openssl::bn::BigNum::from_slice(&raw[..32])?;
    let s = openssl::bn::BigNum::from_slice(&raw[32..])?;
    Ok(openssl::ecdsa::EcdsaSig::from_private_components(r, s)?.to_der()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; 64] {
        let mut raw = [0u8; 64];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7).wrapping_add(1);
        }
        raw
    }

    #[test]
    fn accepts_all_three_encodings() {
        let raw = sample();
        let mut two = vec![0x33, 0x00, 0x40];
        two.extend_from_slice(&raw);
        let mut one = vec![0x33, 0x40];
        one.extend_from_slice(&raw);
        let der = raw_to_der(&raw).unwrap();
        let mut wrapped = vec![0x33, der.len() as u8];
        wrapped.extend_from_slice(&der);
        assert_eq!(parse_signature_response(&two).unwrap(), raw);
        assert_eq!(parse_signature_response(&one).unwrap(), raw);
        assert_eq!(parse_signature_response(&wrapped).unwrap(), raw);
    }

    #[test]
    fn der_round_trip_keeps_leading_zeroes() {
        let mut raw = sample();
        raw[0] = 0;
        raw[1] = 0;
        raw[32] = 0x80; // needs a 00 pad byte in DER
        let der = raw_to_der(&raw).unwrap();
        assert_eq!(der_to_raw(&der).unwrap(), raw);
    }

    #[test]
    fn rejects_unknown_and_truncated_formats() {
        for bad in [&b""[..], &[0x33, 0x05, 1, 2, 3, 4, 5], &[0x33, 0x40, 1, 2], &[0x9E, 0x20], &[0x33, 0x00, 0x40, 1]]
        {
            let err = parse_signature_response(bad).unwrap_err().to_string();
            assert!(err.contains("unknown signature format"), "{err}");
        }
        let err = parse_signature_response(&[0x33, 0x03, 0x30, 0x01, 0x00]).unwrap_err().to_string();
        assert!(err.contains("DER signature"), "{err}");
    }
}
