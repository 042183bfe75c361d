//! Crash consistency of snapshot files on the simulated disk: making one,
//! receiving one from the leader, and installing one over the state file.
//!
//! As in the state file's own sweep (storage/tests/btree_crash.rs), each
//! step is cut at each of its disk operations in turn: that operation fails,
//! the disk crashes (unsynced writes lost, torn or zeroed, chosen by the
//! seed; [`SEEDS`] seeds per cut), and the directory is opened again. What survives must be the old
//! state or the new one, whole, never a mix; and a step that returned Ok
//! must survive. Installing is checked through `rdb::node::open`, the
//! recovery a restarted node runs.

use std::path::Path;
use std::sync::Arc;

use rdb::node::state_file::{decode_meta, encode_meta};
use rdb::node::{InitialMembership, NodeConfig, SnapshotDir, SnapshotHeader};
use rdb::raft::{Membership, Position};
use rdb::storage::btree::{Db, Durability, KeyRange};
use rdb::storage::disk::{Disk, SimDisk};

const SNAPSHOTS: &str = "/data/snapshots";
const STATE: &str = "/data/state/state.db";
const INSTALL_TEMP: &str = "/data/state/state.db.install";
/// Where the snapshot's state is built before being exported.
const OTHER: &str = "/data/other/state.db";

/// Crashes tried per cut operation, each with its own seed.
const SEEDS: u64 = 4;

type Items = Vec<(Vec<u8>, Vec<u8>)>;

/// Every (cut operation, seed) of a step of `operations` operations.
fn cuts(operations: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..=operations).flat_map(|failing| (0..SEEDS).map(move |s| (failing, failing * SEEDS + s + 1)))
}

fn disk_of(seed: u64) -> (SimDisk, Arc<dyn Disk>) {
    let sim = SimDisk::new(seed);
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    (sim, disk)
}

/// A state file at `path` holding `keys` keys tagged `tag`, applied up to
/// `index`, durable.
fn state_file(disk: &Arc<dyn Disk>, path: &str, tag: &str, keys: u32, index: u64) -> Db {
    let db = Db::open(disk.clone(), path).expect("open");
    let mut txn = db.begin_write().expect("writer");
    txn.create_tree("d/c").expect("tree");
    for i in 0..keys {
        let value = format!("{tag}-{i}-").repeat(usize::try_from(i % 40).expect("small") + 1);
        txn.put("d/c", format!("key-{i:05}").as_bytes(), value.as_bytes()).expect("put");
    }
    txn.commit(encode_meta(index, 2), Durability::Durable).expect("commit");
    db
}

fn items(db: &Db) -> Items {
    let txn = db.begin_read();
    txn.check().expect("every page accounted for");
    let range = txn.range("d/c", &KeyRange::all()).expect("range");
    range.map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("item")).collect()
}

fn membership() -> Membership {
    Membership::voters_only(&[1, 2, 3])
}

/// The exported bytes a snapshot of `db` carries.
fn export(db: &Db) -> Vec<u8> {
    let mut out = Vec::new();
    db.begin_read().export(&mut out).expect("export");
    out
}

/// After a crash: the snapshot directory, reopened, holds no snapshot or
/// exactly `expected`, whole, with the content `content`; none if
/// `must_exist` is false and none was published. Returns whether it held it.
fn check_snapshots(
    disk: &Arc<dyn Disk>,
    expected: &SnapshotHeader,
    content: &[u8],
    must_exist: bool,
    step: u64,
) -> bool {
    let dir = SnapshotDir::open(disk.clone(), Path::new(SNAPSHOTS)).expect("reopen");
    let names = disk.list(Path::new(SNAPSHOTS)).expect("list");
    assert!(names.iter().all(|n| n.starts_with("state_")), "step {step}: leftovers {names:?}");
    let found = dir.newest_valid().expect("readable");
    assert!(dir.list().expect("list").len() <= 1, "step {step}: more than one snapshot");
    match found {
        None => {
            assert!(!must_exist, "step {step}: a snapshot that was acknowledged was lost");
            false
        }
        Some((path, header)) => {
            assert_eq!(&header, expected, "step {step}: another snapshot");
            let mut unpacked = Vec::new();
            dir.unpack(&path, &mut unpacked).expect("unpack");
            assert!(unpacked == content, "step {step}: the content differs");
            true
        }
    }
}

#[test]
fn a_crash_at_any_step_of_making_a_snapshot_leaves_none_or_a_whole_one() {
    let meta = Position { index: 40, term: 2 };
    let setup = |seed| {
        let (sim, disk) = disk_of(seed);
        let db = state_file(&disk, STATE, "a", 600, meta.index);
        let dir = SnapshotDir::open(disk.clone(), Path::new(SNAPSHOTS)).expect("dir");
        (sim, disk, db, dir)
    };
    let (probe, _, db, dir) = setup(0);
    let content = export(&db);
    let start = probe.ops();
    let (_, header) = dir.write(&db.begin_read(), meta, &membership()).expect("write");
    let operations = probe.ops() - start;
    let mut outcomes = [0, 0];
    for (failing, seed) in cuts(operations) {
        let (sim, disk, db, dir) = setup(seed);
        sim.fail_at(sim.ops() + failing);
        let written = dir.write(&db.begin_read(), meta, &membership()).is_ok();
        drop((db, dir));
        sim.crash();
        let kept = check_snapshots(&disk, &header, &content, written, failing);
        outcomes[usize::from(kept)] += 1;
    }
    eprintln!(
        "making a snapshot: {operations} operations, cut at each: {outcomes:?} (none, whole)"
    );
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both outcomes happen: {outcomes:?}");
}

#[test]
fn a_crash_at_any_step_of_receiving_a_snapshot_leaves_none_or_a_whole_one() {
    // The leader's file, made on a disk of its own.
    let (leader, leader_disk) = disk_of(0);
    let db = state_file(&leader_disk, STATE, "b", 800, 70);
    let content = export(&db);
    let leader_dir = SnapshotDir::open(leader_disk, Path::new(SNAPSHOTS)).expect("dir");
    let meta = Position { index: 70, term: 2 };
    let (path, header) = leader_dir.write(&db.begin_read(), meta, &membership()).expect("write");
    let file = leader.contents(&path).expect("the leader's file");
    let receive = |dir: &SnapshotDir| {
        let mut receiving = dir.receive()?;
        for chunk in file.chunks(4096) {
            receiving.append(chunk)?;
        }
        receiving.finish(meta)
    };
    let (probe, probe_disk) = disk_of(0);
    let dir = SnapshotDir::open(probe_disk, Path::new(SNAPSHOTS)).expect("dir");
    let start = probe.ops();
    assert_eq!(receive(&dir).expect("receive").1, header);
    let operations = probe.ops() - start;
    let mut outcomes = [0, 0];
    for (failing, seed) in cuts(operations) {
        let (sim, disk) = disk_of(seed);
        let dir = SnapshotDir::open(disk.clone(), Path::new(SNAPSHOTS)).expect("dir");
        sim.fail_at(sim.ops() + failing);
        let received = receive(&dir).is_ok();
        drop(dir);
        sim.crash();
        let kept = check_snapshots(&disk, &header, &content, received, failing);
        outcomes[usize::from(kept)] += 1;
    }
    eprintln!("receiving: {operations} operations, cut at each: {outcomes:?} (none, whole)");
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both outcomes happen: {outcomes:?}");
}

/// A disk with the state file at index 10 (`a`) and a snapshot at index 25
/// of another state (`b`); returns them with both states' items.
fn install_setup(seed: u64) -> (SimDisk, Arc<dyn Disk>, SnapshotDir, std::path::PathBuf) {
    let (sim, disk) = disk_of(seed);
    drop(state_file(&disk, STATE, "a", 500, 10));
    let other = state_file(&disk, OTHER, "b", 700, 25);
    let dir = SnapshotDir::open(disk.clone(), Path::new(SNAPSHOTS)).expect("dir");
    let meta = Position { index: 25, term: 2 };
    let (path, _) = dir.write(&other.begin_read(), meta, &membership()).expect("write");
    (sim, disk, dir, path)
}

#[test]
fn a_crash_at_any_step_of_installing_a_snapshot_leaves_the_old_or_the_new_state() {
    let (probe, probe_disk, dir, path) = install_setup(0);
    let before = items(&Db::open(probe_disk.clone(), STATE).expect("a"));
    let after = items(&Db::open(probe_disk.clone(), OTHER).expect("b"));
    let start = probe.ops();
    dir.unpack_to(&path, Path::new(INSTALL_TEMP), Path::new(STATE)).expect("install");
    let operations = probe.ops() - start;
    // Written a page at a time, so that the page cache holds it in
    // one-page folios, which the state file's one-page writes need.
    let state = probe_disk.open_read(Path::new(STATE)).expect("installed");
    let pages = state.len().expect("length") / rdb::storage::btree::PAGE_BYTES as u64;
    assert!(pages > 2 && operations > pages, "{operations} operations for {pages} pages");
    let mut outcomes = [0, 0];
    for (failing, seed) in cuts(operations) {
        let (sim, disk, dir, path) = install_setup(seed);
        // The old state file is open, as the node's is while it installs.
        let old = Db::open(disk.clone(), STATE).expect("old");
        sim.fail_at(sim.ops() + failing);
        let installed = dir.unpack_to(&path, Path::new(INSTALL_TEMP), Path::new(STATE)).is_ok();
        drop((old, dir));
        sim.crash();
        // What a restarted node finds: recovery must open it.
        let mut config =
            NodeConfig::new(1, InitialMembership::Bootstrap(membership()), "/data".into());
        config.disk = disk.clone();
        let opened = rdb::node::open(config);
        assert!(opened.is_ok(), "step {failing}: recovery failed: {:?}", opened.err());
        drop(opened);
        let db = Db::open(disk.clone(), STATE).expect("reopen");
        let (index, _) = decode_meta(db.begin_read().user_meta());
        let state = items(&db);
        if installed {
            assert!(
                state == after && index == 25,
                "step {failing}: an install that returned was lost"
            );
        }
        assert!(
            (state == before && index == 10) || (state == after && index == 25),
            "step {failing}: neither the old state nor the new (index {index})"
        );
        outcomes[usize::from(index == 25)] += 1;
    }
    eprintln!("installing: {operations} operations, cut at each: {outcomes:?} (old, new)");
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both outcomes happen: {outcomes:?}");
}
