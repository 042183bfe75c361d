//! Readers on other threads see consistent snapshots while the writer
//! commits, on the real file system through the memory map.
//!
//! Every commit rewrites all keys of one tree with the same version number,
//! with values large enough to need overflow runs and to make the file grow
//! (and the mapping be replaced) many times. A reader must therefore see one
//! version in all keys, never older than a version it saw before; readers
//! held across many commits must still see theirs, which fails if pages they
//! can reach are reused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use rdb_storage::btree::{Db, Durability, KeyRange, ReadTxn};
use rdb_storage::disk::RealDisk;

const KEYS: u64 = 64;
const COMMITS: u64 = 150;
const READER_THREADS: usize = 3;
/// Each reader stops after this many snapshots even if the writer is slow.
const SNAPSHOTS_PER_READER_MAX: usize = 100_000;

fn value(version: u64, key: u64) -> Vec<u8> {
    let len = if key % 4 == 0 { 3000 } else { 200 };
    let mut value = version.to_le_bytes().to_vec();
    value.resize(len, key.to_le_bytes()[0]);
    value
}

/// The one version a snapshot holds, checking every key against it.
fn version_of(reader: &ReadTxn) -> Option<u64> {
    let mut version = None;
    let mut count = 0;
    for item in reader.range("t", &KeyRange::all()).unwrap() {
        let (key, bytes) = item.unwrap();
        let v = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let k = u64::from_be_bytes(key.try_into().unwrap());
        assert_eq!(bytes, value(v, k), "value of key {k} damaged");
        assert_eq!(*version.get_or_insert(v), v, "a snapshot mixes versions");
        count += 1;
    }
    assert!(count == 0 || count == KEYS, "a snapshot with {count} keys");
    version
}

fn reader_thread(db: Db, done: Arc<AtomicBool>) -> usize {
    let mut last_seen = 0;
    let mut held: Vec<(ReadTxn, Option<u64>)> = Vec::new();
    let mut snapshots = 0;
    while !done.load(Ordering::Acquire) && snapshots < SNAPSHOTS_PER_READER_MAX {
        let reader = db.begin_read();
        let version = version_of(&reader);
        let seen = version.unwrap_or(0);
        assert!(seen >= last_seen, "versions went back: {seen} after {last_seen}");
        last_seen = seen;
        if snapshots % 50 == 0 {
            held.push((reader, version));
        }
        for (old, expected) in &held {
            assert_eq!(version_of(old), *expected, "a held snapshot changed");
        }
        if held.len() > 5 {
            held.remove(0);
        }
        snapshots += 1;
    }
    snapshots
}

#[test]
fn readers_see_whole_snapshots_while_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Arc::new(RealDisk), dir.path().join("state").join("state.db")).unwrap();
    let mut txn = db.begin_write().unwrap();
    txn.create_tree("t").unwrap();
    txn.commit([0; 32], Durability::Durable).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READER_THREADS)
        .map(|_| {
            let (db, done) = (db.clone(), Arc::clone(&done));
            thread::spawn(move || reader_thread(db, done))
        })
        .collect();
    for version in 1..=COMMITS {
        let mut txn = db.begin_write().unwrap();
        for key in 0..KEYS {
            txn.put("t", &key.to_be_bytes(), &value(version, key)).unwrap();
        }
        let durability = if version % 3 == 0 { Durability::Durable } else { Durability::Deferred };
        txn.commit([0; 32], durability).unwrap();
    }
    done.store(true, Ordering::Release);
    let snapshots: usize = readers.into_iter().map(|r| r.join().expect("reader thread")).sum();
    assert!(snapshots > 0);
    let reader = db.begin_read();
    assert_eq!(version_of(&reader), Some(COMMITS));
    let report = reader.check().unwrap();
    eprintln!("{snapshots} snapshots read during {COMMITS} commits; final file: {report:?}");
}
