//! [`RunWriter`]: how a commit's runs reach the file.
//!
//! A durable commit at a million keys writes about 1,300 pages scattered
//! over the file, then waits in `fdatasync` for all of them. Measured on the
//! development VM, the disk takes ~16 ms for 1,300 scattered 4 KiB pages
//! when they all arrive at once, and the CPU work of building them (encoding,
//! checksums, `pwrite` into the page cache) takes about as long again. So the
//! writer does not hold the runs back: each is written as soon as it is
//! encoded, and every [`WRITEBACK_HINT_BYTES`] the kernel is asked to start
//! sending what was written so far ([`DiskFile::start_writeback`]) while the
//! rest is still being encoded. The final `fdatasync` then waits only for
//! the tail.
//!
//! Every write is one page, even where runs are contiguous (a multi-page
//! run, or the pages at the end of a growing file). A larger write makes
//! the kernel cache those bytes in one large folio (ext4 does since Linux
//! 6.16), and every later one-page write into any page of it, which
//! copy-on-write makes all over the file as it reuses freed pages, and its
//! writeback, then walk the whole folio. Measured on the development VM
//! (kernel 6.18, ext4; `benches/page-cache-folios.py`): random 4 KiB writes
//! with writeback hints cost 2.6 µs of CPU a page in a file cached page by
//! page, 13.2 µs in one written in 1 MiB pieces; the storage `fill` example (random keys, 114 a
//! transaction) went from 11.3 µs of CPU per insert at 1.5 million keys and
//! 14.5 at 3 million to 12.0 and 12.2 with page-sized writes, for ~1 µs
//! more in the first half million (more system calls while the file grows).
//!
//! Nothing here changes what is durable when: the hint starts IO early but
//! promises nothing, and the commit protocol's syncs stay where they were.
//! Deferred commits hint too, counting across commits: their pages are
//! never rewritten before the next sync (freed pages wait for a durable
//! meta), so early writeback costs no extra IO, and the sync that makes them
//! durable (on the node's syncer thread) waits only for the tail.
//!
//! The writer also grows the file (and remembers that it did, so the commit
//! maps it anew) before the first write past its end.

use std::ops::Range;
use std::path::Path;

use super::page::{PageId, PageRun, PAGE_BYTES};
use crate::disk::DiskFile;
use crate::{Error, Result};

/// Bytes written between two writeback hints. Measured on the development
/// VM (1,000-key durable commits at a million keys): hints every 64-384 KiB
/// all take a commit from ~23 ms to ~16-17 ms; every 16-32 KiB the system
/// calls eat the gain; from ~448 KiB on, one hint's ~110 scattered pages
/// pass the block layer's writeback throttling limit (`wbt_lat_usec`), the
/// hint blocks until earlier requests finish, and the gain is gone.
pub(crate) const WRITEBACK_HINT_BYTES: u64 = 256 << 10;
/// The file grows by at most this much at a time (and at least doubles below
/// it), so that growth, and re-mapping with it, is rare.
const GROWTH_BYTES_MAX: u64 = 1 << 30;

/// Writes since the last writeback hint. Carried from commit to commit in
/// the writer's state, so that small deferred commits (the node makes one
/// per applied batch) add up to hints too, and the periodic sync finds
/// little left to write.
#[derive(Debug, Default)]
pub(crate) struct Unhinted {
    /// Byte range covering every write since the last hint.
    range: Option<Range<u64>>,
    /// Bytes written since the last hint.
    bytes: u64,
}

/// Writes one commit's runs.
pub(crate) struct RunWriter<'f> {
    /// The state file.
    file: &'f dyn DiskFile,
    /// Its path, for errors.
    path: &'f Path,
    /// The file's length in pages; grows with the writes.
    file_pages: u64,
    /// Whether the file grew during this commit.
    grown: bool,
    /// Writes not yet covered by a hint.
    unhinted: Unhinted,
}

impl<'f> RunWriter<'f> {
    /// A writer for a file currently `file_pages` pages long, with the
    /// writes the previous commits left unhinted.
    pub(crate) fn new(
        file: &'f dyn DiskFile,
        path: &'f Path,
        file_pages: u64,
        unhinted: Unhinted,
    ) -> Self {
        RunWriter { file, path, file_pages, grown: false, unhinted }
    }

    /// Writes `bytes`, the whole encoded `run`, a page at a time.
    pub(crate) fn write(&mut self, run: PageRun, bytes: Vec<u8>) -> Result<()> {
        assert_eq!(bytes.len(), run.pages as usize * PAGE_BYTES, "a run is whole pages");
        assert!(run.id >= PageId::FIRST_RUN, "runs never overwrite the meta pages");
        self.ensure_pages(run.id.get() + u64::from(run.pages))?;
        let start = run.id.offset();
        for (i, page) in bytes.chunks(PAGE_BYTES).enumerate() {
            let offset = start + (i * PAGE_BYTES) as u64;
            self.file.write_all_at(page, offset).map_err(|e| Error::io(self.path, e))?;
        }
        self.note_written(start..start + bytes.len() as u64)
    }

    /// Returns the file's length in pages, whether it grew, and the writes
    /// still unhinted.
    pub(crate) fn finish(self) -> (u64, bool, Unhinted) {
        (self.file_pages, self.grown, self.unhinted)
    }

    /// Grows the file to hold `page_count` pages, if it does not yet.
    pub(crate) fn ensure_pages(&mut self, page_count: u64) -> Result<()> {
        if page_count <= self.file_pages {
            return Ok(());
        }
        let current = self.file_pages * PAGE_BYTES as u64;
        let step = current.clamp(64 * PAGE_BYTES as u64, GROWTH_BYTES_MAX);
        let wanted = (page_count * PAGE_BYTES as u64).max(current + step);
        self.file.set_len(wanted).map_err(|e| Error::io(self.path, e))?;
        self.file_pages = wanted / PAGE_BYTES as u64;
        self.grown = true;
        Ok(())
    }

    /// Counts a write towards the next hint, and gives the hint when due.
    fn note_written(&mut self, written: Range<u64>) -> Result<()> {
        let unhinted = &mut self.unhinted;
        unhinted.bytes += written.end - written.start;
        let range = match unhinted.range.take() {
            Some(range) => range.start.min(written.start)..range.end.max(written.end),
            None => written,
        };
        if unhinted.bytes < WRITEBACK_HINT_BYTES {
            unhinted.range = Some(range);
            return Ok(());
        }
        unhinted.bytes = 0;
        self.file
            .start_writeback(range.start, range.end - range.start)
            .map_err(|e| Error::io(self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{Disk, SimDisk};

    const PATH: &str = "/d/state.db";

    fn run(id: u64, pages: u32, fill: u8) -> (PageRun, Vec<u8>) {
        (PageRun { id: PageId(id), pages }, vec![fill; pages as usize * PAGE_BYTES])
    }

    /// An empty state file on a fresh simulated disk.
    fn sim_file(seed: u64) -> (SimDisk, Box<dyn DiskFile>) {
        let disk = SimDisk::new(seed);
        disk.create_dir_all(Path::new("/d")).unwrap();
        let file = disk.open(Path::new(PATH), true).unwrap();
        (disk, file)
    }

    #[test]
    fn runs_land_at_their_pages_in_any_order_and_the_file_grows_first() {
        let (_, file) = sim_file(7);
        let path = Path::new(PATH);
        file.set_len(4 * PAGE_BYTES as u64).unwrap();
        let mut writer = RunWriter::new(file.as_ref(), path, 4, Unhinted::default());
        for (id, pages, fill) in [(3, 1, 3), (4, 2, 4), (2, 1, 2), (70, 1, 70), (6, 1, 6)] {
            let (run, bytes) = run(id, pages, fill);
            writer.write(run, bytes).unwrap();
        }
        let (file_pages, grown, _) = writer.finish();
        assert!(grown, "page 70 lies past the 4-page file");
        assert_eq!(file_pages * PAGE_BYTES as u64, file.len().unwrap());
        assert!(file_pages >= 71, "the file holds page 70");
        for (page, fill) in [(2, 2), (3, 3), (4, 4), (5, 4), (6, 6), (70, 70)] {
            let mut bytes = vec![0u8; PAGE_BYTES];
            file.read_exact_at(&mut bytes, page * PAGE_BYTES as u64).unwrap();
            assert!(bytes.iter().all(|b| *b == fill), "page {page} holds its run");
        }
    }

    #[test]
    fn every_write_is_one_page_even_for_contiguous_runs() {
        let (disk, file) = sim_file(8);
        let path = Path::new(PATH);
        file.set_len(64 * PAGE_BYTES as u64).unwrap();
        let mut writer = RunWriter::new(file.as_ref(), path, 64, Unhinted::default());
        let before = disk.ops();
        // A three-page run, then two single pages right after it.
        for (id, pages, fill) in [(10, 3, 1), (13, 1, 2), (14, 1, 3)] {
            let (run, bytes) = run(id, pages, fill);
            writer.write(run, bytes).unwrap();
        }
        let (_, grown, _) = writer.finish();
        assert!(!grown, "the file was long enough");
        assert_eq!(disk.ops() - before, 5, "five pages, five writes");
        for (page, fill) in [(10, 1), (12, 1), (13, 2), (14, 3)] {
            let mut bytes = vec![0u8; PAGE_BYTES];
            file.read_exact_at(&mut bytes, page * PAGE_BYTES as u64).unwrap();
            assert!(bytes.iter().all(|b| *b == fill), "page {page} holds its run");
        }
    }

    #[test]
    fn hints_come_every_hint_size_of_writes_counted_across_commits() {
        let (disk, file) = sim_file(9);
        let path = Path::new(PATH);
        let pages_per_hint = WRITEBACK_HINT_BYTES / PAGE_BYTES as u64;
        // Scattered pages, as a commit at a million keys writes them; each
        // "commit" writes 0.6 of a hint's worth.
        let commit = |unhinted: Unhinted, first: u64| {
            let mut writer = RunWriter::new(file.as_ref(), path, 0, unhinted);
            for i in 0..pages_per_hint * 6 / 10 {
                let (run, bytes) = run(first + 3 * i, 1, 1);
                writer.write(run, bytes).unwrap();
            }
            writer.finish().2
        };
        let before = disk.writeback_hints();
        let carried = commit(Unhinted::default(), 2);
        assert_eq!(disk.writeback_hints(), before, "0.6 of a hint's worth: no hint yet");
        commit(carried, 10_000);
        assert_eq!(disk.writeback_hints(), before + 1, "1.2 of a hint's worth: one hint");
        commit(Unhinted::default(), 20_000);
        assert_eq!(disk.writeback_hints(), before + 1, "a fresh count starts from zero");
    }
}
