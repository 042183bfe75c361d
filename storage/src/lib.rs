//! rdb's storage layer: everything that touches the disk, and nothing else.
//!
//! The crate is synchronous and knows nothing of Raft, the network or async
//! runtimes. It holds three pieces:
//!
//! - [`disk`]: the narrow seam every file operation goes through. Production
//!   uses [`disk::RealDisk`] over `std::fs`; tests use [`disk::SimDisk`], an
//!   in-memory disk that loses or tears unsynced writes when told to crash and
//!   fails a chosen operation with an IO error. Crash recovery is therefore
//!   tested, not hoped for.
//! - [`wal`]: the segmented write-ahead log that holds the Raft log and the
//!   Raft hard state. Appends are batched and made durable by one `sync`
//!   (group commit); recovery cuts a torn tail and refuses corruption.
//! - [`btree`]: the state file, a copy-on-write B+tree over a read-only
//!   memory map, with snapshot readers and a compact export.
//!
//! Byte layouts, invariants and recovery rules are written down in
//! `storage/FORMAT.md`; the code follows that document.

#![deny(missing_docs)]

pub mod btree;
pub mod disk;
mod error;
mod files;
mod le;
pub mod wal;

pub use error::{Error, Result};
