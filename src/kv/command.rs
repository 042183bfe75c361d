//! The writes that travel through the Raft log.

use serde::{Deserialize, Serialize};

/// A write, as stored in a log entry (JSON). Everything apply needs is
/// inside: in particular the key of a value-addressed put, chosen by the
/// proposing node, so that every replica stores the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Value-addressed put: add `value` under `key` unless it is present.
    PutValue {
        /// The collection.
        collection: String,
        /// The key to use if the value is new.
        key: String,
        /// The value.
        value: String,
    },
    /// Key-addressed put: set `key` to `value`.
    PutKey {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove the value and its key.
    DeleteValue {
        /// The collection.
        collection: String,
        /// The value.
        value: String,
    },
    /// Remove a key.
    DeleteKey {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
    },
    /// Set `key` to `value` if its value is `expected` (None: absent).
    Cas {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
        /// The value it must have now.
        expected: Option<String>,
        /// The new value.
        value: String,
    },
    /// Remove a collection and everything in it.
    Drop {
        /// The collection.
        collection: String,
    },
}

impl Command {
    /// The bytes of a log entry.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a log entry; an entry that is not a command is an error that
    /// apply answers and skips.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("log entry is not a command: {e}"))
    }

    /// The API action, for metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Command::PutValue { .. } | Command::PutKey { .. } => "put",
            Command::DeleteValue { .. } | Command::DeleteKey { .. } => "delete",
            Command::Cas { .. } => "cas",
            Command::Drop { .. } => "drop collection",
        }
    }
}

/// A fresh key: 64 lowercase hex characters from the operating system's
/// random source (256 bits, so two keys never meet in practice).
pub fn new_key() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS source is unavailable only on exotic platforms; fall back
        // to a seeded generator rather than refusing writes.
        let mut state = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() << 30 ^ u64::from(d.subsec_nanos()))
            ^ u64::from(std::process::id());
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&crate::raft::splitmix64(&mut state).to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
