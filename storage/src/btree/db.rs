//! [`Db`]: the open state file, its published snapshot, its readers and its
//! one writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::alloc::FreePages;
use super::flush::Unhinted;
use super::meta::Meta;
use super::meta::USER_META_BYTES;
use super::page::{checksum_ok, PageId, PageReader, RunKind, PAGE_BYTES, RUN_HEADER_BYTES};
use super::read::ReadTxn;
use super::shared::{lock, Durable, Published, Shared, Snapshot, Space, WriterState};
use super::write::WriteTxn;
use crate::disk::{Disk, DiskFile};
use crate::files::{create_file_atomically, remove_durably, TEMP_SUFFIX};
use crate::le::u64_at;
use crate::{Error, Result};

/// An open state file. Clones share it. Any number of [`ReadTxn`]s may run
/// on any threads; one [`WriteTxn`] at a time.
#[derive(Debug, Clone)]
pub struct Db {
    /// State shared by every handle and transaction.
    pub(crate) shared: Arc<Shared>,
}

impl Db {
    /// Opens the state file at `path`, creating it if missing (FORMAT.md,
    /// "Recovery on open").
    pub fn open(disk: Arc<dyn Disk>, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let (dir, name) = split_path(&path)?;
        ensure_file(disk.as_ref(), dir, name)?;
        let file = disk.open(&path, false).map_err(|e| Error::io(&path, e))?;
        Self::open_file(file, path, None)
    }

    /// Opens the existing state file at `path` for reading only: nothing is
    /// created or written, and [`Db::begin_write`] answers
    /// [`Error::Poisoned`]. Beside a running node (`rdb inspect`) it sees
    /// the newest durable commit as of opening; the node may reuse that
    /// commit's freed pages soon after, so a long read can meet a page that
    /// fails its checksum: open again (compare [`Db::durable_txid`]).
    pub fn open_read_only(disk: Arc<dyn Disk>, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = disk.open_read(&path).map_err(|e| Error::io(&path, e))?;
        Self::open_file(file, path, Some("the state file was opened read-only".into()))
    }

    fn open_file(
        file: Box<dyn DiskFile>,
        path: PathBuf,
        read_only: Option<String>,
    ) -> Result<Self> {
        let len = file.len().map_err(|e| Error::io(&path, e))?;
        let (meta, durable_slot) = read_metas(file.as_ref(), &path, len)?;
        if meta.page_count.checked_mul(PAGE_BYTES as u64).is_none_or(|needed| len < needed) {
            let reason = format!(
                "file has {len} bytes but its meta (txid {}) uses {} pages",
                meta.txid, meta.page_count
            );
            return Err(Error::corrupt(&path, len, reason));
        }
        let map = Arc::new(file.map(len).map_err(|e| Error::io(&path, e))?);
        let reader = PageReader { map: &map, page_count: meta.page_count, path: &path };
        let free_ids = read_free_list(&reader, meta.freelist)?;
        check_catalog_root(&reader, meta.catalog)?;
        let writer = WriterState {
            free: FreePages::new(free_ids, meta.page_count),
            file_pages: len / PAGE_BYTES as u64,
            poisoned: read_only,
            unhinted: Unhinted::default(),
        };
        let published = Published { snapshot: Snapshot { meta, map }, readers: BTreeMap::new() };
        let shared = Shared {
            path,
            file,
            published: Mutex::new(published),
            writer: Mutex::new(writer),
            durable: Mutex::new(Durable { meta, slot: durable_slot }),
            durable_txid: AtomicU64::new(meta.txid),
            space: Mutex::new(Space::default()),
        };
        shared.publish_space(&lock(&shared.writer));
        Ok(Db { shared: Arc::new(shared) })
    }

    /// A read transaction on the newest commit.
    pub fn begin_read(&self) -> ReadTxn {
        let mut published = lock(&self.shared.published);
        let snapshot = published.snapshot.clone();
        *published.readers.entry(snapshot.meta.txid).or_default() += 1;
        ReadTxn::new(Arc::clone(&self.shared), snapshot)
    }

    /// The write transaction; waits while another one is open.
    pub fn begin_write(&self) -> Result<WriteTxn<'_>> {
        let mut writer = lock(&self.shared.writer);
        if let Some(reason) = &writer.poisoned {
            return Err(Error::Poisoned(reason.clone()));
        }
        let (snapshot, oldest_reader) = {
            let published = lock(&self.shared.published);
            let snapshot = published.snapshot.clone();
            let oldest = published.readers.keys().next().copied().unwrap_or(snapshot.meta.txid);
            (snapshot, oldest)
        };
        let releasable = oldest_reader.min(self.shared.durable_txid.load(Ordering::Acquire));
        writer.free.release_up_to(releasable);
        Ok(WriteTxn::new(&self.shared, writer, snapshot))
    }

    /// Makes every deferred commit durable (FORMAT.md, "Commit protocol"):
    /// [`Db::begin_sync`] then [`PendingSync::finish`]. A second `sync`
    /// meanwhile waits for the first. Returns the user metadata now
    /// durable. An error poisons the writer.
    pub fn sync(&self) -> Result<[u8; USER_META_BYTES]> {
        self.begin_sync()?.finish()
    }

    /// The first half of [`Db::sync`], under the writer: deferred commits
    /// write no free list, so a commit with no changes writes one and
    /// publishes. The second half, [`PendingSync::finish`], needs no
    /// writer: deferred commits may go on meanwhile (on any thread), and
    /// stay deferred. Waits while another sync is pending.
    pub fn begin_sync(&self) -> Result<PendingSync<'_>> {
        let txn = self.begin_write()?;
        let durable = lock(&self.shared.durable);
        let meta = if txn.base_meta().txid == durable.meta.txid {
            None
        } else {
            Some(txn.commit_free_list(&durable)?)
        };
        Ok(PendingSync { shared: &self.shared, durable, meta })
    }

    /// The txid of the newest durable commit.
    pub fn durable_txid(&self) -> u64 {
        self.shared.durable_txid.load(Ordering::Acquire)
    }

    /// How much of the file holds data, as of the newest commit (never
    /// waits for a write transaction).
    pub fn space(&self) -> Space {
        *lock(&self.shared.space)
    }

    /// The txid of the newest durable commit as the file says now, read
    /// again from its meta pages. For a read-only view beside a writer in
    /// another process: if it still equals [`Db::durable_txid`] after a
    /// read, the writer made nothing durable meanwhile, so it reused none of
    /// the pages the read saw (a freed page is reused only after a later
    /// durable commit; FORMAT.md, "Free-page reuse").
    pub fn durable_txid_on_disk(&self) -> Result<u64> {
        let file = self.shared.file.as_ref();
        let len = file.len().map_err(|e| Error::io(&self.shared.path, e))?;
        Ok(read_metas(file, &self.shared.path, len)?.0.txid)
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

/// A sync whose free list is written and whose meta is not yet durable
/// ([`Db::begin_sync`]). Dropping it without [`PendingSync::finish`] leaves
/// the deferred commits deferred (a later sync makes them durable), and
/// the pages of the free list it wrote unused until the file is reopened
/// (the next durable meta frees the durable one's list, not this one's).
#[derive(Debug)]
pub struct PendingSync<'db> {
    /// The database.
    shared: &'db Shared,
    /// The newest durable meta, held until this one is written.
    durable: MutexGuard<'db, Durable>,
    /// The meta to make durable; `None` when nothing was deferred.
    meta: Option<Meta>,
}

impl PendingSync<'_> {
    /// Syncs the data, writes the meta and syncs it (FORMAT.md, "Commit
    /// protocol", steps 2 and 3); returns the user metadata now durable.
    /// An error poisons the writer.
    pub fn finish(mut self) -> Result<[u8; USER_META_BYTES]> {
        let Some(meta) = self.meta else { return Ok(self.durable.meta.user) };
        let written = self.shared.write_durable_meta(&mut self.durable, meta);
        drop(self.durable);
        if let Err(error) = &written {
            lock(&self.shared.writer).poisoned.get_or_insert_with(|| error.to_string());
        }
        written.map(|()| meta.user)
    }
}

fn split_path(path: &Path) -> Result<(&Path, &str)> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let name = path.file_name().and_then(|n| n.to_str());
    match (dir, name) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(Error::InvalidArgument(format!(
            "{} is not a file path with a directory",
            path.display()
        ))),
    }
}

/// Creates a new state file if there is none, and removes a stale `.tmp`.
fn ensure_file(disk: &dyn Disk, dir: &Path, name: &str) -> Result<()> {
    disk.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let names = disk.list(dir).map_err(|e| Error::io(dir, e))?;
    let temp = format!("{name}{TEMP_SUFFIX}");
    if names.contains(&temp) {
        remove_durably(disk, dir, &dir.join(&temp))?;
    }
    if !names.iter().any(|n| n == name) {
        let mut content = Meta::empty().encode();
        content.resize(2 * PAGE_BYTES, 0);
        create_file_atomically(disk, dir, name, &content)?;
    }
    Ok(())
}

/// The newest valid meta and its slot.
fn read_metas(file: &dyn DiskFile, path: &Path, len: u64) -> Result<(Meta, u64)> {
    if len < 2 * PAGE_BYTES as u64 {
        return Err(Error::corrupt(path, len, "file is shorter than its two meta pages"));
    }
    let mut candidates = Vec::new();
    let mut reasons = Vec::new();
    for slot in 0..2u64 {
        let mut page = vec![0u8; PAGE_BYTES];
        file.read_exact_at(&mut page, slot * PAGE_BYTES as u64).map_err(|e| Error::io(path, e))?;
        match Meta::decode(&page) {
            Ok(meta) => candidates.push((meta, slot)),
            Err(reason) => reasons.push(format!("meta page {slot}: {reason}")),
        }
    }
    candidates.into_iter().max_by_key(|(meta, _)| meta.txid).ok_or_else(|| {
        Error::corrupt(path, 0, format!("no valid meta page ({})", reasons.join("; ")))
    })
}

/// The page ids of a committed free list, checked.
fn read_free_list(reader: &PageReader<'_>, id: PageId) -> Result<Vec<u64>> {
    if id == PageId::NONE {
        return Ok(Vec::new());
    }
    let (header, run) = reader.run(id, RunKind::FreeList)?;
    if !checksum_ok(run) || header.length % 8 != 0 {
        return Err(reader.corrupt(id, "free list fails its checksum or length"));
    }
    let ids: Vec<u64> =
        (0..header.length as usize / 8).map(|i| u64_at(run, RUN_HEADER_BYTES + 8 * i)).collect();
    let ordered = ids.windows(2).all(|w| w[0] < w[1]);
    let inside = ids.iter().all(|p| *p >= PageId::FIRST_RUN.0 && *p < reader.page_count);
    if !ordered || !inside {
        return Err(reader.corrupt(id, "free list ids out of order or outside the file"));
    }
    Ok(ids)
}

fn check_catalog_root(reader: &PageReader<'_>, id: PageId) -> Result<()> {
    if id == PageId::NONE {
        return Ok(());
    }
    let view = reader.node(id)?;
    if !checksum_ok(view.run_bytes()) {
        return Err(reader.corrupt(id, "catalog root fails its checksum"));
    }
    Ok(())
}
