//! [`Mapping`]: a read-only view of a file's bytes. All `unsafe` around the
//! mapping lives here (the crate's one other `unsafe` is the pointer-free
//! `sync_file_range` call in `real.rs`).
//!
//! On the real disk a mapping is a shared, read-only `mmap` of the file: reads
//! cost no copy and no system call, and later writes to the file through
//! positioned writes show through it (one page cache). It is advised random
//! (`MADV_RANDOM`): a fault reads in its own page only, which keeps the page
//! cache in one-page folios for the writer (see `map_file`); the cost is
//! that a walk over a file not yet cached (a snapshot of a cold state file)
//! reads it a page at a time. On the simulated disk
//! it is a copy of the file taken when the mapping is made, which never sees
//! later writes; [`Mapping::sees_later_writes`] tells the two apart so that
//! the B-tree re-maps after each commit only where it must.
//!
//! # Safety argument
//!
//! Turning mapped memory into a `&[u8]` is unsafe because the bytes behind the
//! mapping can change while the reference lives, which would break the
//! immutability a `&[u8]` promises, and because truncating the file under the
//! mapping makes accesses fault (SIGBUS). rdb upholds, and this module relies
//! on, the following:
//!
//! 1. No `&[u8]` spans the whole mapping. [`Mapping::bytes`] hands out slices
//!    of exactly the byte range asked for, and callers ask only for page runs
//!    that are reachable from a committed snapshot they hold open.
//! 2. The B-tree never writes a run while any open snapshot can reach it
//!    (copy-on-write, and the free-page reuse rule in FORMAT.md). Writes only
//!    touch runs that no slice handed out from here covers, so the bytes of
//!    every live slice stay unchanged for the slice's lifetime.
//! 3. The file is never shortened while mapped: the B-tree only grows it, and
//!    it is owned by one process (the node, under its own user); a mapping
//!    never extends past the file's length at the time it was made.
//!
//! A mapping is unmapped when the last `Arc` to it drops, so a reader holding
//! an old mapping after the file grew keeps valid memory.

use std::fs::File;
use std::io;

/// The bytes behind a [`Mapping`].
#[derive(Debug)]
enum Bytes {
    /// A shared read-only memory map of a real file. `MmapRaw` never forms a
    /// slice of the whole mapping itself (safety rule 1).
    Mapped(memmap2::MmapRaw),
    /// A copy (the simulated disk), or nothing for an empty file.
    Copied(Vec<u8>),
}

/// A read-only view of a file's first `len()` bytes.
#[derive(Debug)]
pub struct Mapping {
    /// The view.
    bytes: Bytes,
}

impl Mapping {
    /// Maps the first `len` bytes of `file` read-only and shared.
    pub(crate) fn map_file(file: &File, len: u64) -> io::Result<Self> {
        if len == 0 {
            // mmap of length 0 is an error; an empty view needs no mapping.
            return Ok(Self::copied(Vec::new()));
        }
        let len =
            usize::try_from(len).map_err(|_| io::Error::other("mapping larger than memory"))?;
        let map = memmap2::MmapOptions::new().len(len).map_raw_read_only(file)?;
        // No readahead on faults: B-tree reads are random, and readahead
        // fills the page cache with large folios, which make every later
        // 4 KiB `pwrite` into them (copy-on-write reuses freed pages all
        // over the file) and its writeback walk the whole folio. Measured
        // on the development VM (kernel 6.18, ext4;
        // `benches/page-cache-folios.py`), random 4 KiB writes with
        // writeback into a 256 MiB file read in through a mapping: 24.5 µs
        // of CPU per page with readahead, 3.3 µs without.
        // A hint: should the kernel refuse it, only speed changes.
        let _ = map.advise(memmap2::Advice::Random);
        Ok(Mapping { bytes: Bytes::Mapped(map) })
    }

    /// A view over a copy of some bytes.
    pub(crate) fn copied(bytes: Vec<u8>) -> Self {
        Mapping { bytes: Bytes::Copied(bytes) }
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> u64 {
        match &self.bytes {
            Bytes::Mapped(map) => map.len() as u64,
            Bytes::Copied(bytes) => bytes.len() as u64,
        }
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether writes to the file made after the mapping show through it.
    pub fn sees_later_writes(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    /// The bytes `offset .. offset + len`, or `None` if they pass the end.
    pub fn bytes(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        match &self.bytes {
            Bytes::Mapped(map) => {
                if end > map.len() {
                    return None;
                }
                // SAFETY: `start..end` lies inside the live mapping (checked
                // above), which lives as long as `&self`; per the module docs
                // nothing writes these bytes while the returned slice lives
                // (rules 2 and 3), and no other slice spans them mutably.
                Some(unsafe { std::slice::from_raw_parts(map.as_ptr().add(start), len) })
            }
            Bytes::Copied(bytes) => bytes.get(start..end),
        }
    }
}
