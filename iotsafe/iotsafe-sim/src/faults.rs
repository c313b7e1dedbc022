//! Fault injection, configured by `--fault` flags or a control file that is
//! re-read before every APDU (one directive per line, `#` comments):
//!
//! ```text
//! remove-on <INS>          drop the vpcd connection when INS arrives (card pulled mid-sequence); fires once
//! sw <INS> <SW>            answer every INS with this status word, e.g. `sw 2B 6985`
//! truncate <INS> <N>       keep only the first N data bytes of INS answers (status word kept)
//! cut <INS> <N>            cut the whole R-APDU of INS to N bytes (N < 2 loses the status word)
//! declare-size <FID> <N>   GET DATA reports file FID as N bytes (shorter content than declared)
//! sig raw2|raw1|der|junk   signature encoding: 33 00 40 r||s (default) | 33 40 r||s | 33 LL DER | 33 05 garbage
//! t0                       answer with 61xx and make the host fetch data with GET RESPONSE
//! list-chunk <N>           object list split into N-byte pieces chained with 6300
//! strict-cla <00|80>       reject IoT SAFE commands whose CLA style differs (6E00)
//! wrong-le                 answer GET DATA applet info with 6Cxx when Le is not exact
//! ```

use crate::SimError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SigFormat {
    #[default]
    Raw2,
    Raw1,
    Der,
    Junk,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub remove_on: Option<u8>,
    pub sw: Vec<(u8, u16)>,
    pub truncate: Vec<(u8, usize)>,
    pub cut: Vec<(u8, usize)>,
    pub declare_size: Vec<(Vec<u8>, u16)>,
    pub sig: SigFormat,
    pub t0: bool,
    pub list_chunk: Option<usize>,
    pub strict_cla: Option<u8>,
    pub wrong_le: bool,
}

fn byte(s: Option<&str>, what: &str, line: &str) -> Result<u8, SimError> {
    s.and_then(|v| u8::from_str_radix(v, 16).ok())
        .ok_or_else(|| SimError(format!("fault {line:?}: {what} must be one hex byte")))
}

fn number(s: Option<&str>, what: &str, line: &str) -> Result<usize, SimError> {
    s.and_then(|v| v.parse().ok()).ok_or_else(|| SimError(format!("fault {line:?}: {what} must be a decimal number")))
}

impl Faults {
    /// Applies one directive.
    pub fn apply(&mut self, line: &str) -> Result<(), SimError> {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            return Ok(());
        }
        let mut w = line.split_whitespace();
        let verb = w.next().unwrap_or("");
        match verb {
            "remove-on" => self.remove_on = Some(byte(w.next(), "INS", line)?),
            "sw" => {
                let ins = byte(w.next(), "INS", line)?;
                let sw = w
                    .next()
                    .and_then(|v| u16::from_str_radix(v, 16).ok())
                    .ok_or_else(|| SimError(format!("fault {line:?}: SW must be 4 hex digits")))?;
                self.sw.push((ins, sw));
            }
            "truncate" => {
                let ins = byte(w.next(), "INS", line)?;
                self.truncate.push((ins, number(w.next(), "N", line)?));
            }
            "cut" => {
                let ins = byte(w.next(), "INS", line)?;
                self.cut.push((ins, number(w.next(), "N", line)?));
            }
            "declare-size" => {
                let fid = w
                    .next()
                    .and_then(|v| hex::decode(v).ok())
                    .ok_or_else(|| SimError(format!("fault {line:?}: FID must be hex")))?;
                let n = number(w.next(), "N", line)?;
                let n = u16::try_from(n).map_err(|_| SimError(format!("fault {line:?}: size above 65535")))?;
                self.declare_size.push((fid, n));
            }
            "sig" => {
                self.sig = match w.next() {
                    Some("raw2") => SigFormat::Raw2,
                    Some("raw1") => SigFormat::Raw1,
                    Some("der") => SigFormat::Der,
                    Some("junk") => SigFormat::Junk,
                    _ => return Err(SimError(format!("fault {line:?}: sig raw2|raw1|der|junk"))),
                }
            }
            "t0" => self.t0 = true,
            "list-chunk" => self.list_chunk = Some(number(w.next(), "N", line)?.max(1)),
            "strict-cla" => self.strict_cla = Some(byte(w.next(), "CLA", line)?),
            "wrong-le" => self.wrong_le = true,
            _ => return Err(SimError(format!("unknown fault directive {line:?}"))),
        }
        Ok(())
    }

    /// Parses a whole control file.
    pub fn parse(text: &str) -> Result<Self, SimError> {
        let mut f = Faults::default();
        for line in text.lines() {
            f.apply(line)?;
        }
        Ok(f)
    }

    pub fn sw_for(&self, ins: u8) -> Option<u16> {
        self.sw.iter().find(|(i, _)| *i == ins).map(|(_, sw)| *sw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_directive() {
        let f = Faults::parse(
            "# comment\nremove-on 2B\nsw 2B 6985\ntruncate B0 10\ncut CB 1\n\
             declare-size 02 400\nsig der\nt0\nlist-chunk 50\nstrict-cla 80\nwrong-le\n",
        )
        .unwrap();
        assert_eq!(f.remove_on, Some(0x2B));
        assert_eq!(f.sw_for(0x2B), Some(0x6985));
        assert_eq!(f.sw_for(0x2A), None);
        assert_eq!(f.truncate, vec![(0xB0, 10)]);
        assert_eq!(f.cut, vec![(0xCB, 1)]);
        assert_eq!(f.declare_size, vec![(vec![2], 400)]);
        assert_eq!(f.sig, SigFormat::Der);
        assert!(f.t0 && f.wrong_le);
        assert_eq!(f.list_chunk, Some(50));
        assert_eq!(f.strict_cla, Some(0x80));
    }

    #[test]
    fn rejects_bad_directives() {
        for bad in ["explode", "sw 2B", "sw ZZ 9000", "truncate B0 x", "sig rsa", "declare-size 02 70000"] {
            assert!(Faults::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
