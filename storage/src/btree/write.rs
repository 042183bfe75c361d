//! [`WriteTxn`]: the one writer: changes trees in memory, then commits them
//! with FORMAT.md's commit protocol.

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard};

use super::alloc::FreePages;
use super::catalog::{committed_tree_names, decode_root, encode_root};
use super::cursor::KeyRange;
use super::flush::{RunWriter, Unhinted};
use super::meta::{Meta, USER_META_BYTES};
use super::node::{NodeRef, Value};
use super::page::{
    pages_for, seal_run, write_header, PageId, PageReader, PageRun, RunHeader, RunKind, PAGE_BYTES,
    RUN_HEADER_BYTES,
};
use super::shared::{lock, Durable, Shared, Snapshot, WriterState};
use super::tree::{self, TreeCtx};
use crate::{Error, Result};

/// The longest key accepted.
pub const KEY_BYTES_MAX: usize = 4096;
/// The longest value accepted: 1 MiB and 64 bytes, so that a caller may
/// store a 1 MiB value behind a small header of its own.
pub const VALUE_BYTES_MAX: usize = (1 << 20) + 64;
/// The longest tree name accepted.
pub const TREE_NAME_BYTES_MAX: usize = 255;

/// Whether a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced data and meta before `commit` returns.
    Durable,
    /// Written but not synced; visible to readers at once, durable after the
    /// next durable commit or [`Db::sync`]. Dropping the [`Db`] does not
    /// sync: whoever defers commits decides when they must be durable.
    Deferred,
}

/// A tree the transaction has touched.
#[derive(Debug)]
enum TreeSlot {
    /// The tree exists; `dirty` if it was created or changed.
    Live {
        /// The root, or `None` when empty.
        root: Option<NodeRef>,
        /// Whether the catalog must be updated at commit.
        dirty: bool,
    },
    /// Dropped in this transaction.
    Dropped,
}

/// What a transaction has changed so far, kept apart from the snapshot it
/// reads, so that an operation can borrow both at once.
#[derive(Debug, Default)]
struct Changes {
    /// Trees touched so far, by name.
    trees: BTreeMap<String, TreeSlot>,
    /// Committed runs this transaction stopped using.
    freed: Vec<PageRun>,
}

impl Changes {
    /// Loads tree `name` from the catalog into `trees` if not there yet;
    /// `None` if it does not exist (or was dropped).
    fn slot(
        &mut self,
        name: &str,
        reader: &PageReader<'_>,
        catalog: PageId,
    ) -> Result<Option<&mut TreeSlot>> {
        if !self.trees.contains_key(name) {
            let found = match catalog {
                PageId::NONE => None,
                root => tree::get_committed(root, name.as_bytes(), reader)?,
            };
            let Some(bytes) = found else { return Ok(None) };
            let root = decode_root(bytes)
                .ok_or_else(|| reader.corrupt(catalog, "catalog value is not a page id"))?;
            let root = (root != PageId::NONE).then_some(NodeRef::Clean(root));
            self.trees.insert(name.to_owned(), TreeSlot::Live { root, dirty: false });
        }
        Ok(self.trees.get_mut(name).filter(|slot| matches!(slot, TreeSlot::Live { .. })))
    }

    /// The root of existing tree `name`, marked dirty, with the context to
    /// change it.
    fn change<'c, 'r, 'a>(
        &'c mut self,
        name: &str,
        reader: &'r PageReader<'a>,
        catalog: PageId,
    ) -> Result<(&'c mut Option<NodeRef>, TreeCtx<'r, 'a>)>
    where
        'c: 'r,
    {
        if self.slot(name, reader, catalog)?.is_none() {
            return Err(Error::InvalidArgument(format!("no tree named {name:?}")));
        }
        let Changes { trees, freed } = self;
        let Some(TreeSlot::Live { root, dirty }) = trees.get_mut(name) else {
            unreachable!("checked above")
        };
        *dirty = true;
        Ok((root, TreeCtx { reader, freed }))
    }
}

/// The write transaction. Dropping it without `commit` aborts it.
#[derive(Debug)]
pub struct WriteTxn<'db> {
    /// The database.
    shared: &'db Arc<Shared>,
    /// Held for the transaction's life: one writer at a time.
    writer: MutexGuard<'db, WriterState>,
    /// The commit this transaction builds on.
    base: Snapshot,
    /// This transaction's id.
    txid: u64,
    /// The free space while committing: taken out of the writer's state at
    /// the start of `commit` and put back at its end. Nothing before
    /// `commit` allocates (pages are assigned as nodes are spilled), so an
    /// aborted transaction leaves the free space as it found it without
    /// copying it (a copy per transaction cost a few percent of a busy
    /// node's apply thread: thousands of free and pending pages).
    free: FreePages,
    /// Trees touched and runs freed so far.
    changes: Changes,
}

impl<'db> WriteTxn<'db> {
    pub(crate) fn new(
        shared: &'db Arc<Shared>,
        writer: MutexGuard<'db, WriterState>,
        base: Snapshot,
    ) -> Self {
        let txid = base.meta.txid + 1;
        WriteTxn {
            shared,
            writer,
            base,
            txid,
            free: FreePages::default(),
            changes: Changes::default(),
        }
    }

    /// The meta of the commit this transaction started from.
    pub(crate) fn base_meta(&self) -> Meta {
        self.base.meta
    }

    /// Creates an empty tree; false if it already exists.
    pub fn create_tree(&mut self, name: &str) -> Result<bool> {
        check_name(name)?;
        if self.tree_exists(name)? {
            return Ok(false);
        }
        self.changes.trees.insert(name.to_owned(), TreeSlot::Live { root: None, dirty: true });
        Ok(true)
    }

    /// Drops a tree and frees all its pages; false if there is none.
    pub fn drop_tree(&mut self, name: &str) -> Result<bool> {
        let reader = reader(&self.base, &self.shared.path);
        let Some(TreeSlot::Live { root, .. }) =
            self.changes.slot(name, &reader, self.base.meta.catalog)?
        else {
            return Ok(false);
        };
        if let Some(root) = root.take() {
            tree::free_all(
                &root,
                &mut TreeCtx { reader: &reader, freed: &mut self.changes.freed },
            )?;
        }
        self.changes.trees.insert(name.to_owned(), TreeSlot::Dropped);
        Ok(true)
    }

    /// Whether a tree exists.
    pub fn tree_exists(&mut self, name: &str) -> Result<bool> {
        let reader = reader(&self.base, &self.shared.path);
        Ok(self.changes.slot(name, &reader, self.base.meta.catalog)?.is_some())
    }

    /// Names of all trees, sorted.
    pub fn list_trees(&self) -> Result<Vec<String>> {
        let trees = &self.changes.trees;
        let committed =
            committed_tree_names(&reader(&self.base, &self.shared.path), self.base.meta.catalog)?;
        let mut names: Vec<String> = committed
            .into_iter()
            .filter(|name| !matches!(trees.get(name), Some(TreeSlot::Dropped)))
            .collect();
        names.extend(
            trees
                .iter()
                .filter(|(_, s)| matches!(s, TreeSlot::Live { .. }))
                .map(|(n, _)| n.clone()),
        );
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    /// Sets `key` to `value` in tree `name`, which must exist.
    pub fn put(&mut self, name: &str, key: &[u8], value: &[u8]) -> Result<()> {
        check_size("key", key.len(), KEY_BYTES_MAX)?;
        check_size("value", value.len(), VALUE_BYTES_MAX)?;
        let reader = reader(&self.base, &self.shared.path);
        let (root, mut ctx) = self.changes.change(name, &reader, self.base.meta.catalog)?;
        let old = tree::insert(root, key.to_vec(), Value::Bytes(value.to_vec().into()), &mut ctx)?;
        if let Some(old) = old {
            let run = tree::overflow_run(&old, &reader)?;
            ctx.freed.extend(run);
        }
        Ok(())
    }

    /// The value of `key` in tree `name`, as this transaction sees it.
    pub fn get(&mut self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let reader = reader(&self.base, &self.shared.path);
        match self.changes.slot(name, &reader, self.base.meta.catalog)? {
            Some(TreeSlot::Live { root, .. }) => tree::get(root.as_ref(), key, &reader),
            _ => Ok(None),
        }
    }

    /// The keys of tree `name` within `range` (start, end and prefix; not
    /// reversed), in order, at most `limit`, as this transaction sees them.
    pub fn keys(&mut self, name: &str, range: &KeyRange, limit: usize) -> Result<Vec<Vec<u8>>> {
        let reader = reader(&self.base, &self.shared.path);
        let mut out = Vec::new();
        if let Some(TreeSlot::Live { root: Some(root), .. }) =
            self.changes.slot(name, &reader, self.base.meta.catalog)?
        {
            super::scan::keys_in(root, range, limit, &reader, &mut out)?;
        }
        Ok(out)
    }

    /// Removes `key` from tree `name`; returns its value if it was there.
    pub fn delete(&mut self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.tree_exists(name)? {
            return Ok(None);
        }
        let reader = reader(&self.base, &self.shared.path);
        let (root, mut ctx) = self.changes.change(name, &reader, self.base.meta.catalog)?;
        let Some(old) = tree::remove(root, key, &mut ctx)? else { return Ok(None) };
        let bytes = tree::value_bytes(&old, &reader)?;
        let run = tree::overflow_run(&old, &reader)?;
        ctx.freed.extend(run);
        Ok(Some(bytes))
    }

    /// Commits everything with `user` metadata (FORMAT.md, "Commit
    /// protocol"). Any error poisons the writer: the database must be
    /// reopened, and recovery keeps the newest durable commit.
    pub fn commit(mut self, user: [u8; USER_META_BYTES], durability: Durability) -> Result<()> {
        self.free = std::mem::take(&mut self.writer.free);
        let result = match durability {
            Durability::Deferred => {
                self.write_runs(user, None).and_then(|(meta, grown)| self.publish(meta, grown))
            }
            Durability::Durable => {
                let shared = Arc::clone(self.shared);
                let mut durable = lock(&shared.durable);
                self.write_runs(user, Some(durable.meta.freelist)).and_then(|(meta, grown)| {
                    shared.write_durable_meta(&mut durable, meta)?;
                    self.writer.unhinted = Unhinted::default(); // the sync wrote them all
                    self.publish(meta, grown)
                })
            }
        };
        self.poison_on_error(result)
    }

    /// The first half of [`Db::sync`](super::Db::sync): commits no change
    /// but a new free list, publishes, and returns the meta for the caller
    /// to make durable once the writer is let go. `durable` is the newest
    /// durable meta, whose lock the caller holds until it has written the
    /// returned one.
    pub(crate) fn commit_free_list(mut self, durable: &Durable) -> Result<Meta> {
        self.free = std::mem::take(&mut self.writer.free);
        let user = self.base.meta.user;
        let result =
            self.write_runs(user, Some(durable.meta.freelist)).and_then(|(meta, grown)| {
                self.writer.unhinted = Unhinted::default(); // the caller's sync writes them
                self.publish(meta, grown).map(|()| meta)
            });
        self.poison_on_error(result)
    }

    fn poison_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result {
            // The free space went with the failed commit (it may have
            // handed out pages): nothing may be written until a reopen
            // reads it back from the file.
            self.writer.poisoned.get_or_insert_with(|| error.to_string());
        }
        result
    }

    /// Writes the changed trees, the catalog and, when `durable_freelist`
    /// is given (the free list of the newest durable meta, freed by this
    /// one), a free list; returns the meta and whether the file grew.
    fn write_runs(
        &mut self,
        user: [u8; USER_META_BYTES],
        durable_freelist: Option<PageId>,
    ) -> Result<(Meta, bool)> {
        let shared = Arc::clone(self.shared);
        let unhinted = std::mem::take(&mut self.writer.unhinted);
        let mut out =
            RunWriter::new(shared.file.as_ref(), &shared.path, self.writer.file_pages, unhinted);
        let catalog = self.spill_trees(&mut out)?;
        // Only a durable commit writes the free list: the list is as long as
        // the free space (thousands of ids under load), and a deferred
        // commit's meta never reaches the disk (FORMAT.md, "Commit
        // protocol"). Its freed runs wait in memory as before.
        let freelist = match durable_freelist {
            Some(old) => self.spill_free_list(old, &mut out)?,
            None => {
                self.free.free_later(self.txid, std::mem::take(&mut self.changes.freed));
                PageId::NONE
            }
        };
        let meta =
            Meta { txid: self.txid, catalog, freelist, page_count: self.free.page_count(), user };
        // A commit that freed more than it wrote still must cover its pages.
        out.ensure_pages(meta.page_count)?;
        let (file_pages, grown, unhinted) = out.finish();
        self.writer.file_pages = file_pages;
        self.writer.unhinted = unhinted;
        Ok((meta, grown))
    }

    /// Writes every changed tree and the catalog; returns the catalog root.
    fn spill_trees(&mut self, out: &mut RunWriter<'_>) -> Result<PageId> {
        let reader = reader(&self.base, &self.shared.path);
        let mut catalog = (self.base.meta.catalog != PageId::NONE)
            .then_some(NodeRef::Clean(self.base.meta.catalog));
        let mut ctx = TreeCtx { reader: &reader, freed: &mut self.changes.freed };
        for (name, slot) in std::mem::take(&mut self.changes.trees) {
            match slot {
                TreeSlot::Dropped => {
                    tree::remove(&mut catalog, name.as_bytes(), &mut ctx)?;
                }
                TreeSlot::Live { root, dirty: true } => {
                    let id = match root {
                        Some(mut root) => tree::spill(&mut root, &mut self.free, out)?,
                        None => PageId::NONE,
                    };
                    let value = Value::Bytes(encode_root(id).into());
                    tree::insert(&mut catalog, name.into_bytes(), value, &mut ctx)?;
                }
                TreeSlot::Live { dirty: false, .. } => {}
            }
        }
        match catalog {
            Some(mut root) => tree::spill(&mut root, &mut self.free, out),
            None => Ok(PageId::NONE),
        }
    }

    /// Frees `old`, the durable meta's free list (deferred commits write
    /// none, and a meta with one is durable before the next is written, so
    /// it is the last one written), with everything else this transaction
    /// freed, then writes the new free list; returns its first page.
    fn spill_free_list(&mut self, old: PageId, out: &mut RunWriter<'_>) -> Result<PageId> {
        if old != PageId::NONE {
            let reader = reader(&self.base, &self.shared.path);
            let (header, _) = reader.run(old, RunKind::FreeList)?;
            self.changes.freed.push(PageRun { id: old, pages: header.pages });
        }
        self.free.free_later(self.txid, std::mem::take(&mut self.changes.freed));
        // The list's own run may come out of the free pages it lists: size it
        // for all of them, then leave its own pages out.
        let mut ids = self.free.persisted_ids();
        let run = self.free.allocate(pages_for(RUN_HEADER_BYTES + 8 * ids.len()));
        let own = run.id.get()..run.id.get() + u64::from(run.pages);
        ids.retain(|id| !own.contains(id));
        let mut bytes = vec![0u8; run.pages as usize * PAGE_BYTES];
        let length = u32::try_from(8 * ids.len())
            .map_err(|_| Error::InvalidArgument("free list too long".into()))?;
        write_header(
            &mut bytes,
            RunHeader {
                kind: RunKind::FreeList,
                count: 0,
                pages: run.pages,
                length,
                page_id: run.id,
            },
        );
        for (i, id) in ids.iter().enumerate() {
            let at = RUN_HEADER_BYTES + 8 * i;
            bytes[at..at + 8].copy_from_slice(&id.to_le_bytes());
        }
        seal_run(&mut bytes);
        out.write(run, bytes)?;
        Ok(run.id)
    }

    /// Makes the commit visible to new readers and the next writer.
    fn publish(&mut self, meta: Meta, grown: bool) -> Result<()> {
        let shared = &self.shared;
        let map = if grown || !self.base.map.sees_later_writes() {
            let len = self.writer.file_pages * PAGE_BYTES as u64;
            Arc::new(shared.file.map(len).map_err(|e| Error::io(&shared.path, e))?)
        } else {
            Arc::clone(&self.base.map)
        };
        self.writer.free = std::mem::take(&mut self.free);
        shared.publish_space(&self.writer);
        lock(&shared.published).snapshot = Snapshot { meta, map };
        Ok(())
    }
}

/// Checked access to the pages of `snapshot`.
fn reader<'a>(snapshot: &'a Snapshot, path: &'a std::path::Path) -> PageReader<'a> {
    PageReader { map: &snapshot.map, page_count: snapshot.meta.page_count, path }
}

fn check_size(what: &'static str, bytes: usize, max: usize) -> Result<()> {
    if bytes > max {
        return Err(Error::TooLarge { what, bytes, max });
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    check_size("tree name", name.len(), TREE_NAME_BYTES_MAX)?;
    if name.is_empty() {
        return Err(Error::InvalidArgument("a tree name cannot be empty".into()));
    }
    Ok(())
}
