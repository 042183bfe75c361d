//! Opening a data directory: the WAL, the newest valid snapshot, and the
//! state file, in an order that never leaves the state behind the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdb_storage::btree::Db;
use rdb_storage::disk::RealDisk;
use rdb_storage::wal::{Wal, WalOptions};

use super::snapshot_file::{self, SnapshotHeader};
use super::state_file::{self, INSTALL_NAME, STATE_FILE_NAME};
use super::{InitialMembership, NodeConfig, SNAPSHOT_DIR_NAME};
use crate::raft::{Membership, SnapshotMeta};

/// What a node starts from.
pub(super) struct Recovered {
    /// The log.
    pub(super) wal: Wal,
    /// The state file.
    pub(super) db: Db,
    /// The newest snapshot that verified, if any.
    pub(super) newest: Option<(PathBuf, SnapshotHeader)>,
    /// Where Raft's log starts (the index before its first entry).
    pub(super) floor: SnapshotMeta,
    /// The state file's applied index and term.
    pub(super) applied: SnapshotMeta,
    /// The membership as of `applied`.
    pub(super) membership: Membership,
}

/// Opens everything under `config.data_dir`, creating what is missing.
pub(super) fn recover(config: &NodeConfig) -> Result<Recovered, String> {
    let disk = Arc::new(RealDisk);
    let state_dir = config.data_dir.join("state");
    let snapshot_dir = config.data_dir.join(SNAPSHOT_DIR_NAME);
    for dir in [&state_dir, &snapshot_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Leftovers of interrupted transfers and installs are never trusted.
    for leftover in [
        snapshot_dir.join(snapshot_file::INCOMING_NAME),
        snapshot_dir.join(snapshot_file::TEMP_NAME),
        state_dir.join(INSTALL_NAME),
    ] {
        let _ = std::fs::remove_file(leftover);
    }
    let wal_dir = config.data_dir.join("wal");
    let options = WalOptions { segment_bytes_max: config.wal_segment_bytes };
    let wal = Wal::open(disk.clone(), &wal_dir, options)
        .map_err(|e| format!("WAL {}: {e}", wal_dir.display()))?;
    let newest = newest_valid_snapshot(&snapshot_dir);
    let state_path = state_dir.join(STATE_FILE_NAME);
    if !state_path.exists() {
        if let Some((path, header)) = &newest {
            // A data directory holding only a snapshot (a restored backup).
            log::info!(
                "no state file; starting from snapshot {} at index {}",
                path.display(),
                header.meta.index
            );
            restore_state_file(path, &state_dir)?;
        }
    }
    let db = match Db::open(disk.clone(), &state_path) {
        Ok(db) => db,
        Err(error) => {
            let (path, _) = newest.as_ref().ok_or_else(|| {
                format!("state file: {error}; and no valid snapshot to restore it from")
            })?;
            log::error!("state file: {error}; restoring it from {}", path.display());
            restore_state_file(path, &state_dir)?;
            Db::open(disk.clone(), &state_path).map_err(|e| format!("restored state file: {e}"))?
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
            .ok_or_else(|| format!(
                "the state file is at index {} but the WAL starts at {first}, and no valid snapshot \
                 covers the gap; move this data directory aside and restart the node empty so \
                 that the leader sends it a snapshot",
                applied.index
            ))?;
        log::warn!(
            "state file at {} is behind the log; restoring {}",
            applied.index,
            path.display()
        );
        drop(db);
        restore_state_file(path, &state_dir)?;
        db = Db::open(disk, &state_path).map_err(|e| format!("restored state file: {e}"))?;
        applied = applied_of(&db);
    }
    let mut wal = wal;
    if applied.index > wal.last_index() {
        // Only an empty log may end before the state (a node started from a
        // snapshot alone); entries missing from a non-empty one mean the WAL
        // is not this state file's.
        if wal.last_index() + 1 != wal.first_index() {
            return Err(format!(
                "the state file has applied index {} but the WAL {} ends at {}: \
                 the WAL does not belong to this state file",
                applied.index,
                wal_dir.display(),
                wal.last_index()
            ));
        }
        wal.purge_prefix(applied.index).map_err(|e| format!("WAL {}: {e}", wal_dir.display()))?;
    }
    let floor = log_floor(&wal, applied);
    let membership = membership_of(&db, &config.initial)?;
    Ok(Recovered { wal, db, newest, floor, applied, membership })
}

/// Where Raft's log starts: what the WAL holds. Entries up to the state
/// file's applied index are applied already (Raft is told so) but are still
/// sent to followers that lack them; without them a node restarted as
/// leader could serve a lagging follower or a new learner only with a
/// snapshot. The floor is the start of the log if the WAL still holds entry
/// 1, else its first entry (whose term is known; the one before it may not
/// be), or the applied index if the WAL holds nothing at or below it.
fn log_floor(wal: &Wal, applied: SnapshotMeta) -> SnapshotMeta {
    let first = wal.first_index();
    match wal.term(first) {
        Some(_) if first == 1 && applied.index > 0 => SnapshotMeta::default(),
        Some(term) if first <= applied.index => SnapshotMeta { index: first, term },
        _ => applied,
    }
}

fn applied_of(db: &Db) -> SnapshotMeta {
    state_file::applied_of(&db.begin_read())
}

/// The membership the state file records; a new cluster's node records its
/// initial members now (so `--peers` means nothing once the data directory
/// holds a membership); a joining node starts knowing none.
fn membership_of(db: &Db, initial: &InitialMembership) -> Result<Membership, String> {
    if let Some(membership) = state_file::read_membership(&db.begin_read())? {
        return Ok(membership);
    }
    let applied = applied_of(db);
    match initial {
        InitialMembership::Join => Ok(Membership::default()),
        InitialMembership::Bootstrap(membership) if applied.index == 0 => {
            let mut txn = db.begin_write().map_err(|e| format!("state file: {e}"))?;
            state_file::write_membership(&mut txn, membership)?;
            let meta = state_file::encode_meta(applied.index, applied.term);
            txn.commit(meta, rdb_storage::btree::Durability::Durable)
                .map_err(|e| format!("state file: {e}"))?;
            Ok(membership.clone())
        }
        // A state file from before memberships were recorded: the members
        // it was started with.
        InitialMembership::Bootstrap(membership) => Ok(membership.clone()),
    }
}

/// The newest snapshot whose content verifies; damaged ones are reported
/// and skipped in favour of older ones.
fn newest_valid_snapshot(dir: &Path) -> Option<(PathBuf, SnapshotHeader)> {
    for (path, _) in snapshot_file::list(dir) {
        match snapshot_file::verify(&path) {
            Ok(header) => return Some((path, header)),
            Err(why) => log::error!("skipping damaged snapshot: {why}"),
        }
    }
    None
}

/// Replaces the state file with a snapshot's content, durably.
pub(super) fn restore_state_file(snapshot: &Path, state_dir: &Path) -> Result<(), String> {
    let temp = state_dir.join(INSTALL_NAME);
    let mut out = std::fs::File::create(&temp).map_err(|e| format!("{}: {e}", temp.display()))?;
    snapshot_file::unpack(snapshot, &mut out)?;
    out.sync_all().map_err(|e| format!("{}: {e}", temp.display()))?;
    drop(out);
    let target = state_dir.join(STATE_FILE_NAME);
    std::fs::rename(&temp, &target).map_err(|e| format!("{}: {e}", target.display()))?;
    snapshot_file::sync_dir(state_dir)
}
