//! The byte pipe to a card, and the ISO transport-level status words that
//! pcsc-lite leaves to the application (`61xx` GET RESPONSE, `6Cxx` retry).

use crate::apdu::{cla_for_channel, Command, Response};
use crate::error::Result;
use crate::status::StatusWord;

/// Sends one raw C-APDU and returns the raw R-APDU (`data || SW1 SW2`).
/// Implemented over PC/SC in `reader.rs` and by scripted fakes in tests.
pub trait Transport {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>> {
        (**self).transmit_raw(apdu)
    }
}

/// Upper bound on chained GET RESPONSEs: 64 x 256 bytes is far more than
/// any IoT SAFE object, and a card that keeps saying 61xx must not hang us.
const MAX_GET_RESPONSE: usize = 64;

/// Optional APDU trace to stderr (`--verbose`).
pub struct Traced<T> {
    pub inner: T,
    pub trace: bool,
}

impl<T: Transport> Transport for Traced<T> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>> {
        if self.trace {
            eprintln!("> {}", hex::encode_upper(apdu));
        }
        let rsp = self.inner.transmit_raw(apdu);
        if self.trace {
            match &rsp {
                Ok(r) => eprintln!("< {}", hex::encode_upper(r)),
                Err(e) => eprintln!("< error: {e}"),
            }
        }
        rsp
    }
}

/// Sends `cmd`, following `6Cxx` (resend with the Le the card wants) and
/// `61xx`/`9Fxx` (fetch the rest with GET RESPONSE on the same channel).
pub fn exchange<T: Transport + ?Sized>(t: &mut T, cmd: &Command) -> Result<Response> {
    let mut rsp = Response::parse(&t.transmit_raw(&cmd.to_bytes()?)?)?;
    if rsp.sw.sw1() == 0x6C {
        let retry = cmd.clone().with_le(rsp.sw.sw2());
        rsp = Response::parse(&t.transmit_raw(&retry.to_bytes()?)?)?;
    }
    let mut data = std::mem::take(&mut rsp.data);
    let mut rounds = 0;
    while matches!(rsp.sw.sw1(), 0x61 | 0x9F) {
        rounds += 1;
        if rounds > MAX_GET_RESPONSE {
            return Err(crate::error::Error::Malformed(format!(
                "card still announces more data after {MAX_GET_RESPONSE} GET RESPONSEs"
            )));
        }
        // GET RESPONSE is interindustry: CLA 0x0c on the command's channel.
        let get = Command::new(cla_for_channel(0x00, cmd.cla), 0xC0, 0x00, 0x00).with_le(rsp.sw.sw2());
        rsp = Response::parse(&t.transmit_raw(&get.to_bytes()?)?)?;
        data.extend_from_slice(&rsp.data);
    }
    Ok(Response { data, sw: rsp.sw })
}

/// Like [`exchange`] but turns any non-success status into an error naming
/// the command.
pub fn exchange_ok<T: Transport + ?Sized>(t: &mut T, cmd: &Command, what: impl FnOnce() -> String) -> Result<Vec<u8>> {
    let rsp = exchange(t, cmd)?;
    if rsp.sw.is_success() {
        Ok(rsp.data)
    } else {
        Err(crate::error::Error::Status { command: what(), sw: rsp.sw })
    }
}

/// A card double that answers from a script, for unit tests of the
/// protocol logic. Each step is (expected C-APDU hex, R-APDU hex).
#[cfg(test)]
pub(crate) struct Scripted {
    pub steps: std::collections::VecDeque<(String, String)>,
}

#[cfg(test)]
impl Scripted {
    pub fn new(steps: &[(&str, &str)]) -> Self {
        Scripted { steps: steps.iter().map(|(c, r)| (c.replace(' ', ""), r.replace(' ', ""))).collect() }
    }
}

#[cfg(test)]
impl Transport for Scripted {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>> {
        let (expect, answer) =
            self.steps.pop_front().unwrap_or_else(|| panic!("unexpected APDU {}", hex::encode_upper(apdu)));
        assert_eq!(hex::encode_upper(apdu), expect.to_uppercase());
        Ok(hex::decode(answer).unwrap())
    }
}

#[cfg(test)]
impl Drop for Scripted {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(self.steps.is_empty(), "unused script steps: {:?}", self.steps);
        }
    }
}

impl StatusWord {
    /// True for the transport-level words handled by [`exchange`].
    pub fn is_transport(self) -> bool {
        matches!(self.sw1(), 0x61 | 0x6C | 0x9F)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_get_response_chain() {
        let mut card = Scripted::new(&[
            ("812B8001 03 9E0100 00", "6103"),
            ("01C0000003", "AABBCC 6102"),
            ("01C0000002", "DDEE 9000"),
        ]);
        let cmd = Command::new(0x81, 0x2B, 0x80, 0x01).with_data(vec![0x9E, 0x01, 0x00]).with_le(0);
        let rsp = exchange(&mut card, &cmd).unwrap();
        assert_eq!(hex::encode_upper(&rsp.data), "AABBCCDDEE");
        assert_eq!(rsp.sw, StatusWord::OK);
    }

    #[test]
    fn retries_with_corrected_le() {
        let mut card = Scripted::new(&[("80CB000000", "6C12"), ("80CB000012", "0102 9000")]);
        let rsp = exchange(&mut card, &Command::new(0x80, 0xCB, 0, 0).with_le(0)).unwrap();
        assert_eq!(rsp.data, vec![1, 2]);
    }

    #[test]
    fn exchange_ok_names_the_command() {
        let mut card = Scripted::new(&[("812A0101", "6985")]);
        let err =
            exchange_ok(&mut card, &Command::new(0x81, 0x2A, 1, 1), || "COMPUTE SIGNATURE INIT with key 01".into())
                .unwrap_err()
                .to_string();
        assert_eq!(err, "COMPUTE SIGNATURE INIT with key 01 failed: 6985 (conditions of use not satisfied)");
    }

    #[test]
    fn bounded_get_response_loop() {
        struct Endless;
        impl Transport for Endless {
            fn transmit_raw(&mut self, _: &[u8]) -> Result<Vec<u8>> {
                Ok(vec![0x61, 0x01])
            }
        }
        let err = exchange(&mut Endless, &Command::new(0x80, 0xCB, 0, 0)).unwrap_err();
        assert!(err.to_string().contains("GET RESPONSE"));
        assert!(StatusWord(0x6110).is_transport());
        assert!(!StatusWord(0x6A82).is_transport());
    }
}
