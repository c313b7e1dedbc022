//! The vpcd wire protocol (vsmartcard `vpcd.c`): TCP, the card connects to
//! pcscd's ifd-vpcd listener; every message both ways is a big-endian u16
//! length then the payload. One-byte payloads from vpcd are control:
//! 00 power off, 01 power on, 02 reset, 04 get ATR (only 04 is answered).
//! Anything longer is a C-APDU answered by one R-APDU.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::card::{Card, Outcome};
use crate::faults::Faults;
use crate::SimError;

/// A minimal valid T=1 ATR: TS 3B, T0 80, TD1 80, TD2 01, TCK 01.
pub const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// How a session with the reader ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// pcscd closed the connection (stopped, or our stream was shut down).
    ReaderClosed,
    /// A `remove-on` fault pulled the card.
    Removed,
}

/// Connects to vpcd on loopback, retrying while pcscd starts up.
pub fn connect(port: u16, timeout: Duration) -> Result<TcpStream, SimError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(SimError(format!(
                    "cannot reach vpcd on {addr} within {timeout:?}: {e} (is pcscd running with the vpcd reader?)"
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_frame(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut frame = Vec::with_capacity(payload.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload[..usize::from(len)]);
    s.write_all(&frame)
}

/// Re-reads the control file when its content changed.
struct Control<'a> {
    path: Option<&'a Path>,
    last: Option<String>,
}

impl Control<'_> {
    fn refresh(&mut self, card: &mut Card, base: &Faults) {
        let Some(path) = self.path else { return };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if self.last.as_deref() == Some(text.as_str()) {
            return;
        }
        let mut faults = base.clone();
        let mut valid = true;
        for line in text.lines() {
            if let Err(e) = faults.apply(line) {
                eprintln!("iotsafe-sim: control file {}: {e}", path.display());
                valid = false;
            }
        }
        if valid {
            card.set_faults(faults);
        }
        self.last = Some(text);
    }
}

/// Serves one reader connection until it closes or a fault removes the card.
pub fn serve(stream: &mut TcpStream, card: &mut Card, control: Option<&Path>, trace: bool) -> Result<End, SimError> {
    let base = card.faults.clone();
    let mut control = Control { path: control, last: None };
    loop {
        let msg = match read_frame(stream) {
            Ok(m) => m,
            Err(_) => return Ok(End::ReaderClosed),
        };
        let io = |e: std::io::Error| SimError(format!("vpcd write: {e}"));
        match msg.as_slice() {
            [0x04] => write_frame(stream, &ATR).map_err(io)?,
            [0x00] | [0x01] | [0x02] => card.reset(),
            [_] => {} // unknown control byte: vpcd expects no answer
            apdu => {
                control.refresh(card, &base);
                match card.process(apdu) {
                    Outcome::Reply(rsp) => {
                        if trace {
                            eprintln!(
                                "iotsafe-sim: > {}\niotsafe-sim: < {}",
                                hex::encode_upper(apdu),
                                hex::encode_upper(&rsp)
                            );
                        }
                        write_frame(stream, &rsp).map_err(io)?
                    }
                    Outcome::Remove => {
                        if trace {
                            eprintln!("iotsafe-sim: > {} -> card removed", hex::encode_upper(apdu));
                        }
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        return Ok(End::Removed);
                    }
                }
            }
        }
    }
}
