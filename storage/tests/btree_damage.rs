//! Damaged state files: clear errors, never a panic.
//!
//! The deterministic cases check what open and `check` say about a damaged
//! meta page, a damaged node, a truncated or tiny file. The fuzz case damages
//! random bytes of a valid file (run headers more often than not) under many
//! seeds and then drives every operation over it: each may succeed or fail,
//! none may panic or loop. `RDB_BTREE_FUZZ_SEEDS=<n>` runs more seeds.

use std::path::Path;
use std::sync::Arc;

use rdb_storage::btree::{Db, Durability, KeyRange, PAGE_BYTES};
use rdb_storage::disk::{Disk, SimDisk};

const PATH: &str = "/data/state/state.db";
const FUZZ_SEEDS_DEFAULT: u64 = 300;

/// A file with three durable commits over two trees, a few hundred entries,
/// overflow values and a multi-level tree; returns the disk.
fn sample(seed: u64) -> SimDisk {
    let disk = SimDisk::new(seed);
    let db = Db::open(Arc::new(disk.clone()), PATH).unwrap();
    for commit in 0..3u32 {
        let mut txn = db.begin_write().unwrap();
        for tree in ["a", "b"] {
            txn.create_tree(tree).unwrap();
            for i in 0..150u32 {
                let value = vec![b'v'; if i % 20 == 0 { 2500 } else { 60 + (i % 7) as usize }];
                txn.put(tree, format!("{tree}-{:05}", i * 3 + commit).as_bytes(), &value).unwrap();
            }
        }
        txn.commit([u8::try_from(commit).unwrap(); 32], Durability::Durable).unwrap();
    }
    disk
}

fn open(disk: &SimDisk) -> Result<Db, rdb_storage::Error> {
    Db::open(Arc::new(disk.clone()), PATH)
}

#[test]
fn a_damaged_newest_meta_falls_back_to_the_previous_commit() {
    let disk = sample(1);
    // Commits 1, 2, 3 went to meta slots 1, 0, 1: the newest is page 1.
    assert!(disk.corrupt_byte(Path::new(PATH), PAGE_BYTES as u64 + 20));
    let db = open(&disk).unwrap();
    let reader = db.begin_read();
    assert_eq!(reader.txid(), 2);
    assert_eq!(reader.user_meta(), [1; 32]);
    reader.check().expect("the previous commit is intact");
}

#[test]
fn both_metas_damaged_or_a_short_file_stop_open_with_the_reason() {
    let disk = sample(2);
    assert!(
        disk.corrupt_byte(Path::new(PATH), 20)
            && disk.corrupt_byte(Path::new(PATH), PAGE_BYTES as u64 + 20)
    );
    let message = open(&disk).unwrap_err().to_string();
    assert!(message.contains(PATH) && message.contains("no valid meta page"), "{message}");

    let disk = sample(3);
    let page_count = open(&disk).unwrap().begin_read().page_count();
    let file = disk.open(Path::new(PATH), false).unwrap();
    file.set_len((page_count - 1) * PAGE_BYTES as u64).unwrap();
    let message = open(&disk).unwrap_err().to_string();
    assert!(message.contains(&format!("uses {page_count} pages")), "{message}");

    file.set_len(100).unwrap();
    let message = open(&disk).unwrap_err().to_string();
    assert!(message.contains("shorter than its two meta pages"), "{message}");
}

#[test]
fn a_damaged_node_is_named_by_check_and_reads_fail_cleanly() {
    let disk = sample(4);
    let db = open(&disk).unwrap();
    let page_count = db.begin_read().page_count();
    drop(db);
    // Damage a key byte in the middle of every run page in turn until check
    // notices (free pages are not checksummed; nodes and overflows are).
    for page in 2..page_count {
        let disk = sample(4);
        assert!(disk.corrupt_byte(Path::new(PATH), page * PAGE_BYTES as u64 + 300));
        let Ok(db) = open(&disk) else { continue };
        let reader = db.begin_read();
        if let Err(error) = reader.check() {
            assert!(error.to_string().contains(PATH), "{error}");
            for tree in ["a", "b"] {
                let _ = reader.get(tree, b"a-00003");
                let _ = reader.range(tree, &KeyRange::all()).map(|r| r.count());
            }
            return;
        }
    }
    panic!("no damaged page was noticed by check");
}

#[test]
fn random_damage_never_panics() {
    let seeds = std::env::var("RDB_BTREE_FUZZ_SEEDS")
        .map_or(FUZZ_SEEDS_DEFAULT, |n| n.parse().expect("a number"));
    let template = sample(0);
    let bytes = template.contents(Path::new(PATH)).unwrap();
    for seed in 0..seeds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let disk = sample(seed);
        for _ in 0..rng.usize(1..6) {
            let offset = if rng.bool() {
                // A run header: kind, count, pages, length, page id.
                rng.u64(0..bytes.len() as u64 / PAGE_BYTES as u64) * PAGE_BYTES as u64
                    + rng.u64(4..24)
            } else {
                rng.u64(0..bytes.len() as u64)
            };
            disk.corrupt_byte(Path::new(PATH), offset);
        }
        exercise(&disk, seed);
    }
}

#[test]
fn garbage_files_never_panic() {
    for seed in 0..50 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let disk = SimDisk::new(seed);
        disk.create_dir_all(Path::new("/data/state")).unwrap();
        let file = disk.open(Path::new(PATH), true).unwrap();
        let len = rng.usize(0..6 * PAGE_BYTES);
        let garbage: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        file.write_all_at(&garbage, 0).unwrap();
        assert!(open(&disk).is_err(), "seed {seed}: garbage opened as a state file");
    }
}

/// Every operation over a possibly damaged file; results are ignored, only a
/// panic (or a hang) fails.
fn exercise(disk: &SimDisk, seed: u64) {
    let Ok(db) = open(disk) else { return };
    let reader = db.begin_read();
    let _ = reader.check();
    for tree in reader.list_trees().unwrap_or_default() {
        for reverse in [false, true] {
            let range = KeyRange { reverse, ..KeyRange::all() };
            let _ = reader.range(&tree, &range).map(|r| r.take(10_000).count());
        }
        let _ = reader.get(&tree, format!("{tree}-00151").as_bytes());
    }
    let mut copy = Vec::new();
    if reader.export(&mut copy).is_ok() {
        let copied = SimDisk::new(seed);
        copied.create_dir_all(Path::new("/data/state")).unwrap();
        copied.open(Path::new(PATH), true).unwrap().write_all_at(&copy, 0).unwrap();
        let reopened = open(&copied).expect("an export is a valid state file");
        reopened.begin_read().check().expect("an export passes check");
    }
    drop(reader);
    let Ok(mut txn) = db.begin_write() else { return };
    for i in 0..40u32 {
        let key = format!("a-{:05}", i * 7);
        let _ = if i % 3 == 0 {
            txn.delete("a", key.as_bytes()).map(|_| ())
        } else {
            txn.put("a", key.as_bytes(), b"new")
        };
    }
    let _ = txn.drop_tree("b");
    let _ = txn.commit([9; 32], Durability::Durable);
}

/// Points the second child of every one-page branch run at its first child
/// and re-seals the run's checksum (stale copies of freed branches included,
/// so the live ones are surely hit): structurally valid, but a page reachable
/// twice. Returns how many branches were changed.
fn alias_two_children(disk: &SimDisk) -> usize {
    let mut bytes = disk.contents(Path::new(PATH)).unwrap();
    let mut changed = 0;
    for page in 2..bytes.len() / PAGE_BYTES {
        let run = &mut bytes[page * PAGE_BYTES..(page + 1) * PAGE_BYTES];
        let count = u16::from_le_bytes([run[6], run[7]]);
        let own_id = u64::from_le_bytes(run[16..24].try_into().unwrap());
        if run[4] != 1
            || count < 2
            || own_id != page as u64
            || u32::from_le_bytes(run[8..12].try_into().unwrap()) != 1
        {
            continue;
        }
        // Slots are 12 bytes after the 24-byte header; a branch entry keeps
        // its child in bytes 2..8.
        let entry = |i: usize| {
            u32::from_le_bytes(run[24 + 12 * i..28 + 12 * i].try_into().unwrap()) as usize
        };
        let (first, second) = (entry(0), entry(1));
        let child: [u8; 6] = run[first + 2..first + 8].try_into().unwrap();
        run[second + 2..second + 8].copy_from_slice(&child);
        let crc = crc32fast::hash(&run[4..]);
        run[0..4].copy_from_slice(&crc.to_le_bytes());
        changed += 1;
    }
    let file = disk.open(Path::new(PATH), false).unwrap();
    file.write_all_at(&bytes, 0).unwrap();
    file.sync_data().unwrap();
    changed
}

#[test]
fn a_subtree_reached_twice_is_reported_by_check_export_and_drop() {
    let disk = sample(9);
    assert!(alias_two_children(&disk) > 0, "the sample has branches with two children");
    let db = open(&disk).unwrap();
    let reader = db.begin_read();
    assert!(reader.check().is_err(), "check notices the aliased child");
    let exported = reader.export(&mut Vec::new());
    assert!(exported.unwrap_err().to_string().contains("reachable twice"));
    drop(reader);
    let mut txn = db.begin_write().unwrap();
    let dropped = txn.drop_tree("a").and_then(|_| txn.drop_tree("b"));
    assert!(dropped.unwrap_err().to_string().contains("reachable twice"));
}
