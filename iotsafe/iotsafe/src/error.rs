//! One error type for the helper; every variant names what failed (reader,
//! command, object id) so a test-rig operator can act on the message alone.

use crate::status::StatusWord;
use crate::tlv::TlvError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("PC/SC service not available: is pcscd running? ({0})")]
    NoService(pcsc::Error),

    #[error("no smart-card readers found (pcscd has no reader configured)")]
    NoReaders,

    #[error("no reader matches {wanted:?}; available: {}", available.join(", "))]
    ReaderNotFound { wanted: String, available: Vec<String> },

    #[error("reader name {wanted:?} is ambiguous, it matches: {}", matches.join(", "))]
    AmbiguousReader { wanted: String, matches: Vec<String> },

    #[error("no card in reader {reader:?}")]
    NoCard { reader: String },

    #[error("card removed from reader {reader:?} during {during}")]
    CardRemoved { reader: String, during: String },

    #[error("PC/SC error on reader {reader:?} during {during}: {source}")]
    Pcsc { reader: String, during: String, source: pcsc::Error },

    #[error("IoT SAFE applet {aid} not present on the card in {reader:?}: SELECT returned {sw}")]
    AppletNotFound { aid: String, reader: String, sw: StatusWord },

    #[error("{command} failed: {sw}")]
    Status { command: String, sw: StatusWord },

    #[error("{kind} {id} not found on the card")]
    ObjectNotFound { kind: &'static str, id: String },

    #[error("malformed card data: {0}")]
    Malformed(String),

    #[error("malformed TLV in {context}: {source}")]
    Tlv { context: String, source: TlvError },

    #[error("invalid argument: {0}")]
    Invalid(String),

    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),

    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl Error {
    pub fn tlv(context: impl Into<String>) -> impl FnOnce(TlvError) -> Error {
        let context = context.into();
        move |source| Error::Tlv { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
