//! The current state file, replaceable when a snapshot is installed.

use std::sync::{Arc, Mutex, PoisonError};

use rdb_storage::btree::Db;

/// Holds the open state file. Readers take a clone of the current [`Db`]
/// (cheap: it is a shared handle); installing a snapshot swaps in a new one,
/// while readers of the old one finish on the old file's mapping.
#[derive(Debug, Clone)]
pub struct StateCell {
    /// The current state file.
    db: Arc<Mutex<Db>>,
}

impl StateCell {
    /// A cell holding `db`.
    pub fn new(db: Db) -> Self {
        StateCell { db: Arc::new(Mutex::new(db)) }
    }

    /// The current state file.
    pub fn get(&self) -> Db {
        self.db.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the state file.
    pub fn set(&self, db: Db) {
        *self.db.lock().unwrap_or_else(PoisonError::into_inner) = db;
    }
}
