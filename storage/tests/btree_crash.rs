//! Crash consistency of the state file on the simulated disk.
//!
//! A deterministic history of commits is built, then the next commit is cut
//! at each of its disk operations in turn: the operation fails, the disk
//! crashes (unsynced writes lost, torn or zeroed, chosen by the seed), and
//! the file is reopened. The reopened state must equal, exactly, either the
//! last commit whose meta sync returned or the one being made, never a mix,
//! and `check` must account for every page. The same is done for `sync` after
//! deferred commits.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdb_storage::btree::{Db, Durability, KeyRange};
use rdb_storage::disk::SimDisk;
use rdb_storage::Error;

const PATH: &str = "/data/state/state.db";

type State = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// The changes of commit number `n`: puts of small and overflow values,
/// deletes, a tree created and one dropped.
fn try_commit(db: &Db, n: u64, durability: Durability) -> Result<(), Error> {
    let mut txn = db.begin_write()?;
    let tree = format!("tree{}", n % 3);
    txn.create_tree(&tree)?;
    for i in 0..120u64 {
        let key = format!("key{:04}", (i * 7 + n * 13) % 300);
        let value = vec![(n + i).to_le_bytes()[0]; if i % 17 == 0 { 3000 } else { 90 }];
        txn.put(&tree, key.as_bytes(), &value)?;
    }
    for i in 0..30u64 {
        txn.delete(&tree, format!("key{:04}", (i * 11 + n) % 300).as_bytes())?;
    }
    if n % 4 == 3 {
        txn.drop_tree(&format!("tree{}", (n + 1) % 3))?;
    }
    if n % 3 == 0 {
        // Past the writer's writeback-hint size, so that the cut also lands
        // on hints (the tree's small pages alone never reach it).
        txn.put(&tree, b"large", &vec![n.to_le_bytes()[0]; 600 << 10])?;
    }
    txn.commit([n.to_le_bytes()[0]; 32], durability)
}

fn apply_commit(db: &Db, n: u64, durability: Durability) {
    try_commit(db, n, durability).unwrap_or_else(|e| panic!("commit {n}: {e}"));
}

fn state(db: &Db) -> State {
    let reader = db.begin_read();
    reader.check().expect("every page accounted for");
    let mut state = State::new();
    for name in reader.list_trees().unwrap() {
        let entries = reader
            .range(&name, &KeyRange::all())
            .unwrap()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap());
        state.insert(name, entries.collect());
    }
    state
}

/// A disk holding `commits` durable commits; returns it with its state.
fn history(seed: u64, commits: u64) -> (SimDisk, Db, State) {
    let disk = SimDisk::new(seed);
    let db = Db::open(Arc::new(disk.clone()), PATH).unwrap();
    for n in 0..commits {
        apply_commit(&db, n, Durability::Durable);
    }
    let before = state(&db);
    (disk, db, before)
}

/// Drops `db`, crashes `disk` and reopens it after the cut at operation
/// `failing`: the state must be `after` if the cut call still returned,
/// else `before` or `after`, never a mix. True if it is `after`.
fn crash_and_check(
    disk: &SimDisk,
    db: Db,
    returned: bool,
    before: &State,
    after: &State,
    failing: u64,
) -> bool {
    drop(db);
    disk.crash();
    let reopened = state(&Db::open(Arc::new(disk.clone()), PATH).unwrap());
    if returned {
        assert!(reopened == *after, "operation {failing}: a call that returned was lost");
    }
    assert!(reopened == *before || reopened == *after, "operation {failing}: a mix");
    reopened == *after
}

/// Disk operations that commit `n` takes after `commits` others, and how
/// many of them were writeback hints.
fn operations_of_commit(commits: u64) -> (u64, u64) {
    let (disk, db, _) = history(0, commits);
    let (start, hints) = (disk.ops(), disk.writeback_hints());
    apply_commit(&db, commits, Durability::Durable);
    (disk.ops() - start, disk.writeback_hints() - hints)
}

#[test]
fn a_crash_at_any_step_of_a_commit_leaves_the_old_or_the_new_state() {
    const COMMITS: u64 = 6;
    let (operations, hints) = operations_of_commit(COMMITS);
    assert!(hints > 0, "the cut commit is large enough to start writeback early");
    let after = {
        let (_, db, _) = history(0, COMMITS);
        apply_commit(&db, COMMITS, Durability::Durable);
        state(&db)
    };
    let mut outcomes = [0, 0];
    for failing in 0..=operations {
        let (disk, db, before) = history(failing + 1, COMMITS);
        disk.fail_at(disk.ops() + failing);
        let committed = try_commit(&db, COMMITS, Durability::Durable).is_ok();
        let new = crash_and_check(&disk, db, committed, &before, &after, failing);
        outcomes[usize::from(new)] += 1;
    }
    eprintln!("a commit of {operations} disk operations, cut at each: {outcomes:?} (old, new)");
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both outcomes happen: {outcomes:?}");
}

#[test]
fn a_crash_at_any_step_of_sync_keeps_deferred_commits_whole_or_not_at_all() {
    let (probe_disk, probe_db, _) = history(0, 3);
    apply_commit(&probe_db, 3, Durability::Deferred);
    apply_commit(&probe_db, 4, Durability::Deferred);
    let after = state(&probe_db);
    let start = probe_disk.ops();
    probe_db.sync().unwrap();
    let operations = probe_disk.ops() - start;
    for failing in 0..=operations {
        let (disk, db, before) = history(failing + 100, 3);
        apply_commit(&db, 3, Durability::Deferred);
        apply_commit(&db, 4, Durability::Deferred);
        disk.fail_at(disk.ops() + failing);
        let synced = db.sync().is_ok();
        crash_and_check(&disk, db, synced, &before, &after, failing);
    }
}

#[test]
fn deferred_commits_are_lost_as_a_whole_by_a_crash_without_sync() {
    let (disk, db, before) = history(7, 4);
    apply_commit(&db, 4, Durability::Deferred);
    assert_ne!(state(&db), before, "readers see a deferred commit at once");
    drop(db);
    disk.crash();
    assert_eq!(state(&Db::open(Arc::new(disk.clone()), PATH).unwrap()), before);
}

/// Durable commits 0-2 and deferred commit 3; returns the disk, the
/// database, the state before commit 3 and the state with it.
fn sync_around_commits(seed: u64) -> (SimDisk, Db, State, State) {
    let (disk, db, before) = history(seed, 3);
    apply_commit(&db, 3, Durability::Deferred);
    let synced = state(&db);
    (disk, db, before, synced)
}

/// A sync's second half (data sync, meta write, meta sync) runs while
/// deferred commits 4 and 5 are made, as the node's apply thread commits
/// while its syncer syncs: a crash at any of its steps leaves the state
/// before the sync or as of its first half, never the later commits, never
/// a mix, and every page accounted for (the later commits wrote only pages
/// neither meta reaches).
#[test]
fn deferred_commits_made_while_a_sync_writes_its_meta_stay_out_of_it() {
    let (probe_disk, probe_db, _, synced) = sync_around_commits(0);
    let pending = probe_db.begin_sync().unwrap();
    apply_commit(&probe_db, 4, Durability::Deferred);
    apply_commit(&probe_db, 5, Durability::Deferred);
    let latest = state(&probe_db);
    let start = probe_disk.ops();
    pending.finish().unwrap();
    let operations = probe_disk.ops() - start;
    assert!(operations >= 3, "data sync, meta write, meta sync: {operations}");
    probe_db.sync().unwrap();
    drop(probe_db);
    probe_disk.crash();
    let reopened = state(&Db::open(Arc::new(probe_disk.clone()), PATH).unwrap());
    assert!(reopened == latest, "the next sync makes the later commits durable");

    let mut outcomes = [0, 0];
    for failing in 0..=operations {
        let (disk, db, before, synced_now) = sync_around_commits(failing + 200);
        assert!(synced_now == synced, "the same history");
        let pending = db.begin_sync().unwrap();
        apply_commit(&db, 4, Durability::Deferred);
        apply_commit(&db, 5, Durability::Deferred);
        disk.fail_at(disk.ops() + failing);
        let finished = pending.finish().is_ok();
        let new = crash_and_check(&disk, db, finished, &before, &synced, failing);
        outcomes[usize::from(new)] += 1;
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both outcomes happen: {outcomes:?}");
}
