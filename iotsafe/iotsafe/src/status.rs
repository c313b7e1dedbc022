//! ISO 7816-4 / IoT SAFE status words, decoded to words for error messages.

use std::fmt;

/// SW1SW2 as one number, e.g. `0x9000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    pub const OK: StatusWord = StatusWord(0x9000);
    /// IoT SAFE GET DATA: more of the object list follows (ask again with P2=01).
    pub const MORE_DATA: StatusWord = StatusWord(0x6300);
    pub const NOT_FOUND: StatusWord = StatusWord(0x6A82);

    pub fn from_bytes(sw1: u8, sw2: u8) -> Self {
        StatusWord(u16::from_be_bytes([sw1, sw2]))
    }

    pub fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }

    pub fn sw2(self) -> u8 {
        self.0 as u8
    }

    /// Normal completion. 63CF also counts: IoT SAFE uses it for "done, and a
    /// remote-admin session completed meanwhile".
    pub fn is_success(self) -> bool {
        self.0 == 0x9000 || self.0 == 0x63CF
    }

    /// What the status word means, in words. IoT SAFE-specific meanings
    /// (from the public middlewares, see research brief section 1) take
    /// precedence over the generic ISO ones.
    pub fn describe(self) -> String {
        let fixed = match self.0 {
            0x9000 => Some("success"),
            0x6300 => Some("more data available (object list continues)"),
            0x63CF => Some("success, remote administration completed"),
            0x6400 => Some("integrity error"),
            0x6581 => Some("memory failure"),
            0x6700 => Some("wrong length"),
            0x6881 => Some("logical channel not supported or not open"),
            0x6882 => Some("secure messaging not supported"),
            0x6981 => Some("command incompatible with file structure"),
            0x6982 => Some("security status not satisfied"),
            0x6983 => Some("authentication method blocked"),
            0x6984 => Some("referenced data invalidated (remote administration ongoing)"),
            0x6985 => Some("conditions of use not satisfied"),
            0x6986 => Some("command not allowed"),
            0x6989 => Some("remote administration failed or capacity exceeded"),
            0x6A80 => Some("incorrect data in command"),
            0x6A81 => Some("function not supported (no free logical channel)"),
            0x6A82 => Some("not found (applet or object absent)"),
            0x6A84 => Some("not enough memory"),
            0x6A86 => Some("incorrect parameters P1-P2"),
            0x6A88 => Some("referenced data (object id) not found"),
            0x6B00 => Some("wrong parameters (offset outside the file)"),
            0x6D00 => Some("instruction not supported"),
            0x6D01 => Some("signature verification failed"),
            0x6E00 => Some("class not supported (wrong CLA style?)"),
            0x6F00 => Some("unknown error, no precise diagnosis"),
            _ => None,
        };
        if let Some(text) = fixed {
            return text.to_string();
        }
        match self.sw1() {
            0x61 => format!("{} more response bytes available", self.sw2()),
            0x6C => format!("wrong Le, card wants {}", self.sw2()),
            0x9F => format!("{} response bytes available (SIM)", self.sw2()),
            0x62 => "warning, non-volatile memory unchanged".to_string(),
            0x63 => "warning, non-volatile memory changed".to_string(),
            0x64..=0x66 => "execution error".to_string(),
            0x67 => "wrong length".to_string(),
            0x68 => "functions in CLA not supported".to_string(),
            0x69 => "command not allowed".to_string(),
            0x6A => "wrong parameters".to_string(),
            0x6B => "wrong parameters P1-P2".to_string(),
            0x6D => "instruction not supported".to_string(),
            0x6E => "class not supported".to_string(),
            _ => "unknown status".to_string(),
        }
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X} ({})", self.0, self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_iot_safe_words() {
        assert_eq!(StatusWord(0x6A82).to_string(), "6A82 (not found (applet or object absent))");
        assert!(StatusWord(0x6985).describe().contains("conditions of use"));
        assert!(StatusWord(0x6E00).describe().contains("class not supported"));
        assert!(StatusWord(0x6D01).describe().contains("signature"));
    }

    #[test]
    fn decodes_parametric_words() {
        assert_eq!(StatusWord(0x6143).describe(), "67 more response bytes available");
        assert_eq!(StatusWord(0x6C10).describe(), "wrong Le, card wants 16");
        assert_eq!(StatusWord(0x6F12).describe(), "unknown status");
    }

    #[test]
    fn success_and_byte_accessors() {
        let sw = StatusWord::from_bytes(0x63, 0xCF);
        assert!(sw.is_success());
        assert!(StatusWord::OK.is_success());
        assert!(!StatusWord::MORE_DATA.is_success());
        assert_eq!((sw.sw1(), sw.sw2()), (0x63, 0xCF));
    }
}
