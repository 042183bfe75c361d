//! Snapshot files: a state file round-trips through one, damage anywhere
//! in one is detected, and every large file of the snapshot path is written
//! back as it is written.

use std::sync::Arc;

use rdb::node::snapshot_file::HEADER_BYTES;
use rdb::node::SnapshotDir;
use rdb::raft::{Member, MemberRole, Membership, Position};
use rdb::storage::btree::{Db, Durability, KeyRange, USER_META_BYTES};
use rdb::storage::disk::{Disk, RealDisk, SimDisk, STREAM_WRITEBACK_BYTES};

fn filled_db(dir: &std::path::Path, keys: u32) -> Db {
    let db = Db::open(Arc::new(RealDisk), dir.join("state.db")).expect("db");
    let mut txn = db.begin_write().expect("writer");
    txn.create_tree("d/c").expect("tree");
    for i in 0..keys {
        let value = format!("value-{i}-").repeat(usize::try_from(i % 50).expect("small") + 1);
        txn.put("d/c", format!("key-{i:06}").as_bytes(), value.as_bytes()).expect("put");
    }
    txn.commit([7; USER_META_BYTES], Durability::Durable).expect("commit");
    db
}

/// Two voters and a learner, with addresses.
fn membership() -> Membership {
    let member = |id: u64, role| Member {
        id,
        role,
        peer: format!("10.0.0.{id}:9081"),
        client_url: format!("https://10.0.0.{id}:8081"),
    };
    Membership::new(vec![
        member(1, MemberRole::Voter),
        member(2, MemberRole::Voter),
        member(4, MemberRole::Learner),
    ])
    .expect("valid")
}

fn snapshot_dir(data_dir: &std::path::Path) -> SnapshotDir {
    SnapshotDir::open(Arc::new(RealDisk), &data_dir.join("snapshots")).expect("snapshot dir")
}

fn items(db: &Db) -> Vec<(Vec<u8>, Vec<u8>)> {
    let txn = db.begin_read();
    let range = txn.range("d/c", &KeyRange::all()).expect("range");
    range.map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("item")).collect()
}

#[test]
fn a_state_file_round_trips_through_a_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    let db = filled_db(dir.path(), 5_000);
    let meta = Position { index: 42, term: 3 };
    let snapshots = snapshot_dir(dir.path());
    let (path, header) = snapshots.write(&db.begin_read(), meta, &membership()).expect("write");
    assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(header.file_name().as_str()));
    assert_eq!((header.meta, &header.membership), (meta, &membership()));
    assert_eq!(snapshots.read_header(&path).expect("header"), header);
    let compressed = std::fs::metadata(&path).expect("file").len();
    assert!(compressed < header.content_bytes, "{compressed} >= {}", header.content_bytes);

    let restored_path = dir.path().join("restored.db");
    let mut out = std::fs::File::create(&restored_path).expect("create");
    assert_eq!(snapshots.unpack(&path, &mut out).expect("unpack"), header);
    drop(out);
    let restored = Db::open(Arc::new(RealDisk), &restored_path).expect("open the copy");
    assert_eq!(items(&restored), items(&db));
    assert_eq!(restored.begin_read().user_meta(), [7; USER_META_BYTES]);
}

#[test]
fn damage_to_a_snapshot_is_detected() {
    let dir = tempfile::tempdir().expect("dir");
    let db = filled_db(dir.path(), 2_000);
    let snapshots = snapshot_dir(dir.path());
    let meta = Position { index: 9, term: 1 };
    let (path, header) = snapshots.write(&db.begin_read(), meta, &membership()).expect("write");
    let good = std::fs::read(&path).expect("read");
    let mut rng = fastrand::Rng::with_seed(5);
    // The fixed header, the membership block after it, the content.
    let content = usize::try_from(header.content_offset()).expect("small");
    assert!(content > HEADER_BYTES);
    let mut offsets: Vec<usize> =
        vec![0, 12, 20, 50, 143, HEADER_BYTES, HEADER_BYTES + 9, content - 1, good.len() - 1];
    offsets.extend((0..40).map(|_| rng.usize(HEADER_BYTES..good.len())));
    for at in offsets {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        std::fs::write(&path, &bad).expect("damage");
        assert!(
            snapshots.verify(&path).is_err(),
            "a flipped byte at {at} of {} (content at {content}) went unnoticed",
            good.len()
        );
    }
    std::fs::write(&path, &good[..good.len() / 2]).expect("truncate");
    let error = snapshots.verify(&path).expect_err("a truncated snapshot went unnoticed");
    assert!(error.to_string().contains("truncated: the file ends after"), "{error}");
    for junk in [&b"x"[..], b"\0\0\0\0", &good[..64]] {
        std::fs::write(&path, [&good[..], junk].concat()).expect("append");
        assert!(snapshots.verify(&path).is_err(), "{} bytes appended went unnoticed", junk.len());
    }
    std::fs::write(&path, &good).expect("restore");
    assert!(snapshots.verify(&path).is_ok());
}

#[test]
fn listing_is_newest_first_and_pruning_keeps_the_newest() {
    let dir = tempfile::tempdir().expect("dir");
    let snapshots = snapshot_dir(dir.path());
    let db = filled_db(dir.path(), 10);
    for index in [5, 30, 12] {
        let mut txn = db.begin_write().expect("writer");
        txn.put("d/c", b"marker", &index.to_string().into_bytes()).expect("put");
        txn.commit([0; USER_META_BYTES], Durability::Deferred).expect("commit");
        let meta = Position { index, term: 1 };
        snapshots.write(&db.begin_read(), meta, &membership()).expect("write");
    }
    std::fs::write(snapshots.path().join("state_garbage.lz4"), b"not a snapshot").expect("garbage");
    let indexes: Vec<u64> =
        snapshots.list().expect("list").iter().map(|(_, h)| h.meta.index).collect();
    assert_eq!(indexes, [30, 12, 5]);
    snapshots.prune(2).expect("prune");
    let indexes: Vec<u64> =
        snapshots.list().expect("list").iter().map(|(_, h)| h.meta.index).collect();
    assert_eq!(indexes, [30, 12]);
}

/// A disk on which snapshot files can be read but not opened for writing
/// (a backup copied in by root, a read-only mount), or, with `unreadable`,
/// not opened at all.
#[derive(Debug)]
struct NoWrites {
    unreadable: bool,
}

impl rdb::storage::disk::Disk for NoWrites {
    fn open(
        &self,
        path: &std::path::Path,
        create: bool,
    ) -> std::io::Result<Box<dyn rdb::storage::disk::DiskFile>> {
        if path.exists() {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        RealDisk.open(path, create)
    }
    fn open_read(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn rdb::storage::disk::DiskFile>> {
        if self.unreadable {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        RealDisk.open_read(path)
    }
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        RealDisk.create_dir_all(dir)
    }
    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        RealDisk.list(dir)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        RealDisk.rename(from, to)
    }
    fn remove(&self, path: &std::path::Path) -> std::io::Result<()> {
        RealDisk.remove(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        RealDisk.sync_dir(dir)
    }
}

/// A snapshot the node may read but not write is used; one it cannot read
/// at all is an error, never "no snapshot" (a node would start empty and
/// the backup would be lost without a word).
#[test]
fn a_read_only_backup_is_read_and_an_unreadable_one_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let db = filled_db(dir.path(), 100);
    let meta = Position { index: 5, term: 1 };
    let (path, header) =
        snapshot_dir(dir.path()).write(&db.begin_read(), meta, &membership()).expect("write");
    let at = dir.path().join("snapshots");
    let read_only = SnapshotDir::open(Arc::new(NoWrites { unreadable: false }), &at).expect("dir");
    assert_eq!(read_only.newest_valid().expect("readable"), Some((path, header)));
    let unreadable = SnapshotDir::open(Arc::new(NoWrites { unreadable: true }), &at).expect("dir");
    let error = unreadable.newest_valid().expect_err("unreadable");
    assert!(error.to_string().contains("open"), "{error}");
}

/// A received file that verifies but is not the snapshot the leader offered
/// is refused and never published.
#[test]
fn a_received_snapshot_other_than_the_one_offered_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let db = filled_db(dir.path(), 100);
    let meta = Position { index: 5, term: 1 };
    let (path, _) =
        snapshot_dir(dir.path()).write(&db.begin_read(), meta, &membership()).expect("write");
    let bytes = std::fs::read(&path).expect("read");
    let other = tempfile::tempdir().expect("dir");
    let receiver = snapshot_dir(other.path());
    let mut receiving = receiver.receive().expect("receive");
    receiving.append(&bytes).expect("append");
    let offered = Position { index: 6, term: 1 };
    let error = receiving.finish(offered).expect_err("not the one offered");
    assert!(error.to_string().contains("not the"), "{error}");
    assert!(receiver.list().expect("list").is_empty(), "published anyway");
}

/// A snapshot, the state file unpacked from one and a snapshot received in
/// chunks are each written back every MiB or two as they are written, so
/// that none leaves its whole size for one sync to flush (which the WAL's
/// syncs would wait behind). Counted on the simulated disk.
#[test]
fn snapshot_files_are_written_back_as_they_are_written() {
    let sim = SimDisk::new(11);
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    disk.create_dir_all(std::path::Path::new("/data")).expect("dir");
    let db = Db::open(disk.clone(), "/data/state.db").expect("db");
    let mut txn = db.begin_write().expect("writer");
    txn.create_tree("d/c").expect("tree");
    let mut rng = fastrand::Rng::with_seed(11);
    for i in 0..6_000u32 {
        // Random bytes: the snapshot stays ~6 MB after compression.
        let value: Vec<u8> = (0..1_000).map(|_| rng.u8(..)).collect();
        txn.put("d/c", format!("key-{i:05}").as_bytes(), &value).expect("put");
    }
    txn.commit([7; USER_META_BYTES], Durability::Durable).expect("commit");
    let snapshots = SnapshotDir::open(disk.clone(), std::path::Path::new("/data/snapshots"))
        .expect("snapshot dir");
    let mib = usize::try_from(STREAM_WRITEBACK_BYTES).expect("a MiB");

    let before = sim.writeback_hints();
    let meta = Position { index: 42, term: 3 };
    let (path, header) = snapshots.write(&db.begin_read(), meta, &membership()).expect("write");
    let file = sim.contents(&path).expect("the snapshot");
    assert!(file.len() > 5 * mib, "a snapshot of {} bytes", file.len());
    let hints = sim.writeback_hints() - before;
    // A hint once a MiB has gathered: the 1 MiB buffer's flushes make
    // each cover 1-2 MiB.
    let wanted = (file.len() / (2 * mib)) as u64;
    assert!(hints >= wanted.max(2), "{hints} hints for {} bytes", file.len());

    let before = sim.writeback_hints();
    let target = std::path::Path::new("/data/installed.db");
    snapshots.unpack_to(&path, std::path::Path::new("/data/installing"), target).expect("unpack");
    let hints = sim.writeback_hints() - before;
    let content = usize::try_from(header.content_bytes).expect("small");
    assert!(hints >= (content / mib) as u64, "{hints} hints for {content} bytes");
    let installed = Db::open(disk.clone(), target).expect("open the copy");
    assert_eq!(items(&installed), items(&db));

    let before = sim.writeback_hints();
    let mut receiving = snapshots.receive().expect("receive");
    let chunks = file.chunks(rdb::rpc::CHUNK_BYTES);
    let count = chunks.len() as u64;
    for chunk in chunks {
        receiving.append(chunk).expect("append");
    }
    assert_eq!(sim.writeback_hints() - before, count, "one hint per chunk received");
    receiving.finish(meta).expect("the received snapshot verifies");
}
