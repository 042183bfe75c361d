//! The replicated state machine: the commands of API.md and how they apply
//! onto the state file.
//!
//! A client's JSON request is parsed and checked here, on the node that
//! receives it, before anything reaches the log ([`Request::parse`]): bad
//! input is answered at once and changes nothing. A write becomes a
//! [`Command`], serialized into a log entry; every replica applies the same
//! entries in the same order with [`apply`], which is deterministic: it reads
//! only the state file and the entry, so a command that fails (a `cas`
//! mismatch, a missing item) fails identically everywhere and the apply loop
//! moves on. The key of a value-addressed `put` is therefore chosen before
//! proposing ([`Command::PutValue`] carries it), never during apply.
//!
//! Each collection is two trees in the state file: `d/<name>` maps keys to
//! values, and `i/<name>` maps the SHA-256 of a value to the key that holds
//! it, which is what the value-addressed actions of rdbv2 look up. Reads
//! ([`Query`]) run on a read transaction, on any thread.

mod apply;
mod command;
mod error;
mod item;
pub mod lease;
mod limits;
mod outcome;
mod query;
mod reply;
mod request;
mod strict_json;
mod txn;

pub use apply::{apply, cluster_version, set_cluster_version, Applying, DELETE_RANGE_KEYS_MAX};
pub use command::{new_key, Command, CLUSTER_VERSION, COMMAND_BYTES_MAX};
pub use error::Error;
pub use item::{decode as decode_item, Revisions};
pub use limits::{
    Limits, BODY_BYTES_MAX, BODY_BYTES_MAX_LIMIT, KEY_BYTES_MAX, KEY_BYTES_MAX_LIMIT,
    VALUE_BYTES_MAX, VALUE_BYTES_MAX_LIMIT,
};
pub use outcome::{Missing, Outcome};
pub use query::Query;
pub use reply::Reply;
pub use request::{parse_txn, Txn};
pub use request::{Consistency, Request, WatchSpec, WATCH_WAIT_MS_MAX};
pub use strict_json::parse as strict_json;
pub use txn::{Compare, Expect, TxnSpec, TXN_OPS_MAX};
/// The largest collection name, in bytes (leaves room for the tree prefix).
pub const COLLECTION_BYTES_MAX: usize = 200;
/// The `range` limit when none is given.
pub const RANGE_LIMIT_DEFAULT: usize = 100;
/// The largest `range` limit.
pub const RANGE_LIMIT_MAX: usize = 10_000;

/// The tree holding a collection's keys and values.
fn data_tree(collection: &str) -> String {
    format!("d/{collection}")
}

/// The keys a request's `start` (inclusive), `end` (exclusive) and `prefix`
/// select, ascending.
fn key_range(
    start: &Option<String>,
    end: &Option<String>,
    prefix: &Option<String>,
) -> rdb_storage::btree::KeyRange {
    let bytes = |bound: &Option<String>| bound.as_ref().map(|s| s.as_bytes().to_vec());
    rdb_storage::btree::KeyRange {
        start: bytes(start),
        end: bytes(end),
        prefix: bytes(prefix),
        reverse: false,
    }
}

/// The tree mapping a value's hash to its key.
fn index_tree(collection: &str) -> String {
    format!("i/{collection}")
}

/// Whether a value-addressed action can work on `collection`: it keeps a
/// value index, or does not exist yet. Before cluster version 3 every
/// collection keeps one; from it on, one made by a key-addressed write
/// does not (nor one whose index was dropped). `tree_exists` answers for
/// the transaction at hand, read or write.
fn keeps_value_index(
    collection: &str,
    mut tree_exists: impl FnMut(&str) -> rdb_storage::Result<bool>,
) -> rdb_storage::Result<bool> {
    Ok(tree_exists(&index_tree(collection))? || !tree_exists(&data_tree(collection))?)
}

/// The index key of a value.
fn value_hash(value: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(value.as_bytes()).into()
}
