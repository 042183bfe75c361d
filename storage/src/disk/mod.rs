//! The disk seam: every file operation of the storage layer goes through
//! [`Disk`] and [`DiskFile`].
//!
//! The trait is deliberately narrow, just what a log and a copy-on-write
//! B-tree need: positioned reads and writes, append, `sync_data`, length,
//! a read-only mapping, and the directory operations (list, rename, remove, sync) that make file
//! creation and deletion durable. Two implementations exist:
//!
//! - [`RealDisk`] maps each call onto `std::fs` and the Unix positioned IO
//!   calls. It is what a node runs on.
//! - [`SimDisk`] keeps files in memory and remembers which bytes and which
//!   directory entries have been synced. [`SimDisk::crash`] then throws away,
//!   or tears, what was not, chosen by a seeded random generator, and
//!   [`SimDisk::fail_at`] makes a chosen operation fail with an IO error.
//!   Every storage test runs on it, so the recovery code is exercised against
//!   the failures it exists for.
//!
//! The durability model both sides share (and FORMAT.md relies on):
//! `sync_data` makes a file's contents and length durable; a file's *name*
//! (create, rename, remove) is durable only after `sync_dir` on its
//! directory; anything not yet synced may be lost, partly written (a prefix of
//! a write), or zero-filled.

mod mapping;
mod real;
mod sim;
mod stream;

use std::fmt;
use std::io;
use std::path::Path;

pub use mapping::Mapping;
pub use real::RealDisk;
pub use sim::SimDisk;
pub use stream::{FileReader, FileWriter, STREAM_WRITEBACK_BYTES};

/// A file system: opens files and changes directories.
pub trait Disk: Send + Sync + fmt::Debug {
    /// Opens `path` for reading and writing; creates it empty when `create`
    /// is set and it does not exist. A missing file without `create` is
    /// `io::ErrorKind::NotFound`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>>;

    /// Opens the existing file at `path` for reading only, as a file the
    /// process may read but not write (a backup copied in by root, a
    /// read-only mount) must be opened; writes through it fail.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.open(path, false)
    }

    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// The names of the files directly inside `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Atomically renames `from` to `to` (same directory), replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Makes every earlier create, rename and remove inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file. All offsets are absolute; nothing keeps a cursor.
#[expect(
    clippy::len_without_is_empty,
    reason = "storage asks a file's length, never its emptiness"
)]
pub trait DiskFile: Send + Sync + fmt::Debug {
    /// Fills `buf` from `offset`; reading past the end is
    /// `io::ErrorKind::UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at the current end of the file and returns the
    /// offset it was written at.
    fn append(&self, buf: &[u8]) -> io::Result<u64>;

    /// Makes the file's contents and length durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;

    /// Asks for `len` bytes at `offset` to be written back to the device now,
    /// without waiting. Only a hint: it makes nothing durable (that is
    /// [`DiskFile::sync_data`]'s job), but the sync that follows has less
    /// left to wait for.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()>;

    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Truncates or zero-extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// A read-only view of the first `len` bytes (see [`Mapping`] for what
    /// callers must uphold). `len` must not pass the file's length.
    fn map(&self, len: u64) -> io::Result<Mapping>;
}
