//! Module state: configuration, slots (PC/SC readers) and sessions.

use std::collections::HashMap;

use cryptoki_sys::*;

use iotsafe::applet::{AppletConfig, ChannelMode};
use iotsafe::reader::{self, Target};

use crate::objects::{self, Object};

/// Configuration from the environment, read at C_Initialize:
/// `IOTSAFE_READER` reader name substring (default: every reader),
/// `IOTSAFE_AID` applet AID hex, `IOTSAFE_CLA` 00|80|81,
/// `IOTSAFE_TOKEN_LABEL` (default "iotsafe"), `IOTSAFE_TRACE=1` APDU trace.
#[derive(Debug, Clone)]
pub struct Config {
    pub reader_filter: Option<String>,
    pub target: Target,
    pub label: String,
}

impl Config {
    pub fn from_env() -> Config {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut applet = AppletConfig::default();
        if let Some(aid) = var("IOTSAFE_AID").and_then(|a| hex::decode(a).ok()) {
            applet.aid = aid;
        }
        if let Some(cla) = var("IOTSAFE_CLA").and_then(|c| u8::from_str_radix(&c, 16).ok()) {
            applet.cla = cla;
        }
        applet.channel = ChannelMode::Open;
        Config {
            reader_filter: var("IOTSAFE_READER"),
            target: Target { reader: None, applet, trace: var("IOTSAFE_TRACE").is_some() },
            label: var("IOTSAFE_TOKEN_LABEL").unwrap_or_else(|| "iotsafe".into()),
        }
    }
}

pub struct FindState {
    pub results: Vec<CK_OBJECT_HANDLE>,
}

pub struct Session {
    pub slot: CK_SLOT_ID,
    pub flags: CK_FLAGS,
    pub find: Option<FindState>,
    /// Private key chosen by C_SignInit.
    pub sign_key: Option<Vec<u8>>,
}

pub struct State {
    pub config: Config,
    /// Reader names; a slot id is an index into this list.
    pub readers: Vec<String>,
    pub sessions: HashMap<CK_SESSION_HANDLE, Session>,
    pub next_session: CK_SESSION_HANDLE,
    /// Objects per slot, loaded when the first session opens.
    pub objects: HashMap<CK_SLOT_ID, Vec<Object>>,
    pub logged_in: bool,
}

impl State {
    pub fn new(config: Config) -> State {
        State {
            config,
            readers: Vec::new(),
            sessions: HashMap::new(),
            next_session: 1,
            objects: HashMap::new(),
            logged_in: false,
        }
    }

    /// Re-reads the reader list, keeping existing slot ids stable.
    pub fn refresh_readers(&mut self) {
        let Ok(ctx) = reader::establish() else { return };
        let Ok(list) = reader::list(&ctx) else { return };
        for r in list {
            let wanted = match &self.config.reader_filter {
                Some(f) => r.name.to_lowercase().contains(&f.to_lowercase()),
                None => true,
            };
            if wanted && !self.readers.contains(&r.name) {
                self.readers.push(r.name);
            }
        }
    }

    pub fn reader(&self, slot: CK_SLOT_ID) -> Option<&str> {
        usize::try_from(slot).ok().and_then(|i| self.readers.get(i)).map(String::as_str)
    }

    /// Token present = card in the reader and the applet selects.
    pub fn token_present(&self, slot: CK_SLOT_ID) -> bool {
        let Some(name) = self.reader(slot) else { return false };
        let Ok(ctx) = reader::establish() else { return false };
        reader::with_applet_on(&ctx, name, &self.config.target, |_| Ok(())).is_ok()
    }

    /// Reads the card's objects into PKCS#11 objects.
    pub fn load_objects(&mut self, slot: CK_SLOT_ID) -> Result<(), CK_RV> {
        let name = self.reader(slot).ok_or(CKR_SLOT_ID_INVALID)?.to_string();
        let ctx = reader::establish().map_err(|_| CKR_DEVICE_ERROR)?;
        let objs = reader::with_applet_on(&ctx, &name, &self.config.target, |a| {
            let list = a.object_list()?;
            // Closures below need the applet mutably in turn; collect first.
            let mut points = HashMap::new();
            let mut files = HashMap::new();
            for o in &list {
                match o.kind {
                    iotsafe::objects::ObjectKind::PublicKey => {
                        if let Ok(p) = a.public_key(&o.id) {
                            points.insert(o.id.clone(), p);
                        }
                    }
                    iotsafe::objects::ObjectKind::File if o.file_usage != Some(0x01) => {
                        if let Ok(d) = a.read_file(&o.id) {
                            files.insert(o.id.clone(), d);
                        }
                    }
                    _ => {}
                }
            }
            Ok(objects::build(&list, |id| points.get(id).cloned(), |id| files.get(id).cloned()))
        })
        .map_err(|e| {
            if self.config.target.trace {
                eprintln!("iotsafe-pkcs11: loading objects from {name:?}: {e}");
            }
            match e {
                iotsafe::Error::NoCard { .. } | iotsafe::Error::CardRemoved { .. } => CKR_TOKEN_NOT_PRESENT,
                iotsafe::Error::AppletNotFound { .. } => CKR_TOKEN_NOT_RECOGNIZED,
                _ => CKR_DEVICE_ERROR,
            }
        })?;
        self.objects.insert(slot, objs);
        Ok(())
    }

    /// Signs on the card of `slot` with private key `key_id`.
    pub fn sign(&self, slot: CK_SLOT_ID, key_id: &[u8], digest: &[u8; 32]) -> Result<[u8; 64], CK_RV> {
        let name = self.reader(slot).ok_or(CKR_SLOT_ID_INVALID)?;
        let ctx = reader::establish().map_err(|_| CKR_DEVICE_ERROR)?;
        reader::with_applet_on(&ctx, name, &self.config.target, |a| a.sign_digest(key_id, digest)).map_err(|e| {
            if self.config.target.trace {
                eprintln!("iotsafe-pkcs11: signing with key {}: {e}", hex::encode(key_id));
            }
            match e {
                iotsafe::Error::NoCard { .. } | iotsafe::Error::CardRemoved { .. } => CKR_DEVICE_REMOVED,
                iotsafe::Error::ObjectNotFound { .. } => CKR_KEY_HANDLE_INVALID,
                _ => CKR_DEVICE_ERROR,
            }
        })
    }
}
