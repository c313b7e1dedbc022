//! The trust map holder and its file watcher.
//!
//! Readers call [`SnapshotCell::load`] (one atomic pointer load, no lock). A background
//! thread polls the snapshot file's identity (inode, size, mtime) and, when it changes,
//! parses the new file off the request path and swaps it in. A file that fails to parse
//! is logged with its path and reason, and the previous snapshot stays in service.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::model::snapshot::SnapshotCell;
use crate::model::trustmap::TrustMap;
use crate::stores::files::FileStamp;

/// Loads `path` into `cell` if it changed since `last`. Returns the new stamp.
fn reload_if_changed(label: &str, path: &Path, cell: &SnapshotCell, last: Option<FileStamp>) -> Option<FileStamp> {
    let now = FileStamp::of(path);
    if now == last {
        return last;
    }
    let Some(_) = now else {
        log::warn!("{label}: trust map {} disappeared; keeping the snapshot in service", path.display());
        return now;
    };
    match TrustMap::load(path) {
        Ok(map) => {
            log::info!(
                "{label}: loaded trust map {} (generation {}, {} SSIDs, {} names, {} certificate associations)",
                path.display(),
                map.generation,
                map.policy().ssids().count(),
                map.name_count(),
                map.association_count()
            );
            cell.store(map);
        }
        Err(e) => log::error!("{label}: refused trust map {e}; keeping the previous snapshot"),
    }
    now
}

/// The watcher thread; stopping it is dropping the sender and joining.
pub struct Watcher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Loads `path` now (so the instance starts with a map if there is one) and starts
    /// polling it every `interval`.
    pub fn start(
        label: String,
        path: PathBuf,
        cell: Arc<SnapshotCell>,
        interval: Duration,
    ) -> std::io::Result<Watcher> {
        let mut last = reload_if_changed(&label, &path, &cell, None);
        if last.is_none() {
            log::warn!("{label}: trust map {} does not exist yet; rejecting until it does", path.display());
        }
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("rlm_rust-watch".into()).spawn(move || {
            // A message or a dropped sender both mean stop.
            while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                last = reload_if_changed(&label, &path, &cell, last);
            }
        })?;
        Ok(Watcher { stop: Some(tx), thread: Some(thread) })
    }

    /// Stops the watcher thread and waits for it; the last map loaded stays served.
    /// Idempotent; dropping the watcher does the same.
    pub fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::model::policy::Policy;

    #[test]
    fn picks_up_a_replaced_file_and_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.json");
        TrustMap::new(Policy::default(), BTreeMap::new(), 1, 0).write_atomic(&path).unwrap();
        let cell = Arc::new(SnapshotCell::default());
        let mut w = Watcher::start("t".into(), path.clone(), cell.clone(), Duration::from_millis(10)).unwrap();
        assert_eq!(cell.load().as_ref().unwrap().generation, 1);

        TrustMap::new(Policy::default(), BTreeMap::new(), 2, 0).write_atomic(&path).unwrap();
        wait_for(|| cell.load().as_ref().unwrap().generation == 2);

        std::fs::write(&path, "{ broken").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(cell.load().as_ref().unwrap().generation, 2, "a bad file never replaces a good map");

        TrustMap::new(Policy::default(), BTreeMap::new(), 3, 0).write_atomic(&path).unwrap();
        wait_for(|| cell.load().as_ref().unwrap().generation == 3);
        w.stop();
    }

    fn wait_for(cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "condition not reached in 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
