//! IoT SAFE (GSMA IoT.05) host-side library: APDUs, TLV, the applet command
//! set over PC/SC, CSR building and TLSA formatting. Used by the `iotsafe`
//! CLI and the `iotsafe-pkcs11` module.

pub mod apdu;
pub mod applet;
pub mod csr;
pub mod der;
pub mod error;
pub mod objects;
pub mod reader;
pub mod signature;
pub mod status;
pub mod tlsa;
pub mod tlv;
pub mod transport;

pub use error::{Error, Result};
