//! rdb: a fault-tolerant, replicated key-value store.
//!
//! A cluster of 3 or 5 nodes keeps one replicated log with Raft and answers
//! JSON commands over HTTP. This crate will hold the node; for now it holds
//! the Raft core ([`raft`]: consensus as a deterministic state machine, with
//! a seeded cluster simulator) and the storage layer, re-exported from
//! `rdb-storage`:
//!
//! - [`storage::wal`]: the segmented write-ahead log that holds the Raft log
//!   and hard state;
//! - [`storage::btree`]: the copy-on-write B+tree state file the replicated
//!   state machine will live in;
//! - [`storage::disk`]: the disk seam with a real and a crash-simulating
//!   implementation.
//!
//! See `../shared/DESIGN.md` for the layout the rest of the crate will follow
//! (`raft`, `kv`, `node`, `rpc`, `http`).

pub mod cli;
pub mod http;
pub mod kv;
pub mod node;
pub mod raft;
pub mod rpc;
pub mod tls;
pub use rdb_storage as storage;
