//! [`Outcome`]: what applying a command or running a query found, typed,
//! before an edge turns it into an answer. The HTTP/JSON answer of API.md is
//! `Reply::from(outcome)` (`reply.rs`); the state machine itself never
//! speaks in statuses, so every replica, the CLI and the peer forwarding
//! path share one meaning of each result.

use super::item::Revisions;

/// What was looked for and not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No item has the key.
    Key,
    /// No item holds the value.
    Value,
    /// The collection does not exist.
    Collection,
    /// The lease does not exist (expired or revoked).
    Lease,
    /// The collection keeps no value index.
    ValueIndex,
}

impl Missing {
    /// The word API.md uses for it ("key not found").
    pub fn noun(self) -> &'static str {
        match self {
            Missing::Key => "key",
            Missing::Value => "value",
            Missing::Collection => "collection",
            Missing::Lease => "lease",
            Missing::ValueIndex => "value index",
        }
    }
}

/// The result of one command or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// One item: as written, as deleted (its old value), or as read.
    Item {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Its revisions (as written, as they were when deleted, or as read).
        revisions: Revisions,
    },
    /// The item would not fit the state file's limits; nothing changed.
    TooLarge {
        /// Bytes of the stored key and item.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A range delete removed this many keys.
    Deleted {
        /// The collection.
        collection: String,
        /// Keys removed (0 is not an error).
        deleted: u64,
        /// More keys of the range remain (past `DELETE_RANGE_KEYS_MAX`).
        more: bool,
        /// Each removed item: key, value and revisions (for watchers; not
        /// in the answer).
        keys: Vec<(String, String, Revisions)>,
    },
    /// The command needs a higher cluster version than the state has (a
    /// member still runs an older binary); nothing changed.
    NeedsVersion {
        /// The version it needs.
        needed: u64,
        /// The cluster's version.
        current: u64,
    },
    /// The collection was dropped with all its items.
    Dropped {
        /// The collection.
        collection: String,
    },
    /// Nothing matched; nothing changed.
    NotFound {
        /// The collection looked in.
        collection: String,
        /// What was missing.
        missing: Missing,
    },
    /// A compare-and-swap whose expectation failed; nothing changed.
    CasMismatch {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
        /// Its current value (None: absent).
        current: Option<String>,
        /// Its current mod_revision (0: absent, or written before cluster
        /// version 2).
        mod_revision: u64,
    },
    /// A value-addressed put drew a key that is already taken (256 random
    /// bits: practically never); every replica refuses it the same way and
    /// the client retries.
    KeyTaken,
    /// Items of a range, in key order.
    Items {
        /// The collection.
        collection: String,
        /// (key, value, revisions) of each item.
        items: Vec<(String, String, Revisions)>,
        /// More items follow past the limit.
        more: bool,
    },
    /// A txn: whether its compares held, and each operation's outcome in
    /// order.
    Txn {
        /// Every compare held (the success operations ran).
        succeeded: bool,
        /// The outcomes of the operations that ran.
        results: Vec<Outcome>,
    },
    /// A lease was granted.
    Lease {
        /// Its id.
        id: u64,
        /// Its time to live, in milliseconds.
        ttl_ms: u64,
    },
    /// A lease was revoked and its keys deleted.
    LeaseRevoked {
        /// The lease.
        id: u64,
        /// Each deleted item: collection, key, value, revisions before.
        removed: Vec<(String, String, String, Revisions)>,
    },
    /// A logged command that does not read (refused alike everywhere).
    Malformed(String),
    /// A bound was reached (what: "leases", "keys on one lease"); nothing
    /// changed.
    LimitReached(&'static str),
    /// The names of the collections, sorted.
    Collections(Vec<String>),
    /// The collection's value index was dropped (its items stay).
    ValueIndexDropped {
        /// The collection.
        collection: String,
    },
    /// A value-addressed action on a collection that keeps no value index
    /// (made by a key-addressed write at cluster version 3 or later, or its
    /// index dropped); nothing changed.
    NoValueIndex {
        /// The collection.
        collection: String,
    },
}

impl Outcome {
    /// One item, without revisions.
    pub fn item(collection: &str, key: &str, value: &str) -> Self {
        Self::item_at(collection, key, value, Revisions::default())
    }

    /// One item with its revisions.
    pub fn item_at(collection: &str, key: &str, value: &str, revisions: Revisions) -> Self {
        Outcome::Item {
            collection: collection.into(),
            key: key.into(),
            value: value.into(),
            revisions,
        }
    }

    /// Nothing found.
    pub fn not_found(collection: &str, missing: Missing) -> Self {
        Outcome::NotFound { collection: collection.into(), missing }
    }
}
