//! Invariants over the IoT SAFE card-answer parsers (`iotsafe` crate), one `pub fn(&[u8])`
//! per fuzz target. A panic is a failure, under libFuzzer and under `cargo test` (the
//! iotsafe crate's `tests/fuzz_regressions.rs` includes this file).

use iotsafe::apdu::Response;
use iotsafe::objects::{
    access_names, file_usage_name, function_names, key_type_name, key_usage_name, parse_object_list, parse_record,
    parse_single, AppletInfo, ObjectInfo, ObjectKind,
};
use iotsafe::signature::{der_to_raw, parse_signature_response, raw_to_der, RAW_LEN};
use iotsafe::tlv::{self, Tlv, TlvError, TlvIter};

const KINDS: [ObjectKind; 4] = [ObjectKind::PrivateKey, ObjectKind::PublicKey, ObjectKind::File, ObjectKind::Secret];

/// `value` lies inside `data` (the parser borrows, never copies or invents bytes).
fn inside(data: &[u8], value: &[u8]) -> bool {
    let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
    let v = value.as_ptr() as usize;
    value.is_empty() || (v >= start && v + value.len() <= end)
}

/// Simple-TLV: the iterator, `parse`, `find` and `find_path` agree with each other; values
/// are in-bounds, ordered sub-slices; what parses re-encodes (minimal lengths) and parses
/// to the same TLVs. Also the APDU response split and the signature answer formats.
pub fn tlv(data: &[u8]) {
    let items: Vec<Result<Tlv<'_>, TlvError>> = TlvIter::new(data).collect();
    if let Some(pos) = items.iter().position(Result::is_err) {
        assert_eq!(pos, items.len() - 1, "the iterator went on after an error");
        match items[pos].clone().unwrap_err() {
            TlvError::MissingLength { offset, .. } | TlvError::UnsupportedLength { offset, .. } => {
                assert!(offset < data.len())
            }
            TlvError::Truncated { offset, len, available, .. } => {
                assert!(offset < data.len() && available < len && available <= data.len() - offset)
            }
        }
    }
    let ok: Vec<Tlv<'_>> = items.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    let mut last_end = data.as_ptr() as usize;
    for t in &ok {
        assert!(inside(data, t.value), "value outside the input");
        if !t.value.is_empty() {
            assert!(t.value.as_ptr() as usize >= last_end + 2, "values overlap or lack a header");
            last_end = t.value.as_ptr() as usize + t.value.len();
        }
    }
    let parsed = tlv::parse(data);
    assert_eq!(parsed.is_ok(), items.iter().all(Result::is_ok));
    if let Ok(tlvs) = &parsed {
        assert_eq!(tlvs, &ok);
        let header: usize = tlvs.iter().map(|t| t.value.len()).sum::<usize>() + 2 * tlvs.len();
        assert!(header <= data.len() && data.len() <= header + 2 * tlvs.len(), "bytes unaccounted for");
        let again: Vec<u8> = tlvs.iter().flat_map(|t| tlv::encode(t.tag, t.value)).collect();
        assert!(again.len() <= data.len(), "re-encoding grew");
        let back = tlv::parse(&again).expect("re-encoded TLVs parse");
        assert_eq!(back.len(), tlvs.len());
        for (a, b) in back.iter().zip(tlvs) {
            assert_eq!((a.tag, a.value), (b.tag, b.value));
        }
    }
    // find: the first match before any error, else the error, else None.
    for tag in [data.first().copied().unwrap_or(0), 0x34, 0x84, 0xC3] {
        let expect = items.iter().find_map(|r| match r {
            Ok(t) if t.tag == tag => Some(Ok(Some(t.value))),
            Ok(_) => None,
            Err(e) => Some(Err(e.clone())),
        });
        assert_eq!(tlv::find(data, tag), expect.unwrap_or(Ok(None)), "find({tag:02X})");
    }
    // find_path == repeated find.
    let path: Vec<u8> = data.iter().copied().take(3).collect();
    let mut manual: Result<Option<&[u8]>, TlvError> = Ok(Some(data));
    for &tag in &path {
        manual = match manual {
            Ok(Some(cur)) => tlv::find(cur, tag),
            other => other,
        };
    }
    let found = tlv::find_path(data, &path);
    assert_eq!(found, manual, "find_path({path:02X?})");
    if let Ok(Some(v)) = found {
        assert!(inside(data, v));
    }

    // APDU response: data || SW1 SW2.
    match Response::parse(data) {
        Ok(r) => {
            assert_eq!(r.data.as_slice(), &data[..data.len() - 2]);
            assert_eq!([r.sw.sw1(), r.sw.sw2()], data[data.len() - 2..]);
            let _ = r.sw.describe();
        }
        Err(_) => assert!(data.len() < 2),
    }

    // COMPUTE SIGNATURE answers: whatever is accepted is a raw r||s that survives DER.
    if let Ok(raw) = parse_signature_response(data) {
        if let Ok(der) = raw_to_der(&raw) {
            assert_eq!(der_to_raw(&der).expect("our DER parses"), raw, "r||s -> DER -> r||s changed");
        }
        let body_len = data.len() - if data.get(1).is_some_and(|b| *b == 0x00 || *b == 0x81) { 3 } else { 2 };
        if body_len == RAW_LEN {
            assert_eq!(&raw[..], &data[data.len() - RAW_LEN..], "a raw body must be returned as is");
        }
    }
    let _ = der_to_raw(data);
}

fn describe(o: &ObjectInfo) {
    let _ = (o.id_hex(), o.label_text(), o.key_bits());
    o.key_type.map(key_type_name);
    o.key_usage.map(key_usage_name);
    o.file_usage.map(file_usage_name);
    o.crypto_functions.map(function_names);
    o.access.map(access_names);
}

/// Object lists, single-object answers and applet information: no panic, records only
/// from TLV-valid input, the kinds asked for, and the text renderings work.
pub fn objects(data: &[u8]) {
    let valid = tlv::parse(data).is_ok();
    match parse_object_list(data) {
        Ok(objs) => {
            assert!(valid, "an object list that is not valid TLV was accepted");
            let records = tlv::parse(data).expect("valid");
            for o in &objs {
                assert!(records.iter().any(|r| r.tag == o.kind.record_tag()), "object of a kind with no record");
                describe(o);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for kind in KINDS {
        assert_eq!(ObjectKind::from_record_tag(kind.record_tag()), Some(kind));
        if let Ok(o) = parse_single(kind, data) {
            assert_eq!(o.kind, kind);
            describe(&o);
        }
        if let Ok(objs) = parse_record(kind, data) {
            assert!(valid, "a record body that is not valid TLV was accepted");
            for o in &objs {
                assert_eq!(o.kind, kind);
                // A new object starts only at a repeated id or label: each has one of them,
                // but the last, which may hold only attributes.
                describe(o);
            }
        }
    }
    match AppletInfo::parse(data) {
        Ok(info) => {
            assert!(valid, "applet information that is not valid TLV was accepted");
            let text = info.to_string();
            assert!(text.starts_with("version: "));
        }
        Err(e) => {
            assert!(!valid);
            let _ = e.to_string();
        }
    }
}
