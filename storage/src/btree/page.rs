//! Page ids, run headers and checksums: the byte layout of FORMAT.md's
//! "Pages" section, and the checked access to runs through a mapping.

use std::path::Path;

use crate::disk::Mapping;
use crate::le::{u32_at, u64_at};
use crate::{Error, Result};

/// Bytes in a page.
pub const PAGE_BYTES: usize = 4096;
/// Bytes of the header at the start of every run.
pub(crate) const RUN_HEADER_BYTES: usize = 24;

/// The number of a page in the state file: page n starts at byte n × 4096.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageId(pub(crate) u64);

impl PageId {
    /// "No page": page 0 is a meta page, so no run ever starts there.
    pub(crate) const NONE: PageId = PageId(0);
    /// The first page a run can occupy (pages 0 and 1 are the meta pages).
    pub(crate) const FIRST_RUN: PageId = PageId(2);

    /// The page number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The page's byte offset in the file (saturating: a damaged id must
    /// still make an error message, not an overflow).
    pub(crate) fn offset(self) -> u64 {
        self.0.saturating_mul(PAGE_BYTES as u64)
    }
}

/// What a run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunKind {
    /// A branch node.
    Branch = 1,
    /// A leaf node.
    Leaf = 2,
    /// One value too large to sit in its leaf.
    Overflow = 3,
    /// The list of free pages.
    FreeList = 4,
}

impl RunKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(RunKind::Branch),
            2 => Some(RunKind::Leaf),
            3 => Some(RunKind::Overflow),
            4 => Some(RunKind::FreeList),
            _ => None,
        }
    }
}

/// A run of contiguous pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRun {
    /// The first page.
    pub(crate) id: PageId,
    /// Pages in the run, at least 1.
    pub(crate) pages: u32,
}

/// The decoded header of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunHeader {
    /// What the run holds.
    pub(crate) kind: RunKind,
    /// Entries of a node; 0 otherwise.
    pub(crate) count: u16,
    /// The run's length in pages.
    pub(crate) pages: u32,
    /// Bytes used after the header.
    pub(crate) length: u32,
    /// The run's own first page.
    pub(crate) page_id: PageId,
}

/// Pages needed to hold `bytes` bytes (at least one).
pub(crate) fn pages_for(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(PAGE_BYTES).max(1)).expect("runs are far below 2^32 pages")
}

/// Writes `header` at the start of `run`; the checksum comes with [`seal_run`].
pub(crate) fn write_header(run: &mut [u8], header: RunHeader) {
    run[4] = header.kind as u8;
    run[5] = 0;
    run[6..8].copy_from_slice(&header.count.to_le_bytes());
    run[8..12].copy_from_slice(&header.pages.to_le_bytes());
    run[12..16].copy_from_slice(&header.length.to_le_bytes());
    run[16..24].copy_from_slice(&header.page_id.0.to_le_bytes());
}

/// Stores the checksum of everything after it; the run is then final.
pub(crate) fn seal_run(run: &mut [u8]) {
    let crc = crc32fast::hash(&run[4..]);
    run[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// Whether a run's stored checksum matches its bytes.
pub(crate) fn checksum_ok(run: &[u8]) -> bool {
    run.len() >= RUN_HEADER_BYTES && u32_at(run, 0) == crc32fast::hash(&run[4..])
}

/// Checked access to the runs of one snapshot through a mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageReader<'a> {
    /// The file's bytes.
    pub(crate) map: &'a Mapping,
    /// Pages of the snapshot; no run of it reaches past this.
    pub(crate) page_count: u64,
    /// The state file, for error messages.
    pub(crate) path: &'a Path,
}

impl<'a> PageReader<'a> {
    /// The header of the run at `id`, checked in itself.
    fn header(&self, id: PageId) -> Result<RunHeader> {
        if id < PageId::FIRST_RUN || id.0 >= self.page_count {
            return Err(self.corrupt(id, format!("page {} is outside the snapshot's runs", id.0)));
        }
        let header_bytes = self
            .map
            .bytes(id.offset(), RUN_HEADER_BYTES)
            .ok_or_else(|| self.corrupt(id, "page lies beyond the end of the file"))?;
        decode_header(header_bytes).map_err(|reason| self.corrupt(id, reason))
    }

    /// The run starting at `id`, which must be of `kind`, with its header.
    /// Checks structure, not the checksum (see FORMAT.md, "Checking").
    pub(crate) fn run(&self, id: PageId, kind: RunKind) -> Result<(RunHeader, &'a [u8])> {
        self.run_of(id, |found| found == kind)
    }

    /// The run starting at `id`, whose kind must satisfy `accept`.
    pub(crate) fn run_of(
        &self,
        id: PageId,
        accept: impl Fn(RunKind) -> bool,
    ) -> Result<(RunHeader, &'a [u8])> {
        let header = self.header(id)?;
        if !accept(header.kind) || header.page_id != id {
            let reason = format!(
                "unexpected {:?} run of page {} at page {}",
                header.kind, header.page_id.0, id.0
            );
            return Err(self.corrupt(id, reason));
        }
        if id.0 + u64::from(header.pages) > self.page_count {
            return Err(self
                .corrupt(id, format!("run of {} pages passes the snapshot's end", header.pages)));
        }
        let run = self
            .map
            .bytes(id.offset(), header.pages as usize * PAGE_BYTES)
            .ok_or_else(|| self.corrupt(id, "run lies beyond the end of the file"))?;
        Ok((header, run))
    }

    /// A corruption error at page `id` of the state file.
    pub(crate) fn corrupt(&self, id: PageId, reason: impl Into<String>) -> Error {
        Error::corrupt(self.path, id.offset(), reason)
    }
}

/// Decodes a run header, checking what can be checked without the run.
fn decode_header(bytes: &[u8]) -> Result<RunHeader, String> {
    let kind =
        RunKind::from_byte(bytes[4]).ok_or_else(|| format!("unknown run kind {}", bytes[4]))?;
    let header = RunHeader {
        kind,
        count: u16::from_le_bytes([bytes[6], bytes[7]]),
        pages: u32_at(bytes, 8),
        length: u32_at(bytes, 12),
        page_id: PageId(u64_at(bytes, 16)),
    };
    let capacity =
        (header.pages as usize).saturating_mul(PAGE_BYTES).saturating_sub(RUN_HEADER_BYTES);
    if header.pages == 0 || header.length as usize > capacity {
        return Err(format!("run of {} pages cannot hold {} bytes", header.pages, header.length));
    }
    Ok(header)
}
