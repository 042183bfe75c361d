//! The state file: a copy-on-write B+tree over a read-only memory map.
//!
//! rdb's replicated state machine lives in one file, `state/state.db`, in the
//! family of LMDB and bbolt. Readers walk the tree straight out of a shared
//! read-only mapping of the file: no copies, no locks, no system calls per
//! read. The one writer never changes a committed page; it decodes the nodes
//! on the paths it changes, edits them in memory, and at commit writes them to
//! free pages with positioned writes, asking the kernel to start writeback
//! as it goes so that the disk works while the rest is encoded
//! (`flush.rs`). The commit itself is a single page: one
//! of two checksummed meta pages, pointing at the new catalog root. A crash
//! at any point leaves the previous meta, and the tree it points at, intact.
//!
//! Because nothing reachable is ever overwritten, a reader keeps a stable
//! snapshot for as long as it likes while commits continue; freed pages return
//! to use only once no reader can reach them and a newer meta is durable.
//! Commits can be durable (two syncs) or deferred (no sync, made durable by
//! the next durable commit or [`Db::sync`]): the Raft log already makes
//! applied entries durable, so the apply loop defers and syncs now and then,
//! carrying the applied index in the meta's user metadata.
//!
//! Named trees (rdb's collections) hang off a catalog tree. Large values live
//! in overflow runs so that leaves stay small; a large key makes its node a
//! multi-page run. `storage/FORMAT.md` has the byte layouts, the commit
//! protocol, the free-page rule and the recovery steps; the `unsafe` of the
//! mapping is in `disk/mapping.rs` with its safety argument.

mod alloc;
mod catalog;
mod check;
mod cursor;
mod db;
mod export;
mod flush;
mod meta;
mod node;
mod page;
mod read;
mod scan;
mod shared;
mod tree;
mod view;
mod write;

pub use check::CheckReport;
pub use cursor::{KeyRange, Range};
pub use db::{Db, PendingSync};
pub use meta::USER_META_BYTES;
pub use page::{PageId, PAGE_BYTES};
pub use read::{ReadTxn, TreeReader};
pub use shared::Space;
pub use view::VALUE_INLINE_BYTES_MAX;
pub use write::{Durability, WriteTxn, KEY_BYTES_MAX, TREE_NAME_BYTES_MAX, VALUE_BYTES_MAX};
