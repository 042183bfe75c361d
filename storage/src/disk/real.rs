//! [`RealDisk`]: the disk seam over `std::fs` and Unix positioned IO.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Disk, DiskFile, Mapping};

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealDisk;

/// A file of the real file system.
#[derive(Debug)]
struct RealFile {
    /// The open file, read and write.
    file: File,
}

impl RealDisk {
    /// A file the caller opened itself (with options this seam does not
    /// offer, such as `create_new`), as a [`DiskFile`].
    pub fn adopt(file: File) -> Box<dyn DiskFile> {
        Box::new(RealFile { file })
    }
}

impl Disk for RealDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).create(create).open(path)?;
        Ok(Box::new(RealFile { file }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(RealFile { file: File::open(path)? }))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // On Linux a directory is synced through a read-only descriptor.
        File::open(dir)?.sync_all()
    }
}

impl DiskFile for RealFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.file, buf, offset)
    }

    fn append(&self, buf: &[u8]) -> io::Result<u64> {
        let offset = self.file.metadata()?.len();
        FileExt::write_all_at(&self.file, buf, offset)?;
        Ok(offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "range beyond a file"));
        };
        // SAFETY: sync_file_range takes no pointers; the descriptor is owned
        // by `self.file` and stays open for the whole call. With only
        // SYNC_FILE_RANGE_WRITE it starts writeback of dirty pages in the
        // range and returns; it neither waits nor makes anything durable.
        let result = unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(()) // a hint only; the sync that follows does the work
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn map(&self, len: u64) -> io::Result<Mapping> {
        Mapping::map_file(&self.file, len)
    }
}
