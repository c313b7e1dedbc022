//! The simulated card's persistent memory: one directory per card, so keys
//! and files survive a simulated removal/reinsertion and a test can inspect
//! or pre-seed them.
//!
//! Layout (ids upper-case hex):
//!   key-<ID>.pem    PKCS#8 private key (P-256); the public key id is the same
//!   key-<ID>.label  label bytes (optional)
//!   file-<ID>.bin   file content
//!   file-<ID>.label label bytes (optional)

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};

use crate::SimError;

pub struct KeyObject {
    pub label: Vec<u8>,
    pub key: EcKey<Private>,
}

pub struct FileObject {
    pub label: Vec<u8>,
    pub data: Vec<u8>,
}

pub struct Store {
    dir: PathBuf,
    pub keys: BTreeMap<Vec<u8>, KeyObject>,
    pub files: BTreeMap<Vec<u8>, FileObject>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |e| SimError(format!("{}: {e}", path.display()))
}

fn id_from(name: &str, prefix: &str, suffix: &str) -> Option<Vec<u8>> {
    let hex_id = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    hex::decode(hex_id).ok().filter(|id| !id.is_empty())
}

pub fn p256() -> EcGroup {
    // The curve name is a compile-time constant known to every OpenSSL.
    EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("OpenSSL lacks P-256")
}

impl Store {
    /// Loads every object in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self, SimError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut store = Store { dir: dir.to_path_buf(), keys: BTreeMap::new(), files: BTreeMap::new() };
        let entries = fs::read_dir(dir).map_err(io(dir))?;
        for entry in entries {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if let Some(id) = id_from(&name, "key-", ".pem") {
                let pem = fs::read(&path).map_err(io(&path))?;
                let key = PKey::private_key_from_pem(&pem)
                    .and_then(|k| k.ec_key())
                    .map_err(|e| SimError(format!("{}: {e}", path.display())))?;
                let label = store.read_label("key", &id);
                store.keys.insert(id, KeyObject { label, key });
            } else if let Some(id) = id_from(&name, "file-", ".bin") {
                let data = fs::read(&path).map_err(io(&path))?;
                let label = store.read_label("file", &id);
                store.files.insert(id, FileObject { label, data });
            }
        }
        Ok(store)
    }

    fn path(&self, kind: &str, id: &[u8], ext: &str) -> PathBuf {
        self.dir.join(format!("{kind}-{}.{ext}", hex::encode_upper(id)))
    }

    fn read_label(&self, kind: &str, id: &[u8]) -> Vec<u8> {
        fs::read(self.path(kind, id, "label")).unwrap_or_default()
    }

    /// Generates (or replaces) the key pair `id` and persists it.
    pub fn generate_key(&mut self, id: &[u8], label: Option<&[u8]>) -> Result<(), SimError> {
        let key = EcKey::generate(&p256()).map_err(|e| SimError(e.to_string()))?;
        self.put_key(id, key, label)
    }

    pub fn put_key(&mut self, id: &[u8], key: EcKey<Private>, label: Option<&[u8]>) -> Result<(), SimError> {
        let pem = PKey::from_ec_key(key.clone())
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(|e| SimError(e.to_string()))?;
        let path = self.path("key", id, "pem");
        fs::write(&path, pem).map_err(io(&path))?;
        let label = match label {
            Some(l) => {
                let lp = self.path("key", id, "label");
                fs::write(&lp, l).map_err(io(&lp))?;
                l.to_vec()
            }
            None => self
                .keys
                .get(id)
                .map(|k| k.label.clone())
                .unwrap_or_else(|| format!("KEY_{}", hex::encode_upper(id)).into_bytes()),
        };
        self.keys.insert(id.to_vec(), KeyObject { label, key });
        Ok(())
    }

    /// Writes file `id`; keeps an existing label unless one is given.
    pub fn put_file(&mut self, id: &[u8], data: &[u8], label: Option<&[u8]>) -> Result<(), SimError> {
        let path = self.path("file", id, "bin");
        fs::write(&path, data).map_err(io(&path))?;
        let label = match label {
            Some(l) => {
                let lp = self.path("file", id, "label");
                fs::write(&lp, l).map_err(io(&lp))?;
                l.to_vec()
            }
            None => self
                .files
                .get(id)
                .map(|f| f.label.clone())
                .unwrap_or_else(|| format!("FILE_{}", hex::encode_upper(id)).into_bytes()),
        };
        self.files.insert(id.to_vec(), FileObject { label, data: data.to_vec() });
        Ok(())
    }
}
