//! The simulated IoT SAFE applet: a command dispatcher over a `Store`.
//!
//! Deliberately written independently of the host library (own TLV reader,
//! own encoders), so a shared misreading of the protocol does not make the
//! integration tests pass by construction.

use std::collections::HashMap;

use openssl::bn::BigNumContext;
use openssl::ec::PointConversionForm;
use openssl::ecdsa::EcdsaSig;

use crate::faults::{Faults, SigFormat};
use crate::store::{p256, Store};

/// What the transport should do with an APDU.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Reply(Vec<u8>),
    /// Simulated card removal: close the reader connection.
    Remove,
}

#[derive(Default, Clone)]
struct Channel {
    open: bool,
    selected: bool,
    /// Rest of an object list being returned in 6300-chained pieces.
    list_rest: Vec<u8>,
}

struct SignSession {
    key_id: Vec<u8>,
    mode: u8,
    buffer: Vec<u8>,
}

pub struct Card {
    pub store: Store,
    aid: Vec<u8>,
    pub faults: Faults,
    remove_fired: bool,
    channels: [Channel; 4],
    sessions: HashMap<(u8, u8), SignSession>,
    pending: Vec<u8>,
}

fn sw(v: u16) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn ok(mut data: Vec<u8>) -> Vec<u8> {
    data.extend_from_slice(&[0x90, 0x00]);
    data
}

/// Encodes one TLV (short or 81/82 length).
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match value.len() {
        n @ 0..=0x7F => out.push(n as u8),
        n @ 0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

/// Reads command TLVs; `None` if malformed (the card answers 6A80).
fn parse_tlvs(mut data: &[u8]) -> Option<HashMap<u8, Vec<u8>>> {
    let mut out = HashMap::new();
    while !data.is_empty() {
        let (&tag, rest) = data.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let (len, rest) = match len {
            0x81 => {
                let (&l, r) = rest.split_first()?;
                (usize::from(l), r)
            }
            l if l < 0x80 => (usize::from(l), rest),
            _ => return None,
        };
        if rest.len() < len {
            return None;
        }
        out.insert(tag, rest[..len].to_vec());
        data = &rest[len..];
    }
    Some(out)
}

impl Card {
    pub fn new(store: Store, aid: Vec<u8>, faults: Faults) -> Self {
        let mut card = Card {
            store,
            aid,
            faults,
            remove_fired: false,
            channels: Default::default(),
            sessions: HashMap::new(),
            pending: Vec::new(),
        };
        card.reset();
        card
    }

    /// Power cycle / reset: only the basic channel stays, nothing selected.
    pub fn reset(&mut self) {
        self.channels = Default::default();
        self.channels[0].open = true;
        self.sessions.clear();
        self.pending.clear();
    }

    /// Replaces the fault set (control file changed); re-arms one-shot faults.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.remove_fired = false;
    }

    pub fn process(&mut self, apdu: &[u8]) -> Outcome {
        let ins = apdu.get(1).copied().unwrap_or(0);
        if self.faults.remove_on == Some(ins) && !self.remove_fired {
            self.remove_fired = true;
            return Outcome::Remove;
        }
        let mut rsp = self.process_inner(apdu);
        if let Some(&(_, n)) = self.faults.truncate.iter().find(|(i, _)| *i == ins) {
            let split = rsp.len().saturating_sub(2);
            let status = rsp.split_off(split);
            rsp.truncate(n.min(split));
            rsp.extend_from_slice(&status);
        }
        if self.faults.t0 && ins != 0xC0 && rsp.len() > 2 && rsp.ends_with(&[0x90, 0x00]) {
            rsp.truncate(rsp.len() - 2);
            self.pending = rsp;
            rsp = vec![0x61, self.pending.len().min(0xFF) as u8];
        }
        if let Some(&(_, n)) = self.faults.cut.iter().find(|(i, _)| *i == ins) {
            rsp.truncate(n);
        }
        Outcome::Reply(rsp)
    }

    fn process_inner(&mut self, apdu: &[u8]) -> Vec<u8> {
        let [cla, ins, p1, p2, body @ ..] = apdu else {
            return sw(0x6700);
        };
        let (cla, ins, p1, p2) = (*cla, *ins, *p1, *p2);
        let (data, le): (&[u8], Option<u8>) = match body {
            [] => (&[], None),
            [le] => (&[], Some(*le)),
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                if rest.len() == lc {
                    (rest, None)
                } else if rest.len() == lc + 1 {
                    (&rest[..lc], rest.last().copied())
                } else {
                    return sw(0x6700);
                }
            }
        };
        if ins == 0xC0 {
            return self.get_response(le);
        }
        if let Some(v) = self.faults.sw_for(ins) {
            return sw(v);
        }
        let ch = usize::from(cla & 0x03);
        if ins == 0x70 {
            return self.manage_channel(p1, p2);
        }
        if !self.channels[ch].open {
            return sw(0x6881);
        }
        if ins == 0xA4 {
            // A failed SELECT (OpenSC probing other AIDs) keeps the applet selected.
            if p1 == 0x04 && data == self.aid.as_slice() {
                self.channels[ch].selected = true;
                return sw(0x9000);
            }
            return sw(0x6A82);
        }
        if !self.channels[ch].selected {
            return sw(0x6D00);
        }
        match self.faults.strict_cla {
            Some(0x80) if cla & 0x80 == 0 => return sw(0x6E00),
            Some(0x00) if cla & 0x80 != 0 => return sw(0x6E00),
            _ => {}
        }
        if ins == 0xD6 {
            // Its body is `83 L id` followed by raw content, not a TLV list.
            return self.update_file(p1, p2, data);
        }
        let Some(tags) = parse_tlvs(data) else {
            return sw(0x6A80);
        };
        match ins {
            0xCB => self.get_data(ch, p1, p2, &tags, le),
            0xB0 => self.read_file(p1, p2, &tags, le),
            0xB9 => self.generate(&tags),
            0xCD => match tags.get(&0x85).and_then(|id| self.public_blob(id)) {
                Some(blob) => ok(blob),
                None => sw(0x6A88),
            },
            0x2A => self.sign_init(ch as u8, p1, p2, &tags),
            0x2B => self.sign_update(ch as u8, p1, p2, &tags),
            0x84 => {
                let n = match le {
                    None | Some(0) => 256,
                    Some(n) => usize::from(n),
                };
                let mut buf = vec![0u8; n];
                match openssl::rand::rand_bytes(&mut buf) {
                    Ok(()) => ok(buf),
                    Err(_) => sw(0x6F00),
                }
            }
            _ => sw(0x6D00),
        }
    }

    fn get_response(&mut self, le: Option<u8>) -> Vec<u8> {
        if self.pending.is_empty() {
            return sw(0x6985);
        }
        let n = match le {
            None | Some(0) => 256,
            Some(n) => usize::from(n),
        }
        .min(self.pending.len());
        let out: Vec<u8> = self.pending.drain(..n).collect();
        let mut rsp = out;
        if self.pending.is_empty() {
            rsp.extend_from_slice(&[0x90, 0x00]);
        } else {
            rsp.extend_from_slice(&[0x61, self.pending.len().min(0xFF) as u8]);
        }
        rsp
    }

    fn manage_channel(&mut self, p1: u8, p2: u8) -> Vec<u8> {
        match p1 {
            0x00 => match (1..4).find(|&c| !self.channels[c].open) {
                Some(c) => {
                    self.channels[c] = Channel { open: true, ..Default::default() };
                    ok(vec![c as u8])
                }
                None => sw(0x6A81),
            },
            0x80 if (1..4).contains(&p2) => {
                self.channels[usize::from(p2)] = Channel::default();
                self.sessions.retain(|(ch, _), _| *ch != p2);
                sw(0x9000)
            }
            _ => sw(0x6A86),
        }
    }

    fn key_record(&self, outer: u8, id: &[u8]) -> Vec<u8> {
        let (label_tag, id_tag) = if outer == 0xC1 { (0x74, 0x84) } else { (0x75, 0x85) };
        let label = self.store.keys.get(id).map(|k| k.label.as_slice()).unwrap_or(b"");
        let body = [
            tlv(label_tag, label),
            tlv(id_tag, id),
            tlv(0x60, &[0x01]),
            tlv(0x4A, &[0x01]),
            tlv(0x4B, &[0x13]),
            tlv(0x4E, &[0x02]),
            tlv(0x61, if outer == 0xC1 { &[0x07] } else { &[0x01] }),
            tlv(0x92, &[0x04]),
            tlv(0x91, &[0x00, 0x01]),
            tlv(0x6F, &[0x01]),
        ]
        .concat();
        tlv(outer, &body)
    }

    fn declared_size(&self, id: &[u8]) -> Option<u16> {
        if let Some((_, n)) = self.faults.declare_size.iter().find(|(f, _)| f == id) {
            return Some(*n);
        }
        self.store.files.get(id).map(|f| u16::try_from(f.data.len()).unwrap_or(u16::MAX))
    }

    fn file_record(&self, id: &[u8]) -> Option<Vec<u8>> {
        let file = self.store.files.get(id)?;
        let size = self.declared_size(id)?;
        let usage = if file.data.first() == Some(&0x30) { 0x02 } else { 0x01 };
        let body = [
            tlv(0x73, &file.label),
            tlv(0x83, id),
            tlv(0x60, &[0x03]),
            tlv(0x4A, &[0x01]),
            tlv(0x21, &[usage]),
            tlv(0x20, &size.to_be_bytes()),
        ]
        .concat();
        Some(tlv(0xC3, &body))
    }

    fn get_data(&mut self, ch: usize, p1: u8, p2: u8, tags: &HashMap<u8, Vec<u8>>, le: Option<u8>) -> Vec<u8> {
        match p1 {
            0x00 => {
                let info = [
                    tlv(0x10, &[0x01]),
                    tlv(0x11, b"IOTSAFE-SIM-RS"),
                    tlv(0xB1, &[0x08]),
                    tlv(0xB2, &[0x04]),
                    tlv(0xB3, &[0x04]),
                    tlv(0xB4, &[0x00]),
                    tlv(0x90, &[0x03]),
                    tlv(0x91, &[0x00, 0x01]),
                    tlv(0x92, &[0x04]),
                    tlv(0xB7, &[0x02]),
                ]
                .concat();
                if self.faults.wrong_le && le != Some(info.len() as u8) {
                    return sw(0x6C00 | info.len() as u16);
                }
                ok(info)
            }
            0x01 => {
                if p2 == 0x00 {
                    let mut all = Vec::new();
                    for id in self.store.keys.keys() {
                        all.extend(self.key_record(0xC1, id));
                    }
                    for id in self.store.keys.keys() {
                        all.extend(self.key_record(0xC2, id));
                    }
                    for id in self.store.files.keys() {
                        all.extend(self.file_record(id).unwrap_or_default());
                    }
                    self.channels[ch].list_rest = all;
                } else if self.channels[ch].list_rest.is_empty() {
                    return sw(0x6985);
                }
                let chunk = self.faults.list_chunk.unwrap_or(240);
                let rest = &mut self.channels[ch].list_rest;
                let piece: Vec<u8> = rest.drain(..chunk.min(rest.len())).collect();
                let more = !rest.is_empty();
                let mut rsp = piece;
                rsp.extend(sw(if more { 0x6300 } else { 0x9000 }));
                rsp
            }
            0xC1 | 0xC2 => {
                let id_tag = if p1 == 0xC1 { 0x84 } else { 0x85 };
                match tags.get(&id_tag) {
                    Some(id) if self.store.keys.contains_key(id) => ok(self.key_record(p1, id)),
                    _ => sw(0x6A88),
                }
            }
            0xC3 => match tags.get(&0x83).and_then(|id| self.file_record(id)) {
                Some(rec) => ok(rec),
                None => sw(0x6A88),
            },
            _ => sw(0x6A86),
        }
    }

    fn read_file(&self, p1: u8, p2: u8, tags: &HashMap<u8, Vec<u8>>, le: Option<u8>) -> Vec<u8> {
        let Some(file) = tags.get(&0x83).and_then(|id| self.store.files.get(id)) else {
            return sw(0x6A82);
        };
        let off = usize::from(u16::from_be_bytes([p1, p2]));
        if off >= file.data.len() {
            return sw(0x6B00);
        }
        let n = match le {
            None => 255,
            Some(0) => 256,
            Some(n) => usize::from(n),
        };
        let end = (off + n).min(file.data.len());
        ok(file.data[off..end].to_vec())
    }

    /// OTA-style write (simulator only): `83 L id || bytes` at offset P1P2.
    /// Offset 0 starts a new content; later chunks must follow on.
    fn update_file(&mut self, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
        let [0x83, l, rest @ ..] = data else {
            return sw(0x6A80);
        };
        let l = usize::from(*l);
        if rest.len() < l || l == 0 {
            return sw(0x6A80);
        }
        let (id, bytes) = rest.split_at(l);
        let off = usize::from(u16::from_be_bytes([p1, p2]));
        let mut content = if off == 0 {
            Vec::new()
        } else {
            match self.store.files.get(id) {
                Some(f) if f.data.len() >= off => f.data[..off].to_vec(),
                _ => return sw(0x6B00),
            }
        };
        content.extend_from_slice(bytes);
        let label = if self.store.files.contains_key(id) {
            None
        } else {
            Some(format!("FILE_{}", hex::encode_upper(id)).into_bytes())
        };
        match self.store.put_file(id, &content, label.as_deref()) {
            Ok(()) => sw(0x9000),
            Err(e) => {
                eprintln!("iotsafe-sim: {e}");
                sw(0x6581)
            }
        }
    }

    fn public_blob(&self, id: &[u8]) -> Option<Vec<u8>> {
        let key = self.store.keys.get(id)?;
        let mut ctx = BigNumContext::new().ok()?;
        let point = key.key.public_key().to_bytes(&p256(), PointConversionForm::UNCOMPRESSED, &mut ctx).ok()?;
        Some(tlv(0x34, &tlv(0x49, &tlv(0x86, &point))))
    }

    fn generate(&mut self, tags: &HashMap<u8, Vec<u8>>) -> Vec<u8> {
        let Some(id) = tags.get(&0x84).filter(|id| !id.is_empty()) else {
            return sw(0x6A80);
        };
        if let Err(e) = self.store.generate_key(id, None) {
            eprintln!("iotsafe-sim: {e}");
            return sw(0x6581);
        }
        match self.public_blob(id) {
            Some(blob) => ok([tlv(0x84, id), tlv(0x85, id), blob].concat()),
            None => sw(0x6F00),
        }
    }

    fn sign_init(&mut self, ch: u8, p1: u8, p2: u8, tags: &HashMap<u8, Vec<u8>>) -> Vec<u8> {
        match p1 {
            0x01 => {
                self.sessions.remove(&(ch, p2));
                sw(0x9000)
            }
            0x00 => {
                let Some(id) = tags.get(&0x84).filter(|id| self.store.keys.contains_key(*id)) else {
                    return sw(0x6A88);
                };
                let mode = tags.get(&0xA1).and_then(|m| m.first().copied()).unwrap_or(0x03);
                let hash_ok = tags.get(&0x91).is_none_or(|h| h.last() == Some(&0x01));
                let alg_ok = tags.get(&0x92).is_none_or(|a| a.as_slice() == [0x04]);
                if !hash_ok || !alg_ok || !matches!(mode, 0x01 | 0x03) {
                    return sw(0x6A80);
                }
                self.sessions.insert((ch, p2), SignSession { key_id: id.clone(), mode, buffer: Vec::new() });
                sw(0x9000)
            }
            _ => sw(0x6A86),
        }
    }

    fn sign_update(&mut self, ch: u8, p1: u8, p2: u8, tags: &HashMap<u8, Vec<u8>>) -> Vec<u8> {
        let Some(session) = self.sessions.get_mut(&(ch, p2)) else {
            return sw(0x6985);
        };
        let digest: [u8; 32] = if session.mode == 0x01 {
            session.buffer.extend_from_slice(tags.get(&0x9B).map(Vec::as_slice).unwrap_or(&[]));
            if p1 != 0x80 {
                return sw(0x9000);
            }
            openssl::sha::sha256(&session.buffer)
        } else {
            match tags.get(&0x9E).and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok()) {
                Some(h) => h,
                None => return sw(0x6A80),
            }
        };
        let Some(key) = self.store.keys.get(&session.key_id) else {
            return sw(0x6A88);
        };
        let Ok(sig) = EcdsaSig::sign(&digest, &key.key) else {
            return sw(0x6F00);
        };
        let (Ok(r), Ok(s), Ok(der)) = (sig.r().to_vec_padded(32), sig.s().to_vec_padded(32), sig.to_der()) else {
            return sw(0x6F00);
        };
        let raw = [r, s].concat();
        let body = match self.faults.sig {
            SigFormat::Raw2 => [vec![0x33, 0x00, 0x40], raw].concat(),
            SigFormat::Raw1 => tlv(0x33, &raw),
            SigFormat::Der => tlv(0x33, &der),
            SigFormat::Junk => vec![0x33, 0x05, 0x01, 0x02, 0x03, 0x04, 0x05],
        };
        ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> (tempfile::TempDir, Card) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.generate_key(&[1], Some(b"K")).unwrap();
        store.put_file(&[2], &[0x30, 1, 2, 3], Some(b"C")).unwrap();
        (dir, Card::new(store, vec![0xA0, 0, 0, 5, 0x59, 0, 0x10], Faults::default()))
    }

    fn reply(c: &mut Card, hex_apdu: &str) -> String {
        match c.process(&hex::decode(hex_apdu.replace(' ', "")).unwrap()) {
            Outcome::Reply(r) => hex::encode_upper(r),
            Outcome::Remove => "REMOVED".into(),
        }
    }

    #[test]
    fn channel_select_and_unknown_aid() {
        let (_d, mut c) = card();
        assert_eq!(reply(&mut c, "0070000001"), "019000");
        assert_eq!(reply(&mut c, "01A4040007A0000005590011"), "6A82");
        assert_eq!(reply(&mut c, "81CB000000"), "6D00");
        assert_eq!(reply(&mut c, "01A4040007A0000005590010"), "9000");
        assert!(reply(&mut c, "81CB000000").ends_with("9000"));
        assert_eq!(reply(&mut c, "02A4040007A0000005590010"), "6881");
        assert_eq!(reply(&mut c, "00708001"), "9000");
        assert_eq!(reply(&mut c, "81CB000000"), "6881");
    }

    #[test]
    fn update_then_read_file() {
        let (_d, mut c) = card();
        reply(&mut c, "00A4040007A0000005590010");
        assert_eq!(reply(&mut c, "80D6000005 830103 AABB"), "9000");
        assert_eq!(reply(&mut c, "80D6000204 830103 CC"), "9000");
        assert_eq!(reply(&mut c, "80B0000003830103 00"), "AABBCC9000");
        assert_eq!(reply(&mut c, "80D6000904 830103 CC"), "6B00");
        let reopened = Store::open(_d.path()).unwrap();
        assert_eq!(reopened.files[&vec![3u8]].data, vec![0xAA, 0xBB, 0xCC]);
    }

    #[test]
    fn faults_change_answers() {
        let (_d, mut c) = card();
        reply(&mut c, "00A4040007A0000005590010");
        c.set_faults(Faults::parse("sw CB 6985\nremove-on 2A").unwrap());
        assert_eq!(reply(&mut c, "80CB000000"), "6985");
        assert_eq!(reply(&mut c, "802A0001 03 840101"), "REMOVED");
        assert_eq!(reply(&mut c, "802A0001 03 840101"), "9000");
        c.set_faults(Faults::parse("strict-cla 80\ncut B0 1").unwrap());
        assert_eq!(reply(&mut c, "00CB000000"), "6E00");
        assert_eq!(reply(&mut c, "80B0000003830102 00"), "30");
    }
}
