//! The IoT SAFE applet command set (GSMA IoT.05 as implemented by the
//! Orange, wolfSSL and Thales middlewares; research brief section 1).

use crate::apdu::{cla_for_channel, Command};
use crate::error::{Error, Result};
use crate::objects::{self, AppletInfo, ObjectInfo, ObjectKind};
use crate::signature::{self, RAW_LEN};
use crate::status::StatusWord;
use crate::tlv;
use crate::transport::{exchange, exchange_ok, Transport};

/// GSMA IoT SAFE applet AID.
pub const GSMA_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x59, 0x00, 0x10];
/// Thales' proprietary IoT SAFE applet AID (used by the CIRA SIMs).
pub const THALES_AID: [u8; 15] =
    [0xA0, 0x00, 0x00, 0x00, 0x30, 0x53, 0xF1, 0x24, 0x01, 0x77, 0x01, 0x01, 0x49, 0x53, 0x41];

/// Compute-signature session number (P2). wolfSSL and Orange use 01.
const SIGN_SESSION: u8 = 0x01;
/// Upper bound on 6300 continuations of the object list; a real applet
/// holds a few dozen objects at most.
const MAX_LIST_ROUNDS: usize = 64;

/// How to reach the applet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMode {
    /// MANAGE CHANNEL open, use the channel the card assigns, close after.
    Open,
    /// Use this channel as is (0 = basic channel, or one a modem opened).
    Fixed(u8),
}

#[derive(Debug, Clone)]
pub struct AppletConfig {
    pub aid: Vec<u8>,
    /// Class byte for IoT SAFE commands before the channel bits: 00, 80 or
    /// 81 (wolfSSL's fixed 0x81). Applets accept different styles.
    pub cla: u8,
    pub channel: ChannelMode,
    /// READ FILE chunk size; Orange uses 50 for a modem buffer bug, 240 is
    /// safe for every short-APDU reader.
    pub read_chunk: u8,
}

impl Default for AppletConfig {
    fn default() -> Self {
        AppletConfig { aid: GSMA_AID.to_vec(), cla: 0x80, channel: ChannelMode::Open, read_chunk: 240 }
    }
}

/// A selected applet on one channel. Dropping it closes an opened channel.
pub struct Applet<T: Transport> {
    t: T,
    cfg: AppletConfig,
    channel: u8,
    opened: bool,
    reader: String,
}

fn id_hex(id: &[u8]) -> String {
    hex::encode_upper(id)
}

fn id_tlv(tag: u8, id: &[u8]) -> Result<Vec<u8>> {
    if id.is_empty() || id.len() > 16 {
        return Err(Error::Invalid(format!("object id {:?} must be 1..16 bytes", id_hex(id))));
    }
    Ok(tlv::encode(tag, id))
}

/// Extracts the uncompressed point from a `34 { 49 { 86 point } }` blob
/// that may sit among other TLVs (GENERATE KEY PAIR prefixes 84/85).
pub fn parse_public_key_blob(data: &[u8]) -> Result<Vec<u8>> {
    let point = tlv::find_path(data, &[0x34, 0x49, 0x86]).map_err(Error::tlv("public key data"))?.ok_or_else(|| {
        Error::Malformed(format!(
            "no public key (34/49/86) in card answer {}",
            hex::encode_upper(&data[..data.len().min(16)])
        ))
    })?;
    if point.len() != 65 || point[0] != 0x04 {
        return Err(Error::Malformed(format!(
            "public key is {} bytes starting {:02X}, expected a 65-byte uncompressed P-256 point",
            point.len(),
            point.first().copied().unwrap_or(0)
        )));
    }
    Ok(point.to_vec())
}

impl<T: Transport> Applet<T> {
    /// Opens a channel (if configured) and selects the applet.
    pub fn open(mut t: T, cfg: AppletConfig, reader: &str) -> Result<Self> {
        let (channel, opened) = match cfg.channel {
            ChannelMode::Fixed(c) => (c & 0x03, false),
            ChannelMode::Open => {
                let cmd = Command::new(0x00, 0x70, 0x00, 0x00).with_le(1);
                let data = exchange_ok(&mut t, &cmd, || format!("MANAGE CHANNEL open on reader {reader:?}"))?;
                match data.as_slice() {
                    [c @ 1..=3] => (*c, true),
                    _ => {
                        return Err(Error::Malformed(format!(
                            "MANAGE CHANNEL returned {:?}, expected a channel number 1..3",
                            hex::encode_upper(&data)
                        )))
                    }
                }
            }
        };
        let mut applet = Applet { t, cfg, channel, opened, reader: reader.to_string() };
        applet.select()?;
        Ok(applet)
    }

    pub fn channel(&self) -> u8 {
        self.channel
    }

    fn cla(&self) -> u8 {
        cla_for_channel(self.cfg.cla, self.channel)
    }

    fn select(&mut self) -> Result<()> {
        // SELECT is interindustry: CLA 0x0c whatever style the applet uses.
        let cmd = Command::new(cla_for_channel(0x00, self.channel), 0xA4, 0x04, 0x00).with_data(self.cfg.aid.clone());
        let rsp = exchange(&mut self.t, &cmd)?;
        if rsp.sw.is_success() {
            Ok(())
        } else {
            Err(Error::AppletNotFound {
                aid: hex::encode_upper(&self.cfg.aid),
                reader: self.reader.clone(),
                sw: rsp.sw,
            })
        }
    }

    /// Closes the logical channel we opened. Idempotent.
    pub fn close(&mut self) -> Result<()> {
        if !self.opened {
            return Ok(());
        }
        self.opened = false;
        let cmd = Command::new(0x00, 0x70, 0x80, self.channel);
        exchange_ok(&mut self.t, &cmd, || format!("MANAGE CHANNEL close {}", self.channel))?;
        Ok(())
    }

    /// Runs a command that names an object; maps "not found" status words
    /// to [`Error::ObjectNotFound`] so the message carries the id.
    fn object_command(&mut self, cmd: &Command, kind: ObjectKind, id: &[u8], what: &str) -> Result<Vec<u8>> {
        let rsp = exchange(&mut self.t, cmd)?;
        match rsp.sw {
            sw if sw.is_success() => Ok(rsp.data),
            StatusWord(0x6A88) | StatusWord(0x6A82) => Err(Error::ObjectNotFound { kind: kind.name(), id: id_hex(id) }),
            sw => Err(Error::Status { command: format!("{what} ({} {})", kind.name(), id_hex(id)), sw }),
        }
    }

    /// GET DATA P1=00: applet information.
    pub fn application_info(&mut self) -> Result<AppletInfo> {
        let cmd = Command::new(self.cla(), 0xCB, 0x00, 0x00).with_le(0);
        let data = exchange_ok(&mut self.t, &cmd, || "GET DATA (applet information)".into())?;
        AppletInfo::parse(&data)
    }

    /// Raw object list, reassembled across 6300 continuations (the card may
    /// split mid-TLV, so parse only after the last piece).
    pub fn object_list_raw(&mut self) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        let mut p2 = 0x00;
        for _ in 0..MAX_LIST_ROUNDS {
            let cmd = Command::new(self.cla(), 0xCB, 0x01, p2).with_le(0);
            let rsp = exchange(&mut self.t, &cmd)?;
            all.extend_from_slice(&rsp.data);
            match rsp.sw {
                StatusWord::MORE_DATA => p2 = 0x01,
                sw if sw.is_success() => return Ok(all),
                sw => return Err(Error::Status { command: "GET DATA (object list)".into(), sw }),
            }
        }
        Err(Error::Malformed(format!("object list still incomplete after {MAX_LIST_ROUNDS} GET DATA rounds")))
    }

    pub fn object_list(&mut self) -> Result<Vec<ObjectInfo>> {
        let raw = self.object_list_raw()?;
        objects::parse_object_list(&raw)
    }

    /// GET DATA for one object by id.
    pub fn object_info(&mut self, kind: ObjectKind, id: &[u8]) -> Result<ObjectInfo> {
        let cmd =
            Command::new(self.cla(), 0xCB, kind.record_tag(), 0x00).with_data(id_tlv(kind.id_tag(), id)?).with_le(0);
        let data = self.object_command(&cmd, kind, id, "GET DATA")?;
        objects::parse_single(kind, &data)
    }

    /// READ FILE in chunks up to the size the card declares for the file.
    pub fn read_file(&mut self, id: &[u8]) -> Result<Vec<u8>> {
        let info = self.object_info(ObjectKind::File, id)?;
        let size = usize::from(
            info.file_size
                .ok_or_else(|| Error::Malformed(format!("file {} record has no size (tag 20)", id_hex(id))))?,
        );
        let body = id_tlv(0x83, id)?;
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let off = out.len();
            let want = (size - off).min(usize::from(self.cfg.read_chunk.max(1)));
            let cmd =
                Command::new(self.cla(), 0xB0, (off >> 8) as u8, off as u8).with_data(body.clone()).with_le(want as u8);
            let rsp = exchange(&mut self.t, &cmd)?;
            let short = |why: String| {
                Error::Malformed(format!(
                    "file {} is shorter than its declared size: declared {size} bytes, \
                     got {off} ({why})",
                    id_hex(id)
                ))
            };
            if !rsp.sw.is_success() {
                if matches!(rsp.sw.0, 0x6B00 | 0x6282 | 0x6A86) {
                    return Err(short(format!("READ FILE at offset {off}: {}", rsp.sw)));
                }
                return Err(Error::Status {
                    command: format!("READ FILE (file {}, offset {off})", id_hex(id)),
                    sw: rsp.sw,
                });
            }
            if rsp.data.is_empty() {
                return Err(short(format!("READ FILE at offset {off} returned no data")));
            }
            let take = rsp.data.len().min(size - off);
            out.extend_from_slice(&rsp.data[..take]);
        }
        Ok(out)
    }

    /// Writes a whole file with the simulator's OTA-style UPDATE
    /// (INS D6, P1P2 = offset, data = `83 L id || bytes`; offset 0 starts a
    /// new content). Real cards are provisioned over the air instead.
    pub fn update_file(&mut self, id: &[u8], content: &[u8]) -> Result<()> {
        let head = id_tlv(0x83, id)?;
        let room = 255 - head.len();
        let mut off = 0usize;
        loop {
            let end = (off + room).min(content.len());
            if off > 0xFFFF {
                return Err(Error::Invalid(format!("file content of {} bytes exceeds 64 KiB", content.len())));
            }
            let mut data = head.clone();
            data.extend_from_slice(&content[off..end]);
            let cmd = Command::new(self.cla(), 0xD6, (off >> 8) as u8, off as u8).with_data(data);
            self.object_command(&cmd, ObjectKind::File, id, "UPDATE FILE")?;
            off = end;
            if off >= content.len() {
                return Ok(());
            }
        }
    }

    /// GENERATE KEY PAIR into private key slot `id` (public key id = same).
    pub fn generate_key(&mut self, id: &[u8]) -> Result<Vec<u8>> {
        let cmd = Command::new(self.cla(), 0xB9, 0x00, 0x00).with_data(id_tlv(0x84, id)?).with_le(0);
        let data = self.object_command(&cmd, ObjectKind::PrivateKey, id, "GENERATE KEY PAIR")?;
        // Some applets answer 9000 with no data: read the key back instead.
        if data.is_empty() {
            return self.public_key(id);
        }
        parse_public_key_blob(&data)
    }

    /// READ PUBLIC KEY: the uncompressed point of public key `id`.
    pub fn public_key(&mut self, id: &[u8]) -> Result<Vec<u8>> {
        let cmd = Command::new(self.cla(), 0xCD, 0x00, 0x00).with_data(id_tlv(0x85, id)?).with_le(0);
        let data = self.object_command(&cmd, ObjectKind::PublicKey, id, "READ PUBLIC KEY")?;
        parse_public_key_blob(&data)
    }

    /// ECDSA P-256 over a SHA-256 digest (mode 03, "pad and sign": the card
    /// does not hash). Returns `r||s`.
    pub fn sign_digest(&mut self, key_id: &[u8], digest: &[u8; 32]) -> Result<[u8; RAW_LEN]> {
        let mut init = id_tlv(0x84, key_id)?;
        init.extend_from_slice(&[0xA1, 0x01, 0x03, 0x91, 0x02, 0x00, 0x01, 0x92, 0x01, 0x04]);
        let cmd = Command::new(self.cla(), 0x2A, 0x00, SIGN_SESSION).with_data(init);
        self.object_command(&cmd, ObjectKind::PrivateKey, key_id, "COMPUTE SIGNATURE INIT")?;
        let update = Command::new(self.cla(), 0x2B, 0x80, SIGN_SESSION).with_data(tlv::encode(0x9E, digest)).with_le(0);
        let result =
            exchange_ok(&mut self.t, &update, || format!("COMPUTE SIGNATURE UPDATE (private key {})", id_hex(key_id)))
                .and_then(|data| signature::parse_signature_response(&data));
        // Always end the session so the next signer starts clean, but report
        // the signing error first if both fail.
        let close = Command::new(self.cla(), 0x2A, 0x01, SIGN_SESSION);
        let closed = exchange_ok(&mut self.t, &close, || "COMPUTE SIGNATURE close".into());
        let sig = result?;
        closed?;
        Ok(sig)
    }
}

impl<T: Transport> Drop for Applet<T> {
    fn drop(&mut self) {
        // Best effort on error paths: a leaked channel would stay open on
        // the card until the next reset.
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Scripted;

    fn cfg() -> AppletConfig {
        AppletConfig::default()
    }

    #[test]
    fn open_select_close_on_channel() {
        let card =
            Scripted::new(&[("0070000001", "01 9000"), ("01A4040007A0000005590010", "9000"), ("00708001", "9000")]);
        let mut a = Applet::open(card, cfg(), "r").unwrap();
        assert_eq!(a.channel(), 1);
        a.close().unwrap();
    }

    #[test]
    fn applet_absent_is_decoded() {
        let card =
            Scripted::new(&[("0070000001", "02 9000"), ("02A4040007A0000005590010", "6A82"), ("00708002", "9000")]);
        let err = Applet::open(card, cfg(), "Sim 00 00").err().unwrap().to_string();
        assert_eq!(
            err,
            "IoT SAFE applet A0000005590010 not present on the card in \"Sim 00 00\": \
             SELECT returned 6A82 (not found (applet or object absent))"
        );
    }

    #[test]
    fn object_list_continues_on_6300_even_mid_tlv() {
        let card = Scripted::new(&[
            ("00A4040007A0000005590010", "9000"),
            ("80CB010000", "C307 8301 6300"),
            ("80CB010100", "02 20020010 9000"),
        ]);
        let mut c = cfg();
        c.channel = ChannelMode::Fixed(0);
        let mut a = Applet::open(card, c, "r").unwrap();
        let objs = a.object_list().unwrap();
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].id, vec![2]);
        assert_eq!(objs[0].file_size, Some(16));
    }

    #[test]
    fn read_file_in_chunks_and_detects_short_file() {
        let mut c = cfg();
        c.channel = ChannelMode::Fixed(1);
        c.cla = 0x81;
        c.read_chunk = 4;
        let card = Scripted::new(&[
            ("01A4040007A0000005590010", "9000"),
            ("81CBC30003830102 00", "C307 830102 20020006 9000"),
            ("81B00000038301020 4", "01020304 9000"),
            ("81B00004038301020 2", "0506 9000"),
        ]);
        let mut a = Applet::open(card, c.clone(), "r").unwrap();
        assert_eq!(a.read_file(&[2]).unwrap(), vec![1, 2, 3, 4, 5, 6]);
        drop(a);

        let card = Scripted::new(&[
            ("01A4040007A0000005590010", "9000"),
            ("81CBC30003830102 00", "C307 830102 20020006 9000"),
            ("81B00000038301020 4", "01020304 9000"),
            ("81B00004038301020 2", "6B00"),
        ]);
        let mut a = Applet::open(card, c, "r").unwrap();
        let err = a.read_file(&[2]).unwrap_err().to_string();
        assert!(err.contains("file 02 is shorter than its declared size"), "{err}");
        assert!(err.contains("declared 6 bytes, got 4"), "{err}");
    }

    #[test]
    fn sign_accepts_raw_and_closes_session() {
        let raw: Vec<u8> = (0u8..64).collect();
        let digest = [0xABu8; 32];
        let answer = format!("3300 40{} 9000", hex::encode(&raw));
        let update = format!("812B8001 22 9E20{} 00", hex::encode(digest));
        let card = Scripted::new(&[
            ("01A4040007A0000005590010", "9000"),
            ("812A00010D840101A10103910200019201 04", "9000"),
            (update.as_str(), answer.as_str()),
            ("812A0101", "9000"),
        ]);
        let mut c = cfg();
        c.channel = ChannelMode::Fixed(1);
        let mut a = Applet::open(card, c, "r").unwrap();
        assert_eq!(a.sign_digest(&[1], &digest).unwrap().to_vec(), raw);
    }

    #[test]
    fn sign_with_missing_key_names_it() {
        let card =
            Scripted::new(&[("00A4040007A0000005590010", "9000"), ("802A00010D840109A10103910200019201 04", "6A88")]);
        let mut c = cfg();
        c.channel = ChannelMode::Fixed(0);
        let mut a = Applet::open(card, c, "r").unwrap();
        let err = a.sign_digest(&[9], &[0; 32]).unwrap_err().to_string();
        assert_eq!(err, "private key 09 not found on the card");
    }

    #[test]
    fn public_key_blob_parsing() {
        let mut point = vec![0x04];
        point.extend(1u8..=64);
        let blob = tlv::encode(0x34, &tlv::encode(0x49, &tlv::encode(0x86, &point)));
        let mut gen = hex::decode("840101850101").unwrap();
        gen.extend_from_slice(&blob);
        assert_eq!(parse_public_key_blob(&gen).unwrap(), point);
        assert!(parse_public_key_blob(&hex::decode("840101").unwrap()).is_err());
        let short = tlv::encode(0x34, &tlv::encode(0x49, &tlv::encode(0x86, &[4, 1])));
        assert!(parse_public_key_blob(&short).unwrap_err().to_string().contains("65-byte"));
    }
}
