//! Damage that a crash cannot explain stops the WAL with the file and the byte
//! offset; damage a crash can explain (a torn tail) is cut off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdb_storage::disk::{Disk, RealDisk, SimDisk};
use rdb_storage::wal::{Entry, HardState, Wal, WalOptions};
use rdb_storage::Error;

const DIR: &str = "/data/wal";
const SEGMENT_BYTES_MAX: u64 = 1024;
/// 24-byte record header + 100-byte payload.
const RECORD_BYTES: u64 = 124;
const SEGMENT_HEADER_BYTES: u64 = 32;

fn options() -> WalOptions {
    WalOptions { segment_bytes_max: SEGMENT_BYTES_MAX }
}

/// A WAL with 20 synced 100-byte entries in three segments (1..=8, 9..=16,
/// 17..=20) on `disk` in `dir`.
fn write_log(disk: Arc<dyn Disk>, dir: &Path) {
    let mut wal = Wal::open(disk, dir, options()).unwrap();
    let entries: Vec<Entry> =
        (1..=20).map(|index| Entry { index, term: 1, payload: vec![7; 100] }).collect();
    wal.append(&entries).unwrap();
    wal.sync().unwrap();
    wal.save_hard_state(HardState { term: 1, vote: 1, commit: 10 }).unwrap();
}

fn segment(first_index: u64) -> PathBuf {
    Path::new(DIR).join(format!("{first_index:020}.wal"))
}

fn open_error(disk: &SimDisk) -> String {
    Wal::open(Arc::new(disk.clone()), DIR, options()).expect_err("open must fail").to_string()
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_names_the_file_and_offset() {
    // Every byte of the second sealed segment: header, record headers, payloads.
    for offset in 0..SEGMENT_HEADER_BYTES + 8 * RECORD_BYTES {
        let disk = SimDisk::new(offset);
        write_log(Arc::new(disk.clone()), Path::new(DIR));
        assert!(disk.corrupt_byte(&segment(9), offset));
        let message = open_error(&disk);
        let record_start = offset.saturating_sub(SEGMENT_HEADER_BYTES) / RECORD_BYTES
            * RECORD_BYTES
            + SEGMENT_HEADER_BYTES * u64::from(offset >= SEGMENT_HEADER_BYTES);
        let expected = format!("corrupt {} at byte {record_start}:", segment(9).display());
        assert!(message.starts_with(&expected), "flip at {offset}: {message}");
    }
}

#[test]
fn a_flipped_byte_on_a_real_disk_is_reported_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    write_log(Arc::new(RealDisk), &wal_dir);
    let path = wal_dir.join(format!("{:020}.wal", 1));
    let mut bytes = std::fs::read(&path).unwrap();
    let offset = SEGMENT_HEADER_BYTES + 2 * RECORD_BYTES + 50;
    bytes[usize::try_from(offset).unwrap()] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let error = Wal::open(Arc::new(RealDisk), &wal_dir, options()).unwrap_err();
    let Error::Corrupt { path: reported, offset: at, .. } = &error else { panic!("{error}") };
    assert_eq!((reported, *at), (&path, SEGMENT_HEADER_BYTES + 2 * RECORD_BYTES));
}

#[test]
fn a_truncated_or_zeroed_tail_of_the_open_segment_is_cut_off() {
    for (seed, cut) in [(1, 1), (2, 23), (3, 60), (4, RECORD_BYTES)] {
        let disk = SimDisk::new(seed);
        write_log(Arc::new(disk.clone()), Path::new(DIR));
        let file = disk.open(&segment(17), false).unwrap();
        let len = file.len().unwrap();
        file.set_len(len - cut).unwrap();
        file.sync_data().unwrap();
        let wal = Wal::open(Arc::new(disk.clone()), DIR, options()).unwrap();
        assert_eq!(wal.last_index(), 19, "cut {cut}");
        assert_eq!(wal.torn_bytes_at_open(), RECORD_BYTES - cut);
    }
    let disk = SimDisk::new(5);
    write_log(Arc::new(disk.clone()), Path::new(DIR));
    let file = disk.open(&segment(17), false).unwrap();
    file.write_all_at(&[0; 4096], file.len().unwrap()).unwrap();
    let wal = Wal::open(Arc::new(disk.clone()), DIR, options()).unwrap();
    assert_eq!((wal.last_index(), wal.torn_bytes_at_open()), (20, 4096));
}

#[test]
fn a_missing_segment_is_a_gap() {
    let disk = SimDisk::new(6);
    write_log(Arc::new(disk.clone()), Path::new(DIR));
    disk.remove(&segment(9)).unwrap();
    let message = open_error(&disk);
    assert!(
        message.contains(&segment(17).display().to_string()) && message.contains("gap"),
        "{message}"
    );
}

#[test]
fn a_commit_index_beyond_the_recovered_log_is_corruption() {
    let disk = SimDisk::new(7);
    write_log(Arc::new(disk.clone()), Path::new(DIR));
    // Lose the open segment's records: synced entries up to the commit are gone.
    disk.remove(&segment(17)).unwrap();
    disk.remove(&segment(9)).unwrap();
    let message = open_error(&disk);
    assert!(message.contains("commit index 10 is beyond the last log index 8"), "{message}");
}

#[test]
fn a_missing_or_damaged_hard_state_file_stops_open() {
    let disk = SimDisk::new(8);
    write_log(Arc::new(disk.clone()), Path::new(DIR));
    let hard_state = Path::new(DIR).join("hardstate");
    assert!(disk.corrupt_byte(&hard_state, 20) && disk.corrupt_byte(&hard_state, 4096 + 20));
    assert!(open_error(&disk).contains("both hard state slots"));
    disk.remove(&hard_state).unwrap();
    assert!(open_error(&disk).contains("hardstate"));
}
