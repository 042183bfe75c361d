//! Opening a data directory: the WAL, the newest valid snapshot, and the
//! state file, in an order that never leaves the state behind the log.

use std::path::Path;

use rdb_storage::btree::Db;
use rdb_storage::wal::{Wal, WalOptions};

use super::error::{Error, Result};
use super::snapshot_dir::{SnapshotDir, SnapshotFile};
use super::snapshot_file::SnapshotHeader;
use super::state_file::{self, INSTALL_NAME, STATE_FILE_NAME};
use super::{InitialMembership, NodeConfig, SNAPSHOT_DIR_NAME};
use crate::raft::{Membership, Position};

/// What a node starts from.
pub(super) struct Recovered {
    /// The log.
    pub(super) wal: Wal,
    /// The state file.
    pub(super) db: Db,
    /// The snapshot directory.
    pub(super) snapshots: SnapshotDir,
    /// The newest snapshot that verified, if any.
    pub(super) newest: Option<SnapshotFile>,
    /// Where Raft's log starts (the index before its first entry).
    pub(super) floor: Position,
    /// The state file's applied index and term.
    pub(super) applied: Position,
    /// The membership as of `applied`.
    pub(super) membership: Membership,
}

/// Opens everything under `config.data_dir`, creating what is missing.
pub(super) fn recover(config: &NodeConfig) -> Result<Recovered> {
    let disk = config.disk.clone();
    let state_dir = config.data_dir.join("state");
    disk.create_dir_all(&state_dir).map_err(Error::io("create", &state_dir))?;
    // Leftovers of interrupted transfers and installs are never trusted
    // (opening the snapshot directory removes its own).
    let install = state_dir.join(INSTALL_NAME);
    if let Err(e) = disk.remove(&install) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(Error::io("remove", &install)(e));
        }
    }
    let snapshots = SnapshotDir::open(disk.clone(), &config.data_dir.join(SNAPSHOT_DIR_NAME))?;
    let wal_dir = config.data_dir.join("wal");
    let options = WalOptions { segment_bytes_max: config.wal_segment_bytes };
    let wal = Wal::open(disk.clone(), &wal_dir, options).map_err(Error::storage("WAL"))?;
    let newest = snapshots.newest_valid()?;
    let state_path = state_dir.join(STATE_FILE_NAME);
    let state_exists = disk.list(&state_dir).map_err(Error::io("list", &state_dir))?;
    if !state_exists.iter().any(|name| name == STATE_FILE_NAME) {
        if let Some((path, header)) = &newest {
            // A data directory holding only a snapshot (a restored backup).
            log::info!(
                "no state file; starting from snapshot {} at index {}",
                path.display(),
                header.meta.index
            );
            restore_state_file(&snapshots, path, &state_dir)?;
        }
    }
    let db = match Db::open(disk.clone(), &state_path) {
        Ok(db) => db,
        Err(error) => {
            let Some((path, _)) = newest.as_ref() else {
                log::error!("state file: {error}; and no valid snapshot to restore it from");
                return Err(Error::storage("state file")(error));
            };
            log::error!("state file: {error}; restoring it from {}", path.display());
            restore_state_file(&snapshots, path, &state_dir)?;
            Db::open(disk.clone(), &state_path).map_err(Error::storage("restored state file"))?
        }
    };
    let mut applied = applied_of(&db);
    let mut db = db;
    let first = wal.first_index();
    if applied.index + 1 < first {
        // The log no longer holds what the state file lacks: start from a
        // snapshot that reaches the log instead.
        let (path, _) = newest
            .as_ref()
            .filter(|(_, header)| header.meta.index + 1 >= first)
            .ok_or_else(|| Error::Inconsistent(format!(
                "the state file is at index {} but the WAL starts at {first}, and no valid snapshot \
                 covers the gap; move this data directory aside and replace this member with a \
                 new one (docs/OPERATIONS.md, \"A node will not start\")",
                applied.index
            )))?;
        log::warn!(
            "state file at {} is behind the log; restoring {}",
            applied.index,
            path.display()
        );
        drop(db);
        restore_state_file(&snapshots, path, &state_dir)?;
        db = Db::open(disk, &state_path).map_err(Error::storage("restored state file"))?;
        applied = applied_of(&db);
    }
    let mut wal = wal;
    if applied.index > wal.last_index() {
        // Only an empty log may end before the state (a node started from a
        // snapshot alone); entries missing from a non-empty one mean the WAL
        // is not this state file's.
        if wal.last_index() + 1 != wal.first_index() {
            return Err(Error::Inconsistent(format!(
                "the state file has applied index {} but the WAL {} ends at {}: \
                 the WAL does not belong to this state file",
                applied.index,
                wal_dir.display(),
                wal.last_index()
            )));
        }
        wal.purge_prefix(applied.index).map_err(Error::storage("WAL"))?;
    }
    let floor = log_floor(&wal, applied);
    let membership = membership_of(&db, &config.initial)?;
    Ok(Recovered { wal, db, snapshots, newest, floor, applied, membership })
}

/// Where Raft's log starts: what the WAL holds. Entries up to the state
/// file's applied index are applied already (Raft is told so) but are still
/// sent to followers that lack them; without them a node restarted as
/// leader could serve a lagging follower or a new learner only with a
/// snapshot. The floor is the start of the log if the WAL still holds entry
/// 1, else its first entry (whose term is known; the one before it may not
/// be), or the applied index if the WAL holds nothing at or below it.
fn log_floor(wal: &Wal, applied: Position) -> Position {
    let first = wal.first_index();
    match wal.term(first) {
        Some(_) if first == 1 && applied.index > 0 => Position::default(),
        Some(term) if first <= applied.index => Position { index: first, term },
        _ => applied,
    }
}

fn applied_of(db: &Db) -> Position {
    state_file::applied_of(&db.begin_read())
}

/// The membership the state file records; a new cluster's node records its
/// initial members now (so `--peers` means nothing once the data directory
/// holds a membership); a joining node starts knowing none.
fn membership_of(db: &Db, initial: &InitialMembership) -> Result<Membership> {
    if let Some(membership) = state_file::read_membership(&db.begin_read())? {
        if let InitialMembership::Bootstrap(given) = initial {
            if given.members() != membership.members() {
                log::warn!(
                    "--peers is ignored: the data directory records the members {} (they \
                     change through the log: rdb member)",
                    describe(&membership)
                );
            }
        }
        return Ok(membership);
    }
    let applied = applied_of(db);
    match initial {
        InitialMembership::Join => Ok(Membership::default()),
        InitialMembership::Bootstrap(membership) if applied.index == 0 => {
            let mut txn = db.begin_write().map_err(Error::storage("state file"))?;
            state_file::write_membership(&mut txn, membership)?;
            let meta = state_file::encode_meta(applied.index, applied.term);
            txn.commit(meta, rdb_storage::btree::Durability::Durable)
                .map_err(Error::storage("state file"))?;
            Ok(membership.clone())
        }
        // A state file from before memberships were recorded: the members
        // it was started with.
        InitialMembership::Bootstrap(membership) => Ok(membership.clone()),
    }
}

/// `id=peer` of each member, comma-separated.
fn describe(membership: &Membership) -> String {
    let members: Vec<String> =
        membership.members().iter().map(|m| format!("{}={}", m.id, m.peer)).collect();
    members.join(",")
}

/// Replaces the state file in `state_dir` with the content of the
/// snapshot at `snapshot`, durably: a crash leaves the old state file or the
/// new one, whole.
pub(super) fn restore_state_file(
    snapshots: &SnapshotDir,
    snapshot: &Path,
    state_dir: &Path,
) -> Result<SnapshotHeader> {
    let (temp, target) = (state_dir.join(INSTALL_NAME), state_dir.join(STATE_FILE_NAME));
    snapshots.unpack_to(snapshot, &temp, &target)
}
