//! PC/SC side: finding the reader, connecting, and one transaction per
//! command sequence (so OpenSC or another PKCS#11 user polling the same SIM
//! cannot interleave APDUs with ours).

use std::ffi::CString;
use std::time::Duration;

use pcsc::{Card, Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use crate::applet::{Applet, AppletConfig};
use crate::error::{Error, Result};
use crate::transport::{Traced, Transport};

/// A reader as pcscd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderStatus {
    pub name: String,
    pub card_present: bool,
    pub atr: Vec<u8>,
}

/// Maps a PC/SC error to one naming the reader and the step.
pub fn pcsc_error(e: pcsc::Error, reader: &str, during: &str) -> Error {
    match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => Error::NoService(e),
        pcsc::Error::NoSmartcard => Error::NoCard { reader: reader.to_string() },
        pcsc::Error::RemovedCard => Error::CardRemoved { reader: reader.to_string(), during: during.to_string() },
        _ => Error::Pcsc { reader: reader.to_string(), during: during.to_string(), source: e },
    }
}

pub fn establish() -> Result<Context> {
    Context::establish(Scope::User).map_err(|e| pcsc_error(e, "", "connecting to pcscd"))
}

/// All readers with card presence and ATR. Uses a zero-timeout status
/// query, so it never blocks on a hung reader.
pub fn list(ctx: &Context) -> Result<Vec<ReaderStatus>> {
    let names = match ctx.list_readers_owned() {
        Ok(n) => n,
        Err(pcsc::Error::NoReadersAvailable) => return Ok(Vec::new()),
        Err(e) => return Err(pcsc_error(e, "", "listing readers")),
    };
    let mut states: Vec<ReaderState> = names.iter().map(|n| ReaderState::new(n.clone(), State::UNAWARE)).collect();
    if !states.is_empty() {
        match ctx.get_status_change(Duration::ZERO, &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => return Err(pcsc_error(e, "", "querying reader status")),
        }
    }
    Ok(states
        .iter()
        .map(|s| ReaderStatus {
            name: s.name().to_string_lossy().into_owned(),
            card_present: s.event_state().contains(State::PRESENT) && !s.event_state().contains(State::MUTE),
            atr: s.atr().to_vec(),
        })
        .collect())
}

/// Picks readers by exact name, else by case-insensitive substring. An
/// ambiguous substring is an error: vpcd always exposes two readers whose
/// names differ only in the last digits.
pub fn match_reader(readers: &[String], wanted: &str) -> Result<String> {
    if let Some(exact) = readers.iter().find(|r| r.as_str() == wanted) {
        return Ok(exact.clone());
    }
    let needle = wanted.to_lowercase();
    let hits: Vec<String> = readers.iter().filter(|r| r.to_lowercase().contains(&needle)).cloned().collect();
    match hits.len() {
        1 => Ok(hits[0].clone()),
        0 => Err(Error::ReaderNotFound { wanted: wanted.to_string(), available: readers.to_vec() }),
        _ => Err(Error::AmbiguousReader { wanted: wanted.to_string(), matches: hits }),
    }
}

/// A `Transport` over a connected card (or a transaction on it).
pub struct CardTransport<'a> {
    pub card: &'a Card,
    pub reader: String,
}

impl Transport for CardTransport<'_> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let during = format!("APDU INS {:02X}", apdu.get(1).copied().unwrap_or(0));
        let rsp = self.card.transmit(apdu, &mut buf).map_err(|e| pcsc_error(e, &self.reader, &during))?;
        if rsp.is_empty() {
            // vpcd (and some readers) hand back an empty answer when the
            // card vanishes mid-command; pcscd notices on its next presence
            // poll, so ask for the card state for a bounded moment.
            return Err(self.explain_empty_response(&during));
        }
        Ok(rsp.to_vec())
    }
}

impl CardTransport<'_> {
    fn explain_empty_response(&self, during: &str) -> Error {
        let deadline = std::time::Instant::now() + Duration::from_millis(1500);
        loop {
            match self.card.status2_owned() {
                Err(e) => return pcsc_error(e, &self.reader, during),
                Ok(st) if !st.status().contains(pcsc::Status::PRESENT) => {
                    return Error::CardRemoved { reader: self.reader.clone(), during: during.to_string() }
                }
                Ok(_) if std::time::Instant::now() >= deadline => {
                    return Error::Malformed(format!(
                        "card in reader {:?} gave an empty answer to {during}",
                        self.reader
                    ))
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// How the helper reaches the applet; shared by the CLI and the PKCS#11 module.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Reader name or substring; `None` = the one reader whose card has the applet.
    pub reader: Option<String>,
    pub applet: AppletConfig,
    /// Print every APDU to stderr.
    pub trace: bool,
}

pub fn connect(ctx: &Context, reader: &str) -> Result<Card> {
    let name = CString::new(reader).map_err(|_| Error::Invalid(format!("reader name {reader:?} contains NUL")))?;
    ctx.connect(&name, ShareMode::Shared, Protocols::ANY).map_err(|e| pcsc_error(e, reader, "connecting to the card"))
}

/// Resolves the target reader. Without a name, probes every reader that
/// holds a card for the applet and insists on exactly one.
pub fn resolve(ctx: &Context, target: &Target) -> Result<String> {
    let readers = list(ctx)?;
    if readers.is_empty() {
        return Err(Error::NoReaders);
    }
    let names: Vec<String> = readers.iter().map(|r| r.name.clone()).collect();
    if let Some(wanted) = &target.reader {
        return match_reader(&names, wanted);
    }
    let with_card: Vec<&ReaderStatus> = readers.iter().filter(|r| r.card_present).collect();
    if with_card.is_empty() {
        return Err(Error::NoCard { reader: names.join(", ") });
    }
    let mut hits = Vec::new();
    let mut last_err = None;
    for r in &with_card {
        match with_applet_on(ctx, &r.name, target, |_| Ok(())) {
            Ok(()) => hits.push(r.name.clone()),
            Err(e) => last_err = Some(e),
        }
    }
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => Err(last_err.unwrap_or(Error::NoReaders)),
        _ => Err(Error::AmbiguousReader {
            wanted: format!("(any reader with applet {})", hex::encode_upper(&target.applet.aid)),
            matches: hits,
        }),
    }
}

/// Connects to `reader`, begins a transaction, opens the applet, runs `f`,
/// closes the channel and ends the transaction, whatever `f` returned.
pub fn with_applet_on<R>(
    ctx: &Context,
    reader: &str,
    target: &Target,
    f: impl FnOnce(&mut Applet<Traced<CardTransport<'_>>>) -> Result<R>,
) -> Result<R> {
    let mut card = connect(ctx, reader)?;
    let tx = card.transaction().map_err(|e| pcsc_error(e, reader, "beginning a transaction"))?;
    let result = {
        let transport = Traced { inner: CardTransport { card: &tx, reader: reader.to_string() }, trace: target.trace };
        Applet::open(transport, target.applet.clone(), reader).and_then(|mut applet| {
            let r = f(&mut applet);
            let closed = applet.close();
            // The command's own error wins over a failure to close.
            let r = r?;
            closed?;
            Ok(r)
        })
    };
    // The card may be gone already; ending the transaction then fails and
    // there is nothing more to do about it.
    let _ = tx.end(Disposition::LeaveCard);
    result
}

/// [`resolve`] then [`with_applet_on`].
pub fn with_applet<R>(
    target: &Target,
    f: impl FnOnce(&mut Applet<Traced<CardTransport<'_>>>) -> Result<R>,
) -> Result<R> {
    let ctx = establish()?;
    let reader = resolve(&ctx, target)?;
    with_applet_on(&ctx, &reader, target, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["IoTSAFE Sim 00 00".into(), "IoTSAFE Sim 00 01".into()]
    }

    #[test]
    fn exact_then_substring() {
        assert_eq!(match_reader(&names(), "IoTSAFE Sim 00 01").unwrap(), "IoTSAFE Sim 00 01");
        assert_eq!(match_reader(&names(), "00 00").unwrap(), "IoTSAFE Sim 00 00");
        assert_eq!(match_reader(&names(), "sim 00 01").unwrap(), "IoTSAFE Sim 00 01");
    }

    #[test]
    fn ambiguous_and_missing_are_errors() {
        let err = match_reader(&names(), "iotsafe").unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(err.contains("IoTSAFE Sim 00 00, IoTSAFE Sim 00 01"), "{err}");
        let err = match_reader(&names(), "Gemalto").unwrap_err().to_string();
        assert_eq!(err, "no reader matches \"Gemalto\"; available: IoTSAFE Sim 00 00, IoTSAFE Sim 00 01");
    }

    #[test]
    fn error_mapping_names_reader() {
        let e = pcsc_error(pcsc::Error::RemovedCard, "R 00 00", "APDU INS 2B");
        assert_eq!(e.to_string(), "card removed from reader \"R 00 00\" during APDU INS 2B");
        let e = pcsc_error(pcsc::Error::NoSmartcard, "R 00 01", "x");
        assert_eq!(e.to_string(), "no card in reader \"R 00 01\"");
        let e = pcsc_error(pcsc::Error::NoService, "", "connecting to pcscd");
        assert!(e.to_string().starts_with("PC/SC service not available"));
    }
}
