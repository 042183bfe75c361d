//! [`SnapshotDir`]: the snapshot files of a data directory
//! (`<data-dir>/snapshots/`), made, received, listed, checked, pruned and
//! unpacked through the storage crate's [`Disk`], so that every step runs on
//! the simulated disk in the crash tests (`tests/snapshot_crash.rs`).
//!
//! Every file is written under a temporary name, synced, renamed to its
//! final name and its directory synced: a crash leaves either no snapshot or
//! a whole one, and a leftover temporary is removed when the directory is
//! opened. The file format is [`super::snapshot_file`]'s.
//!
//! Caveats: listing reads each file's header, and choosing a snapshot to
//! start from verifies its whole content (hash and LZ4 block checksums), a
//! read of the whole file.

use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdb_storage::btree::ReadTxn;
use rdb_storage::disk::{Disk, DiskFile, FileReader, FileWriter, STREAM_WRITEBACK_BYTES};
use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use super::snapshot_file::{
    SnapshotHeader, FORMAT_VERSION, INCOMING_NAME, IO_BUFFER_BYTES, TEMP_NAME,
};
use crate::raft::{Membership, Position};

/// A snapshot on disk: its path and header.
pub type SnapshotFile = (PathBuf, SnapshotHeader);

/// The snapshot directory of one node.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    /// Where its files are read and written.
    disk: Arc<dyn Disk>,
    /// The directory.
    dir: PathBuf,
}

impl SnapshotDir {
    /// Opens `dir` on `disk`, creating it if missing and removing the
    /// leftovers of writes and transfers a crash interrupted (never trusted).
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<Self> {
        disk.create_dir_all(dir).map_err(Error::io("create", dir))?;
        for name in [TEMP_NAME, INCOMING_NAME] {
            match disk.remove(&dir.join(name)) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(Error::io("remove", &dir.join(name))(e))
                }
                _ => {}
            }
        }
        Ok(SnapshotDir { disk, dir: dir.to_path_buf() })
    }

    /// `dir` for reading only: nothing created, nothing removed (for
    /// tools that look at a running node's files, or at a backup).
    pub fn open_read_only(disk: Arc<dyn Disk>, dir: &Path) -> Self {
        SnapshotDir { disk, dir: dir.to_path_buf() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The disk it lives on.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// Writes a snapshot of `txn` (whose state is applied up to `meta`);
    /// returns its path and header once it is durable. Writes to the state
    /// file are not blocked meanwhile: `txn` is a reader.
    pub fn write(
        &self,
        txn: &ReadTxn,
        meta: Position,
        membership: &Membership,
    ) -> Result<SnapshotFile> {
        let temp = self.dir.join(TEMP_NAME);
        let file = self.create(&temp)?;
        let mut header = SnapshotHeader {
            meta,
            membership: membership.clone(),
            content_bytes: 0,
            hash: [0; 32],
            version: FORMAT_VERSION,
        };
        // The real header, the same length, is written once the content is.
        let placeholder = header.encode(&temp)?;
        file.write_all_at(&placeholder, 0).map_err(Error::io("write", &temp))?;
        // Block checksums (xxHash-32 per block, checked while
        // decompressing): the content's SHA-256 cannot see damage that
        // decompresses to the same bytes (a match offset moved within a run
        // of zeros), and a damaged file should be refused whatever the damage.
        let frame = lz4_flex::frame::FrameInfo::new().block_checksums(true);
        // Written back as it goes, so that its sync is no flood the WAL's
        // syncs wait behind (storage's disk/stream.rs).
        let out = FileWriter::new(&*file, placeholder.len() as u64)
            .with_writeback(STREAM_WRITEBACK_BYTES);
        let encoder = lz4_flex::frame::FrameEncoder::with_frame_info(
            frame,
            BufWriter::with_capacity(IO_BUFFER_BYTES, out),
        );
        let mut hashing = Hashing { inner: encoder, hasher: Sha256::new(), bytes: 0 };
        txn.export(&mut hashing).map_err(Error::storage("snapshot export"))?;
        let Hashing { inner: encoder, hasher, bytes } = hashing;
        let buffered = encoder.finish().map_err(|e| Error::io("compress", &temp)(e.into()))?;
        buffered.into_inner().map_err(|e| Error::io("write", &temp)(e.into_error()))?;
        header.content_bytes = bytes;
        header.hash = hasher.finalize().into();
        file.write_all_at(&header.encode(&temp)?, 0).map_err(Error::io("write", &temp))?;
        file.sync_data().map_err(Error::io("sync", &temp))?;
        let path = self.dir.join(header.file_name());
        self.publish(&temp, &path)?;
        Ok((path, header))
    }

    /// Starts receiving a snapshot from the leader, under a temporary name.
    pub fn receive(&self) -> Result<Receiving> {
        let path = self.dir.join(INCOMING_NAME);
        let file = self.create(&path)?;
        Ok(Receiving { dir: self.clone(), file, path, bytes: 0 })
    }

    /// Reads a file's header (without checking its content).
    pub fn read_header(&self, path: &Path) -> Result<SnapshotHeader> {
        let file = self.disk.open_read(path).map_err(Error::io("open", path))?;
        let reader = FileReader::new(&*file, 0).map_err(Error::io("read", path))?;
        SnapshotHeader::read(&mut BufReader::new(reader), path)
    }

    /// Decompresses the snapshot at `path` into `out`, checking its length,
    /// its blocks' checksums and its hash; returns the header. `out` holds
    /// garbage if this fails.
    pub fn unpack(&self, path: &Path, out: &mut dyn Write) -> Result<SnapshotHeader> {
        let header = self.read_header(path)?;
        let file = self.disk.open_read(path).map_err(Error::io("open", path))?;
        let reader =
            FileReader::new(&*file, header.content_offset()).map_err(Error::io("read", path))?;
        let reader = BufReader::with_capacity(IO_BUFFER_BYTES, reader);
        let mut decoder = lz4_flex::frame::FrameDecoder::new(reader).take(header.content_bytes + 1);
        let mut hashing = Hashing { inner: out, hasher: Sha256::new(), bytes: 0 };
        std::io::copy(&mut decoder, &mut hashing).map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                let (read, all) = (hashing.bytes, header.content_bytes);
                format!("truncated: the file ends after {read} of its {all} content bytes")
            } else {
                format!("damaged content: {e}")
            };
            Error::bad_snapshot(path, why)
        })?;
        let hash: [u8; 32] = hashing.hasher.finalize().into();
        if hashing.bytes != header.content_bytes || hash != header.hash {
            return Err(Error::bad_snapshot(path, "content fails its checksum"));
        }
        // Nothing may follow the content: a file with more is not the one
        // that was written.
        let mut rest = decoder.into_inner().into_inner();
        let mut probe = [0u8; 1];
        match rest.read(&mut probe) {
            Ok(0) => Ok(header),
            Ok(_) => Err(Error::bad_snapshot(path, "bytes follow the content")),
            Err(e) => Err(Error::bad_snapshot(path, format!("damaged content: {e}"))),
        }
    }

    /// Checks a whole snapshot file.
    pub fn verify(&self, path: &Path) -> Result<SnapshotHeader> {
        self.unpack(path, &mut std::io::sink())
    }

    /// Unpacks the snapshot at `path` into the file `target`, durably: under
    /// the name `temp` first, synced, renamed over `target` (in the same
    /// directory), the directory synced. A crash leaves `target` as it was
    /// or whole.
    pub fn unpack_to(&self, path: &Path, temp: &Path, target: &Path) -> Result<SnapshotHeader> {
        let file = self.create(temp)?;
        // Page by page: the node rewrites this file's pages one at a time
        // from now on, which is slow inside large page-cache folios. Written
        // back as it goes, as a snapshot is.
        let pages = FileWriter::page_by_page(&*file, 0, rdb_storage::btree::PAGE_BYTES as u64)
            .with_writeback(STREAM_WRITEBACK_BYTES);
        let mut out = BufWriter::with_capacity(IO_BUFFER_BYTES, pages);
        let header = self.unpack(path, &mut out)?;
        out.flush().map_err(Error::io("write", temp))?;
        drop(out);
        file.sync_data().map_err(Error::io("sync", temp))?;
        drop(file);
        self.disk.rename(temp, target).map_err(Error::io("rename", target))?;
        let dir = target.parent().unwrap_or(Path::new("."));
        self.disk.sync_dir(dir).map_err(Error::io("sync", dir))?;
        Ok(header)
    }

    /// The snapshots whose headers read, newest (highest index) first. A
    /// file that is not a snapshot, or whose header is damaged, is reported
    /// and left out; one that cannot be read at all (permissions, an IO
    /// error) is an error: a backup the node cannot open must not look like
    /// no backup.
    pub fn list(&self) -> Result<Vec<SnapshotFile>> {
        let names = self.disk.list(&self.dir).map_err(Error::io("list", &self.dir))?;
        let mut found = Vec::new();
        let paths = names
            .into_iter()
            .filter(|name| name.starts_with("state_") && name.ends_with(".lz4"))
            .map(|name| self.dir.join(name));
        for path in paths {
            match self.read_header(&path) {
                Ok(header) => found.push((path, header)),
                Err(error @ Error::Io { .. }) => return Err(error),
                Err(why) => log::error!("skipping snapshot: {why}"),
            }
        }
        found.sort_by(|a, b| b.1.meta.index.cmp(&a.1.meta.index).then_with(|| a.0.cmp(&b.0)));
        Ok(found)
    }

    /// The newest snapshot whose content verifies; damaged ones are
    /// reported and skipped in favour of older ones; an unreadable one is
    /// an error, as in [`SnapshotDir::list`].
    pub fn newest_valid(&self) -> Result<Option<SnapshotFile>> {
        for (path, _) in self.list()? {
            match self.verify(&path) {
                Ok(header) => return Ok(Some((path, header))),
                Err(error @ Error::Io { .. }) => return Err(error),
                Err(why) => log::error!("skipping damaged snapshot: {why}"),
            }
        }
        Ok(None)
    }

    /// Removes all but the newest `keep` snapshots.
    pub fn prune(&self, keep: usize) -> Result<()> {
        for (path, _) in self.list()?.into_iter().skip(keep) {
            match self.disk.remove(&path) {
                // Another prune (the snapshot thread's, an install's) got it.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                result => result.map_err(Error::io("remove", &path))?,
            }
        }
        self.disk.sync_dir(&self.dir).map_err(Error::io("sync", &self.dir))
    }

    /// The file's length in bytes (0 if it cannot be read).
    pub fn file_bytes(&self, path: &Path) -> u64 {
        self.disk.open_read(path).and_then(|file| file.len()).unwrap_or(0)
    }

    /// Opens `path` for reading.
    pub fn open_file(&self, path: &Path) -> Result<Box<dyn DiskFile>> {
        self.disk.open_read(path).map_err(Error::io("open", path))
    }

    /// Creates `path` empty (truncating a leftover).
    fn create(&self, path: &Path) -> Result<Box<dyn DiskFile>> {
        let file = self.disk.open(path, true).map_err(Error::io("create", path))?;
        file.set_len(0).map_err(Error::io("truncate", path))?;
        Ok(file)
    }

    /// Renames a synced `temp` to `path` and makes the name durable.
    fn publish(&self, temp: &Path, path: &Path) -> Result<()> {
        self.disk.rename(temp, path).map_err(Error::io("rename", path))?;
        self.disk.sync_dir(&self.dir).map_err(Error::io("sync", &self.dir))
    }
}

/// A snapshot arriving from the leader in chunks.
#[derive(Debug)]
pub struct Receiving {
    /// Where it goes once whole.
    dir: SnapshotDir,
    /// The temporary file.
    file: Box<dyn DiskFile>,
    /// Its path.
    path: PathBuf,
    /// Bytes received so far.
    bytes: u64,
}

impl Receiving {
    /// Bytes received so far: the offset the next chunk must start at.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends the next chunk and starts its writeback (a chunk is about
    /// [`STREAM_WRITEBACK_BYTES`]; see `write`). Caveat: this runs on the
    /// RPC thread, as the write itself does, and a hint can wait while the
    /// disk's queue is full, as a write can while the page cache is.
    pub fn append(&mut self, chunk: &[u8]) -> Result<()> {
        self.file.write_all_at(chunk, self.bytes).map_err(Error::io("write", &self.path))?;
        let len = chunk.len() as u64;
        self.file.start_writeback(self.bytes, len).map_err(Error::io("write", &self.path))?;
        self.bytes += len;
        Ok(())
    }

    /// The last chunk is in: syncs the file, verifies it whole and that it
    /// is the snapshot `expected` (the one the leader offered), and gives it
    /// its final name, durably. A file that does not verify is refused
    /// ([`Error::BadSnapshot`]), never published, and left to be
    /// overwritten or removed.
    pub fn finish(self, expected: Position) -> Result<SnapshotFile> {
        self.file.sync_data().map_err(Error::io("sync", &self.path))?;
        drop(self.file);
        let header = self.dir.verify(&self.path)?;
        if header.meta != expected {
            let why = format!("it covers {:?}, not the {expected:?} offered", header.meta);
            return Err(Error::bad_snapshot(&self.path, why));
        }
        let target = self.dir.dir.join(header.file_name());
        self.dir.publish(&self.path, &target)?;
        Ok((target, header))
    }
}

/// Counts and hashes what passes through to `inner`.
struct Hashing<W> {
    /// Where the bytes go.
    inner: W,
    /// Their hash.
    hasher: Sha256,
    /// Their count.
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
