//! `ReadTxn::export`: a compact copy of a snapshot as a new state file
//! (FORMAT.md, "Compact copy"). Two passes over the snapshot: the first
//! numbers the runs, the second writes them, so the meta page (which must
//! come first and names the catalog root and page count) can be written
//! before the runs into a plain stream.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use super::catalog::decode_root;
use super::meta::Meta;
use super::node::{encode_overflow, overflow_pages, Node, NodeRef, Value};
use super::page::{checksum_ok, pages_for, PageId, PageReader, PAGE_BYTES};
use super::read::ReadTxn;
use super::tree::DEPTH_MAX;
use crate::{Error, Result};

/// Numbers (and in the second pass writes) the runs of a copy.
struct Copier<'r, 'a> {
    /// Reads the snapshot.
    reader: PageReader<'a>,
    /// The next page id of the copy.
    next: u64,
    /// Where to write; `None` in the numbering pass.
    out: Option<&'r mut dyn Write>,
    /// Runs copied so far: a run reached twice is damage (a shared subtree
    /// would otherwise be copied again and again).
    visited: HashSet<PageId>,
}

impl ReadTxn {
    /// Writes a compact copy of this snapshot, a complete state file, to
    /// `out`; returns the bytes written. Every run's checksum is verified on
    /// the way.
    pub fn export(&self, out: &mut dyn Write) -> Result<u64> {
        let reader = self.reader();
        let mut numbering =
            Copier { reader, next: PageId::FIRST_RUN.0, out: None, visited: HashSet::new() };
        let catalog = numbering.tree(self.catalog(), true)?;
        let meta = Meta {
            txid: self.txid(),
            catalog,
            freelist: PageId::NONE,
            page_count: numbering.next,
            user: self.user_meta(),
        };
        let mut head = meta.encode();
        head.resize(2 * PAGE_BYTES, 0);
        out.write_all(&head).map_err(export_error)?;
        let mut writing =
            Copier { reader, next: PageId::FIRST_RUN.0, out: Some(out), visited: HashSet::new() };
        let written_catalog = writing.tree(self.catalog(), true)?;
        assert_eq!(
            (written_catalog, writing.next),
            (catalog, meta.page_count),
            "both passes number alike"
        );
        Ok(meta.page_count * PAGE_BYTES as u64)
    }
}

fn export_error(error: std::io::Error) -> Error {
    Error::io(PathBuf::from("<export output>"), error)
}

impl Copier<'_, '_> {
    /// Copies the tree at `root` (NONE: empty); returns its new root.
    fn tree(&mut self, root: PageId, is_catalog: bool) -> Result<PageId> {
        if root == PageId::NONE {
            return Ok(PageId::NONE);
        }
        self.node(root, is_catalog, 0)
    }

    /// Copies a node after its children and overflow values (post order).
    fn node(&mut self, id: PageId, is_catalog: bool, depth: usize) -> Result<PageId> {
        self.visit(id)?;
        let view = self.reader.node(id)?;
        if depth >= DEPTH_MAX || !checksum_ok(view.run_bytes()) {
            return Err(self.reader.corrupt(id, "node fails its checksum or lies too deep"));
        }
        let mut node = Node::decode(&view)?;
        match &mut node {
            Node::Branch(entries) => {
                for entry in entries.iter_mut() {
                    let NodeRef::Clean(child) = entry.child else {
                        unreachable!("decoded nodes are clean")
                    };
                    entry.child = NodeRef::Clean(self.node(child, is_catalog, depth + 1)?);
                }
            }
            Node::Leaf(entries) => {
                for entry in entries.iter_mut() {
                    entry.value = self.value(&entry.value, is_catalog, id)?;
                }
            }
        }
        let used = node.encoded_bytes();
        let new_id = self.take(pages_for(used));
        if let Some(out) = self.out.as_mut() {
            out.write_all(&node.encode(new_id, used).1).map_err(export_error)?;
        }
        Ok(new_id)
    }

    /// Copies what a leaf value points at: an overflow run, or for the
    /// catalog a whole tree; returns the value for the copied leaf.
    fn value(&mut self, value: &Value, is_catalog: bool, leaf: PageId) -> Result<Value> {
        match value {
            Value::Bytes(bytes) if is_catalog => {
                let root = decode_root(bytes)
                    .ok_or_else(|| self.reader.corrupt(leaf, "catalog value is not a page id"))?;
                Ok(Value::Bytes(self.tree(root, false)?.get().to_le_bytes().to_vec().into()))
            }
            Value::Bytes(bytes) => Ok(Value::Bytes(bytes.clone())),
            Value::Overflow { page, len } => {
                self.visit(*page)?;
                let (_, run) = self.reader.run(*page, super::page::RunKind::Overflow)?;
                if !checksum_ok(run) {
                    return Err(self.reader.corrupt(*page, "overflow value fails its checksum"));
                }
                let bytes = self.reader.overflow(*page, *len)?;
                let new_id = self.take(overflow_pages(bytes.len()));
                if let Some(out) = self.out.as_mut() {
                    out.write_all(&encode_overflow(new_id, bytes).1).map_err(export_error)?;
                }
                Ok(Value::Overflow { page: new_id, len: *len })
            }
        }
    }

    /// Records that the run at `id` is being copied; a second visit is damage.
    fn visit(&mut self, id: PageId) -> Result<()> {
        if !self.visited.insert(id) {
            return Err(self.reader.corrupt(id, "a run is reachable twice"));
        }
        Ok(())
    }

    /// The next `pages` page ids of the copy.
    fn take(&mut self, pages: u32) -> PageId {
        let id = PageId(self.next);
        self.next += u64::from(pages);
        id
    }
}
