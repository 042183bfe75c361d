//! [`FileReader`] and [`FileWriter`]: a [`DiskFile`] as `std::io::Read` and
//! `std::io::Write`, for code that streams a whole file (a compressor, a
//! hasher) through the disk seam.

use std::io;

use super::DiskFile;

/// Reads a file from an offset to its end, or to a given end.
#[derive(Debug)]
pub struct FileReader<'a> {
    /// The file.
    file: &'a dyn DiskFile,
    /// The next byte to read.
    offset: u64,
    /// Where reading stops.
    end: u64,
}

impl<'a> FileReader<'a> {
    /// Reads `file` from `offset` to the length it has now.
    pub fn new(file: &'a dyn DiskFile, offset: u64) -> io::Result<Self> {
        let end = file.len()?;
        Ok(FileReader { file, offset: offset.min(end), end })
    }
}

impl io::Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.offset).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Writes a file sequentially from an offset.
#[derive(Debug)]
pub struct FileWriter<'a> {
    /// The file.
    file: &'a dyn DiskFile,
    /// Where the next write goes.
    offset: u64,
    /// No write crosses a multiple of this many bytes.
    boundary_bytes: u64,
}

impl<'a> FileWriter<'a> {
    /// Writes into `file` from `offset` on.
    pub fn new(file: &'a dyn DiskFile, offset: u64) -> Self {
        FileWriter { file, offset, boundary_bytes: u64::MAX }
    }

    /// Writes into `file` from `offset` on in pieces that never cross a
    /// multiple of `page_bytes` (> 0): for a file that will later be
    /// rewritten a page at a time, so that the page cache holds it in
    /// one-page folios (see the B-tree's `flush.rs`).
    pub fn page_by_page(file: &'a dyn DiskFile, offset: u64, page_bytes: u64) -> Self {
        assert!(page_bytes > 0, "pages have a size");
        FileWriter { file, offset, boundary_bytes: page_bytes }
    }

    /// Where the next write goes: the bytes written so far plus the start.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl io::Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let to_boundary = self.boundary_bytes - self.offset % self.boundary_bytes;
        let len = buf.len().min(usize::try_from(to_boundary).unwrap_or(usize::MAX));
        self.file.write_all_at(&buf[..len], self.offset)?;
        self.offset += len as u64;
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;
    use crate::disk::{Disk, SimDisk};

    #[test]
    fn page_by_page_writes_never_cross_a_page_boundary() {
        let disk = SimDisk::new(3);
        disk.create_dir_all(Path::new("/d")).unwrap();
        let file = disk.open(Path::new("/d/f"), true).unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let before = disk.ops();
        let mut out = FileWriter::page_by_page(file.as_ref(), 100, 4096);
        out.write_all(&bytes).unwrap();
        assert_eq!(out.offset(), 10_100);
        // 100..4096, 4096..8192, 8192..10100.
        assert_eq!(disk.ops() - before, 3, "one write per page touched");
        let mut back = vec![0u8; bytes.len()];
        file.read_exact_at(&mut back, 100).unwrap();
        assert_eq!(back, bytes);
    }
}
