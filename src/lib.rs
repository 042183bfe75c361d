//! rdb: a fault-tolerant, replicated key-value store.
//!
//! A cluster of 3 or 5 nodes keeps one replicated log with Raft and answers
//! JSON commands over HTTP(S). Dependencies point inward:
//!
//! - [`raft`]: consensus as a deterministic state machine (no IO, clocks or
//!   threads), with a seeded cluster simulator;
//! - [`storage`] (the `rdb-storage` crate): the write-ahead log, the
//!   copy-on-write B+tree state file and the disk seam;
//! - [`kv`]: the replicated state machine: request parsing, log-entry
//!   encoding, deterministic apply, queries;
//! - [`node`]: the one place that does IO for Raft: the event loop, the apply
//!   thread, snapshots, and the handle the edges use;
//! - [`rpc`] and [`http`]: the Cap'n Proto peer edge and the tide client
//!   edge, which see only the node's handle; [`tls`] configures both;
//! - [`cli`]: `rdb serve` and `rdb dev`.

pub mod cli;
pub mod http;
pub mod kv;
pub mod node;
pub mod raft;
pub mod rpc;
pub mod tls;
pub use rdb_storage as storage;
