//! [`ReadTxn`]: a consistent snapshot, readable from any thread while the
//! writer commits.

use std::sync::Arc;

use super::catalog::{committed_tree_names, decode_root};
use super::cursor::{KeyRange, Range};
use super::meta::USER_META_BYTES;
use super::page::{PageId, PageReader};
use super::shared::{lock, Shared, Snapshot};
use super::tree::get_committed;
use crate::Result;

/// A read transaction: sees the commit that was newest when it began, for as
/// long as it lives. Pages it can reach are not reused until it is dropped.
#[derive(Debug)]
pub struct ReadTxn {
    /// The database, to deregister on drop.
    shared: Arc<Shared>,
    /// What this transaction sees.
    snapshot: Snapshot,
}

impl ReadTxn {
    pub(crate) fn new(shared: Arc<Shared>, snapshot: Snapshot) -> Self {
        ReadTxn { shared, snapshot }
    }

    /// The transaction id of the snapshot.
    pub fn txid(&self) -> u64 {
        self.snapshot.meta.txid
    }

    /// The user metadata committed with the snapshot.
    pub fn user_meta(&self) -> [u8; USER_META_BYTES] {
        self.snapshot.meta.user
    }

    /// Pages the snapshot uses (its high-water mark).
    pub fn page_count(&self) -> u64 {
        self.snapshot.meta.page_count
    }

    /// Tree `name`, looked up once for many reads; `None` if missing.
    pub fn open_tree(&self, name: &str) -> Result<Option<TreeReader<'_>>> {
        Ok(self.root(name)?.map(|root| TreeReader { reader: self.reader(), root }))
    }

    /// The value of `key` in tree `name`; `None` if either is missing.
    pub fn get(&self, name: &str, key: &[u8]) -> Result<Option<&[u8]>> {
        match self.open_tree(name)? {
            Some(tree) => tree.get(key),
            None => Ok(None),
        }
    }

    /// Whether tree `name` exists.
    pub fn tree_exists(&self, name: &str) -> Result<bool> {
        Ok(self.root(name)?.is_some())
    }

    /// Names of all trees, sorted.
    pub fn list_trees(&self) -> Result<Vec<String>> {
        committed_tree_names(&self.reader(), self.snapshot.meta.catalog)
    }

    /// The entries of tree `name` within `range`, in key order (or reverse).
    /// A missing tree yields nothing.
    pub fn range(&self, name: &str, range: &KeyRange) -> Result<Range<'_>> {
        let root = self.root(name)?.unwrap_or(PageId::NONE);
        Range::new(self.reader(), root, range)
    }

    /// Checked access to the snapshot's pages.
    pub(crate) fn reader(&self) -> PageReader<'_> {
        PageReader {
            map: &self.snapshot.map,
            page_count: self.snapshot.meta.page_count,
            path: &self.shared.path,
        }
    }

    /// The snapshot's catalog root.
    pub(crate) fn catalog(&self) -> PageId {
        self.snapshot.meta.catalog
    }

    /// The snapshot's free-list run (none for a deferred commit's).
    pub(crate) fn freelist(&self) -> PageId {
        self.snapshot.meta.freelist
    }

    /// The root of tree `name`: `None` if it does not exist, `NONE` if empty.
    pub(crate) fn root(&self, name: &str) -> Result<Option<PageId>> {
        let catalog = self.snapshot.meta.catalog;
        if catalog == PageId::NONE {
            return Ok(None);
        }
        let reader = self.reader();
        let Some(bytes) = get_committed(catalog, name.as_bytes(), &reader)? else {
            return Ok(None);
        };
        decode_root(bytes)
            .map(Some)
            .ok_or_else(|| reader.corrupt(catalog, "catalog value is not a page id"))
    }
}

/// One tree of a [`ReadTxn`], found once so that many reads skip the
/// catalog.
#[derive(Debug, Clone, Copy)]
pub struct TreeReader<'t> {
    /// Reads the snapshot.
    reader: PageReader<'t>,
    /// The tree's root; NONE when empty.
    root: PageId,
}

impl<'t> TreeReader<'t> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<&'t [u8]>> {
        if self.root == PageId::NONE {
            return Ok(None);
        }
        get_committed(self.root, key, &self.reader)
    }

    /// The entries within `range`, in key order (or reverse).
    pub fn range(&self, range: &KeyRange) -> Result<Range<'t>> {
        Range::new(self.reader, self.root, range)
    }
}

impl Drop for ReadTxn {
    fn drop(&mut self) {
        let mut published = lock(&self.shared.published);
        let txid = self.snapshot.meta.txid;
        if let Some(count) = published.readers.get_mut(&txid) {
            *count -= 1;
            if *count == 0 {
                published.readers.remove(&txid);
            }
        }
    }
}

// Readers run on other threads than the writer.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ReadTxn>();
};
