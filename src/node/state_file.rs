//! The state file's names and the metadata rdb keeps in it beside the
//! replicated data: the applied index and term (in the commit's 32 bytes of
//! user metadata) and the cluster's membership as of that index (in the
//! tree `s/raft`, which no collection can name: collections live in `d/`
//! and `i/` trees). A snapshot is an export of the state file, so it
//! carries both.

use rdb_storage::btree::{ReadTxn, WriteTxn, USER_META_BYTES};

use super::error::{Error, Result};
use crate::raft::{Index, Membership, Position, Term};

/// The state file's name inside `<data-dir>/state`.
pub const STATE_FILE_NAME: &str = "state.db";
/// The name a snapshot is unpacked under before it replaces the state file.
pub const INSTALL_NAME: &str = "state.db.install";
/// The tree of Raft's metadata.
const RAFT_TREE: &str = "s/raft";
/// The key of the membership in [`RAFT_TREE`].
const MEMBERSHIP_KEY: &[u8] = b"membership";

/// The state file's user metadata: applied index and its term.
pub fn encode_meta(index: Index, term: Term) -> [u8; USER_META_BYTES] {
    let mut meta = [0u8; USER_META_BYTES];
    meta[..8].copy_from_slice(&index.to_le_bytes());
    meta[8..16].copy_from_slice(&term.to_le_bytes());
    meta
}

/// Reads [`encode_meta`]'s layout.
pub fn decode_meta(meta: [u8; USER_META_BYTES]) -> (Index, Term) {
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&meta[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    (word(0), word(8))
}

/// The applied index and term of a read transaction.
pub fn applied_of(txn: &ReadTxn) -> Position {
    let (index, term) = decode_meta(txn.user_meta());
    Position { index, term }
}

/// The membership recorded in the state file, if any (a state file made
/// before membership was recorded, or a joining node's, has none).
pub fn read_membership(txn: &ReadTxn) -> Result<Option<Membership>> {
    match txn.get(RAFT_TREE, MEMBERSHIP_KEY).map_err(Error::storage("state file"))? {
        None => Ok(None),
        Some(bytes) => Membership::decode(bytes)
            .map(Some)
            .map_err(|source| Error::Membership { what: "state file", source }),
    }
}

/// Records `membership` in the state file (within `txn`).
pub fn write_membership(txn: &mut WriteTxn<'_>, membership: &Membership) -> Result<()> {
    txn.create_tree(RAFT_TREE).map_err(Error::storage("state file"))?;
    txn.put(RAFT_TREE, MEMBERSHIP_KEY, &membership.encode()).map_err(Error::storage("state file"))
}
