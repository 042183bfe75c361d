//! The leader's lease deadlines (see `leases.rs`), a value of its own so
//! that the handle can hold it without depending on what uses it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

/// The leader's deadlines.
#[derive(Debug, Default)]
pub struct LeaseClock {
    inner: Mutex<Deadlines>,
}

#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// The term the deadlines were set in (a new term resets them).
    pub(super) term: u64,
    /// When each lease expires.
    pub(super) at: HashMap<u64, Instant>,
    /// Leases whose revoke is being proposed.
    pub(super) revoking: HashSet<u64>,
}

impl LeaseClock {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
