//! The trust map as a file: what the sync persists after each publication and loads at
//! start-up (so a restart serves the last good map before DNS answers), and what the
//! watcher loads for hand-made maps. The format itself is the model's
//! ([`TrustMap::from_json`], [`TrustMap::write_json`]); this module only does the I/O.

use std::io::Write;
use std::path::Path;

use crate::model::trustmap::{LoadError, TrustMap};
use crate::stores::files;

/// The trust map file is not secret: operators' tools read it.
pub const FILE_MODE: u32 = 0o644;

impl TrustMap {
    /// Reads and parses the map at `path`; the error names the file.
    pub fn load(path: &Path) -> Result<TrustMap, LoadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError { file: file.clone(), reason: format!("cannot read: {e}") })?;
        TrustMap::from_json(&text, &file)
    }

    /// Writes the snapshot atomically (see [`files::replace_with`]).
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        files::replace_with(path, FILE_MODE, |f| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            self.write_json(&mut w)?;
            w.flush()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::model::policy::Policy;
    use crate::model::trustmap::TrustMap;

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.json");
        std::fs::write(&path, "old").unwrap();
        TrustMap::new(Policy::default(), BTreeMap::new(), 3, 0).write_atomic(&path).unwrap();
        assert_eq!(TrustMap::load(&path).unwrap().generation, 3);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }
}
