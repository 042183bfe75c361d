//! One segment file: its records' offsets, appends, reads and cuts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    decode_record, decode_segment_header, encode_record, encode_segment_header, segment_name,
    BadRecord, RecordView, SEGMENT_HEADER_BYTES,
};
use super::{Entry, TermRun};
use crate::disk::{Disk, DiskFile};
use crate::{Error, Result};

/// Whether a segment is the open one, which alone may end in a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Synced in full before the next segment was created.
    Sealed,
    /// The last segment, appended to.
    Open,
}

/// A segment file and the byte offset of every record in it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Path, for error messages and removal.
    path: PathBuf,
    /// The open file (shared with a sync running on another thread).
    file: Arc<dyn DiskFile>,
    /// The index of the first record, also the file's name.
    first_index: u64,
    /// `offsets[i]` is where the record with index `first_index + i` starts.
    /// u32 suffices: a segment is at most 1 GiB plus one record.
    offsets: Vec<u32>,
    /// Bytes in use: the end of the last record, and the file's length.
    end: u64,
}

/// What a segment's records tell the rest of the log while being loaded.
#[derive(Debug)]
pub(crate) struct LoadContext {
    /// The index the segment must start at, if a segment came before it.
    pub(crate) expected_first: Option<u64>,
    /// The last term seen so far; terms never decrease.
    pub(crate) last_term: u64,
    /// Term runs found so far, extended by the load.
    pub(crate) terms: Vec<TermRun>,
    /// Bytes cut from the open segment as a torn tail.
    pub(crate) torn_bytes: u64,
}

impl Segment {
    /// Creates a new, empty segment durably (FORMAT.md: create a file).
    pub(crate) fn create(disk: &dyn Disk, dir: &Path, first_index: u64) -> Result<Self> {
        let name = segment_name(first_index);
        let header = encode_segment_header(first_index);
        crate::files::create_file_atomically(disk, dir, &name, &header)?;
        Self::open_empty(disk, dir, first_index)
    }

    /// Opens a segment known to hold only its header.
    pub(crate) fn open_empty(disk: &dyn Disk, dir: &Path, first_index: u64) -> Result<Self> {
        let path = dir.join(segment_name(first_index));
        let file = Arc::from(disk.open(&path, false).map_err(|e| Error::io(&path, e))?);
        Ok(Segment {
            path,
            file,
            first_index,
            offsets: Vec::new(),
            end: SEGMENT_HEADER_BYTES as u64,
        })
    }

    /// Opens and checks an existing segment (FORMAT.md, recovery steps 4-5).
    pub(crate) fn load(
        disk: &dyn Disk,
        dir: &Path,
        first_index: u64,
        role: Role,
        context: &mut LoadContext,
    ) -> Result<Self> {
        let path = dir.join(segment_name(first_index));
        let file: Arc<dyn DiskFile> =
            Arc::from(disk.open(&path, false).map_err(|e| Error::io(&path, e))?);
        let len = file.len().map_err(|e| Error::io(&path, e))?;
        // Record offsets are u32: no segment rdb writes comes near 4 GiB (1 GiB
        // limit plus one record), so a larger file is damage, not a log.
        let len = u32::try_from(len).map_err(|_| {
            Error::corrupt(
                &path,
                0,
                format!("segment of {len} bytes is larger than any rdb writes"),
            )
        })?;
        let len = len as usize;
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, 0).map_err(|e| Error::io(&path, e))?;
        let stored_first =
            decode_segment_header(&bytes).map_err(|r| Error::corrupt(&path, 0, r))?;
        if stored_first != first_index {
            let reason = format!("header says first index {stored_first}, the name {first_index}");
            return Err(Error::corrupt(&path, 0, reason));
        }
        if let Some(expected) = context.expected_first.filter(|e| *e != first_index) {
            let reason = format!("gap in the log: expected a segment starting at index {expected}");
            return Err(Error::corrupt(&path, 0, reason));
        }
        let mut segment = Segment { path, file, first_index, offsets: Vec::new(), end: 0 };
        let valid_end = segment.scan(&bytes, role, context)?;
        segment.end = valid_end as u64;
        if valid_end < bytes.len() {
            segment.cut_at(segment.end)?;
            context.torn_bytes += (bytes.len() - valid_end) as u64;
        }
        context.expected_first = Some(segment.next_index());
        Ok(segment)
    }

    /// Indexes the records in `bytes` and returns where the valid ones end.
    fn scan(&mut self, bytes: &[u8], role: Role, context: &mut LoadContext) -> Result<usize> {
        let mut at = SEGMENT_HEADER_BYTES;
        while at < bytes.len() {
            let record = match decode_record(&bytes[at..]) {
                Ok(record) => record,
                Err(bad) if role == Role::Sealed => {
                    return Err(Error::corrupt(&self.path, at as u64, describe(&bad)));
                }
                Err(_) => break, // a torn tail: FORMAT.md recovery step 5
            };
            self.check_order(&record, at, context)?;
            self.offsets.push(u32::try_from(at).expect("segment size is bounded"));
            at += record.encoded_len();
        }
        Ok(at)
    }

    /// Checks the index and term order of a record with a valid checksum.
    fn check_order(&self, record: &RecordView<'_>, at: usize, ctx: &mut LoadContext) -> Result<()> {
        let expected = self.next_index();
        if record.index != expected {
            let reason = format!("record has index {}, expected {expected}", record.index);
            return Err(Error::corrupt(&self.path, at as u64, reason));
        }
        if record.term < ctx.last_term {
            let reason =
                format!("record term {} is below the previous {}", record.term, ctx.last_term);
            return Err(Error::corrupt(&self.path, at as u64, reason));
        }
        if ctx.terms.last().is_none_or(|run| run.term != record.term) {
            ctx.terms.push(TermRun { first_index: record.index, term: record.term });
        }
        ctx.last_term = record.term;
        Ok(())
    }

    /// The index of the first record.
    pub(crate) fn first_index(&self) -> u64 {
        self.first_index
    }

    /// The index the next appended record will have.
    pub(crate) fn next_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }

    /// Bytes in use, header included.
    pub(crate) fn bytes(&self) -> u64 {
        self.end
    }

    /// Whether the segment holds no record.
    pub(crate) fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `entries` after the last record with one write; no sync.
    /// `scratch` is a reusable encoding buffer.
    pub(crate) fn append(&mut self, entries: &[Entry], scratch: &mut Vec<u8>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        assert_eq!(entries[0].index, self.next_index(), "appends are contiguous");
        scratch.clear();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in entries {
            offsets.push(self.end + scratch.len() as u64);
            encode_record(scratch, entry.index, entry.term, &entry.payload);
        }
        let at = self.file.append(scratch).map_err(|e| Error::io(&self.path, e))?;
        if at != self.end {
            let reason = format!("file length {at} differs from the end of the records");
            return Err(Error::corrupt(&self.path, self.end, reason));
        }
        self.end += scratch.len() as u64;
        self.offsets.extend(offsets.into_iter().map(|o| u32::try_from(o).expect("bounded")));
        Ok(())
    }

    /// Makes everything appended durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// The file and its path, for a sync on another thread.
    pub(crate) fn shared_file(&self) -> (Arc<dyn DiskFile>, PathBuf) {
        (Arc::clone(&self.file), self.path.clone())
    }

    /// Reads records `lo..hi` (both within this segment) into `out`, stopping
    /// before the record that would take the encoded bytes read past
    /// `budget`; with `at_least_one` the first record is read regardless.
    /// Returns the encoded bytes read.
    pub(crate) fn read(
        &self,
        lo: u64,
        hi: u64,
        budget: usize,
        at_least_one: bool,
        out: &mut Vec<Entry>,
    ) -> Result<usize> {
        assert!(
            self.first_index <= lo && lo < hi && hi <= self.next_index(),
            "checked by the caller"
        );
        let start = self.offset_of(lo);
        let mut end = lo;
        while end < hi
            && (self.offset_of(end + 1) - start <= budget as u64 || at_least_one && end == lo)
        {
            end += 1;
        }
        if end == lo {
            return Ok(0);
        }
        let mut bytes = vec![0u8; usize::try_from(self.offset_of(end) - start).expect("bounded")];
        self.file.read_exact_at(&mut bytes, start).map_err(|e| Error::io(&self.path, e))?;
        let mut at = 0;
        for index in lo..end {
            let record = decode_record(&bytes[at..])
                .map_err(|bad| Error::corrupt(&self.path, start + at as u64, describe(&bad)))?;
            if record.index != index {
                let reason = format!("record has index {}, expected {index}", record.index);
                return Err(Error::corrupt(&self.path, start + at as u64, reason));
            }
            out.push(Entry { index, term: record.term, payload: record.payload.to_vec() });
            at += record.encoded_len();
        }
        Ok(bytes.len())
    }

    /// Cuts every record from `index` on, durably. `index` must be in
    /// `first_index..=next_index()`.
    pub(crate) fn truncate_from(&mut self, index: u64) -> Result<()> {
        assert!(self.first_index <= index && index <= self.next_index(), "checked by the caller");
        let end = self.offset_of(index);
        self.offsets.truncate(usize::try_from(index - self.first_index).expect("bounded"));
        self.end = end;
        self.cut_at(end)
    }

    /// Where the record with `index` starts; `next_index()` maps to the end.
    fn offset_of(&self, index: u64) -> u64 {
        let slot = usize::try_from(index - self.first_index).expect("bounded");
        self.offsets.get(slot).map_or(self.end, |offset| u64::from(*offset))
    }

    /// Sets the file's length to `end` and syncs it.
    fn cut_at(&self, end: u64) -> Result<()> {
        self.file.set_len(end).map_err(|e| Error::io(&self.path, e))?;
        self.sync()
    }
}

fn describe(bad: &BadRecord) -> String {
    match bad {
        BadRecord::Incomplete => "record runs past the end of the segment".into(),
        BadRecord::Damaged(reason) => reason.clone(),
    }
}
