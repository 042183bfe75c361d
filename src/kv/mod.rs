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
mod query;
mod reply;
mod request;

pub use apply::apply;
pub use command::{new_key, Command, COMMAND_BYTES_MAX};
pub use query::Query;
pub use reply::Reply;
pub use request::{Consistency, Request};

/// The largest request body accepted, in bytes: a maximal value plus room
/// for JSON escaping and the other fields.
pub const BODY_BYTES_MAX: usize = 3 << 20;
/// The largest value, in bytes (the state file's own limit).
pub const VALUE_BYTES_MAX: usize = rdb_storage::btree::VALUE_BYTES_MAX;
/// The largest key, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;
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

/// The tree mapping a value's hash to its key.
fn index_tree(collection: &str) -> String {
    format!("i/{collection}")
}

/// The index key of a value.
fn value_hash(value: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(value.as_bytes()).into()
}
