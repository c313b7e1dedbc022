//! The current trust map snapshot: where a feeder hands a new map to the request path.
//!
//! A request loads the snapshot once (one atomic load, no lock) and decides on it; a
//! feeder (the sync, or the watcher of a hand-made map) stores a new one, which the next
//! request sees. A snapshot in use stays alive until its last reader drops it.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::model::trustmap::TrustMap;

/// The current snapshot, shared by requests and writers.
#[derive(Default)]
pub struct SnapshotCell(ArcSwapOption<TrustMap>);

impl SnapshotCell {
    /// The snapshot now (None before the first map): what one request decides on.
    pub fn load(&self) -> arc_swap::Guard<Option<Arc<TrustMap>>> {
        self.0.load()
    }

    /// Publishes `map` to every later request.
    pub fn store(&self, map: TrustMap) {
        self.0.store(Some(Arc::new(map)));
    }
}
