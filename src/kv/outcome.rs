//! [`Outcome`]: what applying a command or running a query found, typed,
//! before an edge turns it into an answer. The HTTP/JSON answer of API.md is
//! `Reply::from(outcome)` (`reply.rs`); the state machine itself never
//! speaks in statuses, so every replica, the CLI and the peer forwarding
//! path share one meaning of each result.

/// What was looked for and not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No item has the key.
    Key,
    /// No item holds the value.
    Value,
    /// The collection does not exist.
    Collection,
}

impl Missing {
    /// The word API.md uses for it ("key not found").
    pub fn noun(self) -> &'static str {
        match self {
            Missing::Key => "key",
            Missing::Value => "value",
            Missing::Collection => "collection",
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
    },
    /// A value-addressed put drew a key that is already taken (256 random
    /// bits: practically never); every replica refuses it the same way and
    /// the client retries.
    KeyTaken,
    /// Items of a range, in key order.
    Items {
        /// The collection.
        collection: String,
        /// (key, value) pairs.
        items: Vec<(String, String)>,
        /// More items follow past the limit.
        more: bool,
    },
    /// The names of the collections, sorted.
    Collections(Vec<String>),
}

impl Outcome {
    /// One item.
    pub fn item(collection: &str, key: &str, value: &str) -> Self {
        Outcome::Item { collection: collection.into(), key: key.into(), value: value.into() }
    }

    /// Nothing found.
    pub fn not_found(collection: &str, missing: Missing) -> Self {
        Outcome::NotFound { collection: collection.into(), missing }
    }
}
