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
}

impl<'a> FileWriter<'a> {
    /// Writes into `file` from `offset` on.
    pub fn new(file: &'a dyn DiskFile, offset: u64) -> Self {
        FileWriter { file, offset }
    }

    /// Where the next write goes: the bytes written so far plus the start.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl io::Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
