//! The WAL's contract, one behaviour per test: segment rotation and purge,
//! refused calls that change nothing, poisoning after an IO error, syncs
//! run on another thread (`Wal::begin_sync`) and what reopening makes durable.

use std::path::Path;
use std::sync::Arc;

use rdb_storage::disk::{Disk, SimDisk};
use rdb_storage::wal::{Entry, HardState, Wal, WalOptions};
use rdb_storage::Error;

const DIR: &str = "/data/wal";

fn entries(range: std::ops::RangeInclusive<u64>, term: u64, payload_bytes: usize) -> Vec<Entry> {
    range
        .map(|index| Entry { index, term, payload: vec![index.to_le_bytes()[0]; payload_bytes] })
        .collect()
}

fn open(disk: &SimDisk, segment_bytes_max: u64) -> Wal {
    Wal::open(Arc::new(disk.clone()), DIR, WalOptions { segment_bytes_max }).expect("opens")
}

fn segment_files(disk: &SimDisk) -> Vec<String> {
    disk.list(Path::new(DIR)).unwrap().into_iter().filter(|n| n.ends_with(".wal")).collect()
}

#[test]
fn a_new_log_is_empty_and_starts_at_index_1() {
    let disk = SimDisk::new(1);
    let wal = open(&disk, 1024);
    assert_eq!((wal.first_index(), wal.last_index(), wal.synced_index()), (1, 0, 0));
    assert_eq!(wal.hard_state(), HardState::default());
    assert_eq!(wal.term(0), None);
    assert_eq!(wal.entries(1, 1, 100).unwrap(), vec![]);
}

#[test]
fn segments_rotate_at_the_size_limit_and_purge_deletes_whole_ones() {
    let disk = SimDisk::new(2);
    let mut wal = open(&disk, 1024);
    // 124 bytes a record: 8 fit after the 32-byte header in 1024 bytes.
    wal.append(&entries(1..=40, 1, 100)).unwrap();
    wal.sync().unwrap();
    assert_eq!(segment_files(&disk).len(), 5);
    assert_eq!(segment_files(&disk)[1], "00000000000000000009.wal");

    wal.purge_prefix(20).unwrap();
    // Segments 1..=8 and 9..=16 are wholly covered; 17..=24 holds 21.
    assert_eq!(wal.first_index(), 17);
    assert_eq!(segment_files(&disk).len(), 3);
    assert_eq!(wal.term(16), None);
    assert_eq!(wal.term(17), Some(1));
    assert_eq!(wal.entries(17, 41, usize::MAX).unwrap(), entries(17..=40, 1, 100));
}

#[test]
fn one_record_larger_than_the_limit_gets_a_segment_of_its_own() {
    let disk = SimDisk::new(3);
    let mut wal = open(&disk, 1024);
    wal.append(&entries(1..=1, 1, 10)).unwrap();
    wal.append(&entries(2..=2, 1, 5000)).unwrap();
    wal.append(&entries(3..=3, 1, 10)).unwrap();
    wal.sync().unwrap();
    assert_eq!(segment_files(&disk).len(), 3);
    drop(wal);
    let wal = open(&disk, 1024);
    assert_eq!(wal.entries(1, 4, usize::MAX).unwrap()[1].payload.len(), 5000);
}

#[test]
fn truncate_then_append_replaces_the_suffix_durably() {
    let disk = SimDisk::new(4);
    let mut wal = open(&disk, 1024);
    wal.append(&entries(1..=30, 1, 100)).unwrap();
    wal.sync().unwrap();
    wal.truncate_suffix(12).unwrap();
    assert_eq!((wal.last_index(), wal.synced_index()), (11, 11));
    wal.append(&entries(12..=14, 2, 7)).unwrap();
    wal.sync().unwrap();
    disk.crash();
    let wal = open(&disk, 1024);
    assert_eq!(wal.last_index(), 14);
    assert_eq!(wal.entries(10, 15, usize::MAX).unwrap()[2..], entries(12..=14, 2, 7)[..]);
    assert_eq!((wal.term(11), wal.term(12)), (Some(1), Some(2)));
}

#[test]
fn purge_beyond_the_log_resets_it_to_continue_after_the_snapshot() {
    let disk = SimDisk::new(5);
    let mut wal = open(&disk, 1024);
    wal.append(&entries(1..=20, 1, 100)).unwrap();
    wal.sync().unwrap();
    wal.purge_prefix(100).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (101, 100));
    wal.append(&entries(101..=101, 3, 1)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let wal = open(&disk, 1024);
    assert_eq!((wal.first_index(), wal.last_index(), wal.term(101)), (101, 101, Some(3)));
    assert_eq!(segment_files(&disk), vec!["00000000000000000101.wal"]);
}

#[test]
fn refused_calls_say_why_and_change_nothing() {
    let disk = SimDisk::new(6);
    let mut wal = open(&disk, 1024);
    wal.append(&entries(1..=5, 2, 10)).unwrap();
    wal.sync().unwrap();
    wal.save_hard_state(HardState { term: 2, vote: 1, commit: 3 }).unwrap();
    let refused = [
        wal.append(&entries(7..=7, 2, 1)),                    // a gap
        wal.append(&entries(6..=6, 1, 1)),                    // term goes down
        wal.append(&entries(6..=6, 2, 16 * 1024 * 1024 + 1)), // too large
        wal.truncate_suffix(3),                               // committed
        wal.truncate_suffix(9),                               // beyond the end
        wal.save_hard_state(HardState { term: 1, vote: 1, commit: 3 }), // term goes down
        wal.save_hard_state(HardState { term: 2, vote: 2, commit: 3 }), // second vote in a term
        wal.save_hard_state(HardState { term: 2, vote: 1, commit: 2 }), // commit goes down
    ];
    for result in refused {
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "{result:?}");
    }
    wal.append(&entries(6..=6, 2, 1)).unwrap();
    let beyond_sync = wal.save_hard_state(HardState { term: 2, vote: 1, commit: 6 });
    assert!(matches!(beyond_sync, Err(Error::InvalidArgument(_))), "commit past the synced index");
    assert_eq!((wal.last_index(), wal.hard_state().commit), (6, 3));
    assert!(
        Wal::open(Arc::new(disk.clone()), "/other", WalOptions { segment_bytes_max: 10 }).is_err()
    );
}

#[test]
fn an_io_error_poisons_the_log_until_it_is_reopened() {
    let disk = SimDisk::new(7);
    let mut wal = open(&disk, 1024);
    wal.append(&entries(1..=3, 1, 10)).unwrap();
    disk.fail_at(disk.ops()); // the sync
    assert!(matches!(wal.sync(), Err(Error::Io { .. })));
    assert!(matches!(wal.append(&entries(4..=4, 1, 1)), Err(Error::Poisoned(_))));
    assert!(matches!(wal.entries(1, 2, 10), Err(Error::Poisoned(_))));
    drop(wal);
    let wal = open(&disk, 1024);
    assert_eq!(wal.last_index(), 3, "no crash happened: the appended bytes are still there");
}

#[test]
fn reads_cross_segments_and_respect_the_byte_budget() {
    let disk = SimDisk::new(8);
    let mut wal = open(&disk, 1024);
    wal.append(&entries(1..=30, 1, 100)).unwrap();
    // 124 bytes a record: a 1000-byte budget takes 8 whole records.
    let got = wal.entries(5, 31, 1000).unwrap();
    assert_eq!(got, entries(5..=12, 1, 100));
    assert_eq!(wal.entries(5, 31, 0).unwrap().len(), 1, "at least one entry");
    assert_eq!(wal.entries(1, 31, usize::MAX).unwrap(), entries(1..=30, 1, 100));
    assert!(matches!(wal.entries(0, 3, 10), Err(Error::InvalidArgument(_))));
    assert!(matches!(wal.entries(3, 32, 10), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_scan_reads_every_record_and_changes_nothing() {
    let disk = SimDisk::new(9);
    let mut wal = open(&disk, 1024);
    wal.append(&entries(1..=20, 1, 100)).unwrap();
    wal.append(&entries(21..=30, 2, 100)).unwrap();
    wal.sync().unwrap();
    wal.save_hard_state(HardState { term: 2, vote: 1, commit: 30 }).unwrap();
    drop(wal);
    let dir = Path::new(DIR);
    let files = || -> Vec<(String, Option<Vec<u8>>)> {
        let names = disk.list(dir).unwrap();
        names.into_iter().map(|n| (n.clone(), disk.contents(&dir.join(n)))).collect()
    };
    let before = files();
    let mut seen = Vec::new();
    let report = rdb_storage::wal::scan(&disk, dir, |record| {
        seen.push((record.index, record.term, record.payload[0]));
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen.len(), 30);
    assert_eq!(seen[24], (25, 2, 25));
    assert_eq!(report.indexes, Some((1, 30)));
    assert_eq!(report.segments.iter().map(|s| s.records).sum::<u64>(), 30);
    assert_eq!(report.hard_state, Ok(HardState { term: 2, vote: 1, commit: 30 }));
    assert_eq!(files(), before, "the scan wrote nothing");

    // A flipped byte in a sealed segment is damage with its file and offset.
    let sealed = dir.join("00000000000000000009.wal");
    assert!(disk.corrupt_byte(&sealed, 32 + 124 + 30));
    let error = rdb_storage::wal::scan(&disk, dir, |_| std::ops::ControlFlow::Continue(()))
        .expect_err("damage");
    assert!(matches!(error, Error::Corrupt { offset: 156, .. }), "{error}");
    assert!(error.to_string().contains("00000000000000000009.wal"), "{error}");
}

/// Segments large enough that the background-sync tests stay in one.
const ONE_SEGMENT: u64 = 1 << 20;

#[test]
fn a_background_sync_makes_what_came_before_it_durable() {
    let disk = SimDisk::new(7);
    let mut wal = open(&disk, ONE_SEGMENT);
    assert!(wal.begin_sync().is_none(), "nothing to sync");
    wal.append(&entries(1..=3, 1, 10)).unwrap();
    let pending = wal.begin_sync().expect("three unsynced entries");
    assert_eq!(pending.index(), 3);
    wal.append(&entries(4..=5, 1, 10)).unwrap();
    let synced = std::thread::spawn(move || pending.run()).join().unwrap().unwrap();
    assert_eq!(wal.synced_index(), 0, "not durable until reported");
    wal.finish_sync(Ok(synced)).unwrap();
    assert_eq!(wal.synced_index(), 3, "entries appended after it began are not covered");
    disk.crash();
    let wal = open(&disk, ONE_SEGMENT);
    assert!(wal.last_index() >= 3, "the synced entries survive a crash");
}

#[test]
fn a_report_from_before_a_truncation_is_ignored() {
    let disk = SimDisk::new(8);
    let mut wal = open(&disk, ONE_SEGMENT);
    wal.append(&entries(1..=4, 1, 10)).unwrap();
    let pending = wal.begin_sync().expect("unsynced entries");
    wal.truncate_suffix(2).unwrap();
    wal.append(&entries(2..=4, 2, 10)).unwrap();
    let synced = pending.run().unwrap();
    assert_eq!(wal.finish_sync(Ok(synced)).unwrap(), None, "a stale report");
    assert_eq!(wal.synced_index(), 1, "the entries it covered were replaced");
}

#[test]
fn a_failed_background_sync_poisons_the_log() {
    let disk = SimDisk::new(9);
    let mut wal = open(&disk, ONE_SEGMENT);
    wal.append(&entries(1..=2, 1, 10)).unwrap();
    let pending = wal.begin_sync().expect("unsynced entries");
    disk.fail_at(disk.ops());
    let failed = pending.run();
    assert!(failed.is_err(), "the injected IO error");
    assert!(wal.finish_sync(failed).is_err());
    assert!(wal.append(&entries(3..=3, 1, 10)).is_err(), "a poisoned log refuses appends");
    assert_eq!(wal.synced_index(), 0);
}

/// A process that crashed between a write and its sync leaves the entries
/// in the page cache; reopening makes them durable (FORMAT.md, recovery
/// step 7), since the node counts what it recovered as its own.
#[test]
fn what_a_crashed_process_wrote_is_durable_once_reopened() {
    for seed in 0..32 {
        let disk = SimDisk::new(seed);
        let mut wal = open(&disk, ONE_SEGMENT);
        wal.append(&entries(1..=3, 1, 10)).unwrap();
        drop(wal); // the process dies; the machine does not
        assert_eq!(
            open(&disk, ONE_SEGMENT).last_index(),
            3,
            "seed {seed}: the page cache still has them"
        );
        disk.crash(); // now the machine
        assert_eq!(open(&disk, ONE_SEGMENT).last_index(), 3, "seed {seed}: reopening synced them");
    }
}
