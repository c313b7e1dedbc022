//! Short command/response APDUs (ISO 7816-4). IoT SAFE never needs extended
//! length: the biggest command body is a 255-byte file chunk.

use crate::error::Error;
use crate::status::StatusWord;

/// A command APDU before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Expected response length; `Some(0)` encodes as `00` = "up to 256".
    pub le: Option<u8>,
}

impl Command {
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Command { cla, ins, p1, p2, data: Vec::new(), le: None }
    }

    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    pub fn with_le(mut self, le: u8) -> Self {
        self.le = Some(le);
        self
    }

    /// Encodes as case 1/2/3/4 short APDU. Fails rather than truncating a
    /// body that does not fit in one byte of Lc.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        if self.data.len() > 255 {
            return Err(Error::Malformed(format!(
                "command INS {:02X} carries {} bytes, short APDUs hold at most 255",
                self.ins,
                self.data.len()
            )));
        }
        let mut out = Vec::with_capacity(self.data.len() + 6);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if !self.data.is_empty() {
            out.push(self.data.len() as u8);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push(le);
        }
        Ok(out)
    }
}

/// A response APDU split into data and status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: StatusWord,
}

impl Response {
    /// Splits `data || SW1 SW2`. A response shorter than two bytes is a
    /// transport fault (truncated by the reader or the card), not a status.
    pub fn parse(raw: &[u8]) -> Result<Self, Error> {
        match raw {
            [data @ .., sw1, sw2] => Ok(Response { data: data.to_vec(), sw: StatusWord::from_bytes(*sw1, *sw2) }),
            _ => Err(Error::Malformed(format!("response of {} byte(s) has no status word (truncated?)", raw.len()))),
        }
    }
}

/// ISO CLA for a logical channel 0..=3 on top of a base class byte.
pub fn cla_for_channel(base: u8, channel: u8) -> u8 {
    base | (channel & 0x03)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_all_short_cases() {
        let case1 = Command::new(0x81, 0x2A, 0x01, 0x01);
        assert_eq!(case1.to_bytes().unwrap(), vec![0x81, 0x2A, 0x01, 0x01]);
        let case2 = Command::new(0x80, 0xCB, 0x01, 0x00).with_le(0);
        assert_eq!(case2.to_bytes().unwrap(), vec![0x80, 0xCB, 0x01, 0x00, 0x00]);
        let case3 = Command::new(0x01, 0xA4, 0x04, 0x00).with_data(hex::decode("A0000005590010").unwrap());
        assert_eq!(hex::encode_upper(case3.to_bytes().unwrap()), "01A4040007A0000005590010");
        let case4 = Command::new(0x81, 0xCD, 0x00, 0x00).with_data(vec![0x85, 0x01, 0x01]).with_le(0);
        assert_eq!(hex::encode_upper(case4.to_bytes().unwrap()), "81CD00000385010100");
    }

    #[test]
    fn refuses_oversized_body() {
        let cmd = Command::new(0x80, 0xD6, 0, 0).with_data(vec![0; 256]);
        let err = cmd.to_bytes().unwrap_err().to_string();
        assert!(err.contains("256 bytes"), "{err}");
    }

    #[test]
    fn parses_responses() {
        let r = Response::parse(&[0x01, 0x02, 0x90, 0x00]).unwrap();
        assert_eq!(r.data, vec![1, 2]);
        assert_eq!(r.sw, StatusWord::OK);
        let r = Response::parse(&[0x6A, 0x82]).unwrap();
        assert!(r.data.is_empty());
        assert_eq!(r.sw, StatusWord::NOT_FOUND);
        assert!(Response::parse(&[0x90]).is_err());
        assert!(Response::parse(&[]).is_err());
    }

    #[test]
    fn channel_bits() {
        assert_eq!(cla_for_channel(0x80, 1), 0x81);
        assert_eq!(cla_for_channel(0x00, 3), 0x03);
        assert_eq!(cla_for_channel(0x81, 1), 0x81);
        assert_eq!(cla_for_channel(0x80, 7), 0x83);
    }
}
