//! The current state file, replaceable when a snapshot is installed, and
//! the newest index whose result a client may already hold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rdb_storage::btree::Db;

/// Holds the open state file. Readers take a clone of the current [`Db`]
/// (cheap: it is a shared handle); installing a snapshot swaps in a new one,
/// while readers of the old one finish on the old file's mapping.
///
/// The apply thread answers a write as soon as it has applied it, before the
/// transaction holding it commits (see applier.rs); `answered` is the newest
/// index so answered. A reader whose snapshot is older than that must wait
/// for the next commit, or a client could miss its own acknowledged write.
#[derive(Debug, Clone)]
pub struct StateCell {
    /// The current state file.
    db: Arc<Mutex<Db>>,
    /// The newest applied index whose result may have been sent to a client
    /// (only grows; 0 until a write is answered, and an installed snapshot
    /// is always past it).
    answered: Arc<AtomicU64>,
}

impl StateCell {
    /// A cell holding `db`.
    pub fn new(db: Db) -> Self {
        StateCell { db: Arc::new(Mutex::new(db)), answered: Arc::new(AtomicU64::new(0)) }
    }

    /// The current state file.
    pub fn get(&self) -> Db {
        self.db.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the state file.
    pub fn set(&self, db: Db) {
        *self.db.lock().unwrap_or_else(PoisonError::into_inner) = db;
    }

    /// The newest index whose result may have been sent to a client.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Acquire)
    }

    /// Records that the result of `index` is about to be sent.
    pub fn set_answered(&self, index: u64) {
        self.answered.fetch_max(index, Ordering::AcqRel);
    }
}
