//! Reading a WAL directory without changing it, for `rdb inspect`: every
//! segment opened read-only, every record's checksum, index and term order
//! checked, each entry handed to the caller. Safe beside a running node:
//! nothing is created, cut or renamed.
//!
//! Caveats: beside a running node the last segment may end in a record
//! being written; that tail is reported (`torn_bytes`), as recovery would
//! cut it, not called damage. A segment removed by compaction while the
//! scan runs is an IO error; scan again.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::format::{decode_record, decode_segment_header, parse_segment_name, BadRecord};
use super::hard_state::HardStateFile;
use super::HardState;
use crate::disk::Disk;
use crate::{Error, Result};

/// What one segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The file.
    pub path: PathBuf,
    /// Its length in bytes.
    pub bytes: u64,
    /// The index its header names.
    pub first_index: u64,
    /// Records with a valid checksum.
    pub records: u64,
    /// Bytes after the last valid record of the last segment (a torn tail).
    pub torn_bytes: u64,
}

/// What the whole directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Segments in index order.
    pub segments: Vec<SegmentReport>,
    /// The first and last index of the log (None: no entries).
    pub indexes: Option<(u64, u64)>,
    /// The saved term, vote and commit index, or why the file does not
    /// read (a node refuses to start without it).
    pub hard_state: std::result::Result<HardState, String>,
}

/// One record, borrowed from the segment being read.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Its index.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// The entry's bytes.
    pub payload: &'a [u8],
}

/// Scans the WAL in `dir`, calling `visit` on every entry in index order
/// until it answers `Break`. Damage (a bad header, a bad record before the
/// last segment's tail, a gap, an index or term out of order) is
/// [`Error::Corrupt`] naming the file and offset.
pub fn scan(
    disk: &dyn Disk,
    dir: &Path,
    mut visit: impl FnMut(RecordRef<'_>) -> ControlFlow<()>,
) -> Result<ScanReport> {
    let names = disk.list(dir).map_err(|e| Error::io(dir, e))?;
    let mut firsts: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    firsts.sort_unstable();
    let mut report = ScanReport {
        segments: Vec::new(),
        indexes: None,
        hard_state: HardStateFile::read(disk, dir).map_err(|e| e.to_string()),
    };
    let mut expected: Option<(u64, u64)> = None; // (next index, last term)
    let mut stopped = false;
    for (n, first) in firsts.iter().enumerate() {
        let path = dir.join(super::format::segment_name(*first));
        let file = disk.open_read(&path).map_err(|e| Error::io(&path, e))?;
        let len = file.len().map_err(|e| Error::io(&path, e))?;
        let len = usize::try_from(len).map_err(|_| Error::corrupt(&path, 0, "too large"))?;
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, 0).map_err(|e| Error::io(&path, e))?;
        let stored = decode_segment_header(&bytes).map_err(|r| Error::corrupt(&path, 0, r))?;
        if stored != *first {
            let reason = format!("header says first index {stored}, the name {first}");
            return Err(Error::corrupt(&path, 0, reason));
        }
        let last_segment = n + 1 == firsts.len();
        let mut segment = SegmentReport {
            path: path.clone(),
            bytes: len as u64,
            first_index: *first,
            records: 0,
            torn_bytes: 0,
        };
        let mut at = super::format::SEGMENT_HEADER_BYTES;
        while at < bytes.len() && !stopped {
            let record = match decode_record(&bytes[at..]) {
                Ok(record) => record,
                Err(_) if last_segment => {
                    segment.torn_bytes = (bytes.len() - at) as u64;
                    break;
                }
                Err(BadRecord::Incomplete) => {
                    return Err(Error::corrupt(
                        &path,
                        at as u64,
                        "a sealed segment ends inside a record",
                    ));
                }
                Err(BadRecord::Damaged(why)) => return Err(Error::corrupt(&path, at as u64, why)),
            };
            let (next, last_term) = expected.unwrap_or((*first, 0));
            if record.index != next || record.term < last_term {
                let reason = format!(
                    "record index {} term {} after index {} term {last_term}",
                    record.index,
                    record.term,
                    next.saturating_sub(1)
                );
                return Err(Error::corrupt(&path, at as u64, reason));
            }
            expected = Some((record.index + 1, record.term));
            let first_index = report.indexes.map_or(record.index, |(lo, _)| lo);
            report.indexes = Some((first_index, record.index));
            segment.records += 1;
            at += record.encoded_len();
            let view =
                RecordRef { index: record.index, term: record.term, payload: record.payload };
            stopped = visit(view).is_break();
        }
        report.segments.push(segment);
    }
    Ok(report)
}
