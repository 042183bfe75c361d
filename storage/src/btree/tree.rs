//! The writer's tree operations on a mix of committed and changed nodes:
//! lookup, insert with splits, remove with merges, drop, and spilling the
//! changed nodes into new runs at commit.
//!
//! A change makes every node on its path dirty (copy-on-write: the committed
//! run is freed for reuse once no snapshot needs it). After each change the
//! parent checks the child it descended into: an empty child is removed, one
//! above a page shares its entries with a sibling (or is split with it into
//! three), and one under a quarter page (or a branch with a
//! single entry) is merged into a sibling and split again if that made it too
//! large. Sizes therefore stay bounded within a transaction, not only at
//! commit.

use std::collections::HashSet;

use super::alloc::FreePages;
use super::flush::RunWriter;
use super::node::{encode_overflow, BranchEntry, Bytes, LeafEntry, Node, NodeRef, Value};
use super::page::{PageId, PageReader, PageRun, RunKind, PAGE_BYTES, RUN_HEADER_BYTES};
use super::view::VALUE_INLINE_BYTES_MAX;
use crate::Result;

/// A tree deeper than this is damaged: 64 levels of even two-way branches
/// hold more entries than any file can.
pub(crate) const DEPTH_MAX: usize = 64;
/// A node smaller than this is merged into a sibling.
const MERGE_BYTES_MIN: usize = PAGE_BYTES / 4;

/// What tree operations need besides the tree.
pub(crate) struct TreeCtx<'r, 'a> {
    /// Reads committed nodes.
    pub(crate) reader: &'r PageReader<'a>,
    /// Runs this transaction stopped using.
    pub(crate) freed: &'r mut Vec<PageRun>,
}

/// The value stored under `key`, if any.
pub(crate) fn get(
    root: Option<&NodeRef>,
    key: &[u8],
    reader: &PageReader<'_>,
) -> Result<Option<Vec<u8>>> {
    let Some(mut current) = root else { return Ok(None) };
    for _ in 0..DEPTH_MAX {
        let node = match current {
            NodeRef::Clean(id) => return Ok(get_committed(*id, key, reader)?.map(<[u8]>::to_vec)),
            NodeRef::Dirty(node) => node,
        };
        match &**node {
            Node::Leaf(entries) => {
                return match entries.binary_search_by(|e| (*e.key).cmp(key)) {
                    Ok(i) => value_bytes(&entries[i].value, reader).map(Some),
                    Err(_) => Ok(None),
                };
            }
            Node::Branch(entries) => current = &entries[route(entries, key)].child,
        }
    }
    Err(reader.corrupt(PageId::NONE, "tree deeper than the limit"))
}

/// The value under `key` in a committed tree, borrowed from the mapping.
pub(crate) fn get_committed<'a>(
    root: PageId,
    key: &[u8],
    reader: &PageReader<'a>,
) -> Result<Option<&'a [u8]>> {
    let mut node = reader.node(root)?;
    for _ in 0..DEPTH_MAX {
        if node.is_leaf() {
            return match node.search(key)? {
                Ok(i) => reader.value(node.value(i)?).map(Some),
                Err(_) => Ok(None),
            };
        }
        node = reader.node(node.child(node.route(key)?)?)?;
    }
    Err(reader.corrupt(root, "tree deeper than the limit"))
}

/// The bytes of a writer-held value.
pub(crate) fn value_bytes(value: &Value, reader: &PageReader<'_>) -> Result<Vec<u8>> {
    match value {
        Value::Bytes(bytes) => Ok(bytes.to_vec()),
        Value::Overflow { page, len } => Ok(reader.overflow(*page, *len)?.to_vec()),
    }
}

/// The committed overflow run a value occupies, checked against the run's
/// own header, so that a damaged pointer is an error rather than a live page
/// freed.
pub(crate) fn overflow_run(value: &Value, reader: &PageReader<'_>) -> Result<Option<PageRun>> {
    let Value::Overflow { page, len } = value else { return Ok(None) };
    let (header, _) = reader.run(*page, RunKind::Overflow)?;
    if header.length != *len {
        return Err(reader.corrupt(*page, "overflow run length differs from its leaf's"));
    }
    Ok(Some(PageRun { id: *page, pages: header.pages }))
}

/// Sets `key` to `value`; returns the value it replaced.
pub(crate) fn insert(
    root: &mut Option<NodeRef>,
    key: Vec<u8>,
    value: Value,
    ctx: &mut TreeCtx<'_, '_>,
) -> Result<Option<Value>> {
    let Some(node_ref) = root.as_mut() else {
        *root =
            Some(NodeRef::Dirty(Box::new(Node::Leaf(vec![LeafEntry { key: key.into(), value }]))));
        return Ok(None);
    };
    let old = insert_into(node_ref, key, value, ctx, 0)?;
    normalize_root(root);
    Ok(old)
}

fn insert_into(
    node_ref: &mut NodeRef,
    key: Vec<u8>,
    value: Value,
    ctx: &mut TreeCtx<'_, '_>,
    depth: usize,
) -> Result<Option<Value>> {
    check_depth(depth, ctx)?;
    match node_ref.make_dirty(ctx.reader, ctx.freed)? {
        Node::Leaf(entries) => match entries.binary_search_by(|e| (*e.key).cmp(&key)) {
            Ok(i) => Ok(Some(std::mem::replace(&mut entries[i].value, value))),
            Err(i) => {
                entries.insert(i, LeafEntry { key: key.into(), value });
                Ok(None)
            }
        },
        Node::Branch(entries) => {
            let i = route(entries, &key);
            if i == 0 && key.as_slice() < &*entries[0].key {
                // Keep every separator a true lower bound of its child, so
                // that splitting child 0 cannot put a smaller key after it.
                entries[0].key = Bytes::Owned(key.clone());
            }
            let old = insert_into(&mut entries[i].child, key, value, ctx, depth + 1)?;
            debug_assert_ordered(entries, "insert below");
            rebalance_child(entries, i, ctx)?;
            Ok(old)
        }
    }
}

/// Removes `key`; returns its value. A missing key changes nothing.
pub(crate) fn remove(
    root: &mut Option<NodeRef>,
    key: &[u8],
    ctx: &mut TreeCtx<'_, '_>,
) -> Result<Option<Value>> {
    let Some(node_ref) = root.as_mut() else { return Ok(None) };
    if !contains(node_ref, key, ctx.reader)? {
        return Ok(None);
    }
    let old = remove_from(node_ref, key, ctx, 0)?;
    normalize_root(root);
    Ok(old)
}

fn remove_from(
    node_ref: &mut NodeRef,
    key: &[u8],
    ctx: &mut TreeCtx<'_, '_>,
    depth: usize,
) -> Result<Option<Value>> {
    check_depth(depth, ctx)?;
    match node_ref.make_dirty(ctx.reader, ctx.freed)? {
        Node::Leaf(entries) => match entries.binary_search_by(|e| (*e.key).cmp(key)) {
            Ok(i) => Ok(Some(entries.remove(i).value)),
            Err(_) => Ok(None),
        },
        Node::Branch(entries) => {
            let i = route(entries, key);
            let old = remove_from(&mut entries[i].child, key, ctx, depth + 1)?;
            debug_assert_ordered(entries, "remove below");
            rebalance_child(entries, i, ctx)?;
            Ok(old)
        }
    }
}

/// Whether `key` is in the tree, without changing anything.
fn contains(root: &NodeRef, key: &[u8], reader: &PageReader<'_>) -> Result<bool> {
    let mut current = root;
    for _ in 0..DEPTH_MAX {
        let node = match current {
            NodeRef::Clean(id) => return Ok(get_committed(*id, key, reader)?.is_some()),
            NodeRef::Dirty(node) => node,
        };
        match &**node {
            Node::Leaf(entries) => {
                return Ok(entries.binary_search_by(|e| (*e.key).cmp(key)).is_ok())
            }
            Node::Branch(entries) => current = &entries[route(entries, key)].child,
        }
    }
    Err(reader.corrupt(PageId::NONE, "tree deeper than the limit"))
}

/// Frees every run of a tree (drop). A run reached twice is damage: freeing
/// it twice would hand it out twice, and walking a shared subtree again and
/// again could take forever.
pub(crate) fn free_all(root: &NodeRef, ctx: &mut TreeCtx<'_, '_>) -> Result<()> {
    let mut visited = HashSet::new();
    free_subtree(root, ctx, &mut visited, 0)
}

fn free_subtree(
    node_ref: &NodeRef,
    ctx: &mut TreeCtx<'_, '_>,
    visited: &mut HashSet<PageId>,
    depth: usize,
) -> Result<()> {
    check_depth(depth, ctx)?;
    match node_ref {
        NodeRef::Clean(id) => {
            let view = ctx.reader.node(*id)?;
            free_run(PageRun { id: *id, pages: view.pages }, ctx, visited)?;
            let node = Node::decode(&view)?;
            free_children(&node, ctx, visited, depth)
        }
        NodeRef::Dirty(node) => free_children(node, ctx, visited, depth),
    }
}

fn free_children(
    node: &Node,
    ctx: &mut TreeCtx<'_, '_>,
    visited: &mut HashSet<PageId>,
    depth: usize,
) -> Result<()> {
    match node {
        Node::Leaf(entries) => {
            for entry in entries {
                if let Some(run) = overflow_run(&entry.value, ctx.reader)? {
                    free_run(run, ctx, visited)?;
                }
            }
            Ok(())
        }
        Node::Branch(entries) => {
            entries.iter().try_for_each(|e| free_subtree(&e.child, ctx, visited, depth + 1))
        }
    }
}

fn free_run(run: PageRun, ctx: &mut TreeCtx<'_, '_>, visited: &mut HashSet<PageId>) -> Result<()> {
    if !visited.insert(run.id) {
        return Err(ctx.reader.corrupt(run.id, "a run is reachable twice"));
    }
    ctx.freed.push(run);
    Ok(())
}

/// Writes every dirty node (children first) and every large in-memory
/// value into newly allocated runs; returns the root's page.
pub(crate) fn spill(
    node_ref: &mut NodeRef,
    free: &mut FreePages,
    out: &mut RunWriter<'_>,
) -> Result<PageId> {
    let NodeRef::Dirty(node) = node_ref else {
        let NodeRef::Clean(id) = node_ref else { unreachable!() };
        return Ok(*id);
    };
    match &mut **node {
        Node::Branch(entries) => {
            // Most children of a changed branch are clean: skip them here.
            for entry in entries.iter_mut().filter(|e| e.child.as_dirty().is_some()) {
                let child = spill(&mut entry.child, free, out)?;
                entry.child = NodeRef::Clean(child);
            }
        }
        Node::Leaf(entries) => {
            for entry in entries.iter_mut() {
                if let Value::Bytes(bytes) = &entry.value {
                    if bytes.len() > VALUE_INLINE_BYTES_MAX {
                        let run = free.allocate(super::node::overflow_pages(bytes.len()));
                        let (run, encoded) = encode_overflow(run.id, bytes);
                        let len = u32::try_from(bytes.len()).expect("values are at most 1 MiB");
                        entry.value = Value::Overflow { page: run.id, len };
                        out.write(run, encoded)?;
                    }
                }
            }
        }
    }
    let used = node.encoded_bytes();
    let run = free.allocate(super::page::pages_for(used));
    let (run, encoded) = node.encode(run.id, used);
    out.write(run, encoded)?;
    *node_ref = NodeRef::Clean(run.id);
    Ok(run.id)
}

/// The entry of a branch whose child holds `key`.
fn route(entries: &[BranchEntry], key: &[u8]) -> usize {
    match entries.binary_search_by(|e| (*e.key).cmp(key)) {
        Ok(i) => i,
        Err(i) => i.saturating_sub(1),
    }
}

fn check_depth(depth: usize, ctx: &TreeCtx<'_, '_>) -> Result<()> {
    if depth >= DEPTH_MAX {
        return Err(ctx.reader.corrupt(PageId::NONE, "tree deeper than the limit"));
    }
    Ok(())
}

/// Restores the root's bounds after a change: both paths can merge and split
/// below it, so it may have shrunk to one child or grown past a page.
fn normalize_root(root: &mut Option<NodeRef>) {
    shrink_root(root);
    if let Some(node_ref) = root.as_mut() {
        grow_root(node_ref);
    }
}

/// Splits an oversized root into a new root branch, as often as needed.
fn grow_root(root: &mut NodeRef) {
    loop {
        let NodeRef::Dirty(node) = root else { return };
        if node.encoded_bytes() <= PAGE_BYTES {
            return;
        }
        let tails = node.split_off_parts(2);
        if tails.is_empty() {
            return; // a single entry larger than a page: a multi-page run
        }
        let NodeRef::Dirty(first) = std::mem::replace(root, NodeRef::Clean(PageId::NONE)) else {
            unreachable!()
        };
        let mut entries = vec![BranchEntry {
            key: first.first_key().unwrap_or_default().to_vec().into(),
            child: NodeRef::Dirty(first),
        }];
        entries.extend(tails.into_iter().map(branch_entry));
        *root = NodeRef::Dirty(Box::new(Node::Branch(entries)));
    }
}

/// Drops empty root nodes and roots that are branches with one child.
fn shrink_root(root: &mut Option<NodeRef>) {
    loop {
        let Some(NodeRef::Dirty(node)) = root else { return };
        match &mut **node {
            Node::Leaf(entries) if entries.is_empty() => *root = None,
            Node::Branch(entries) if entries.len() <= 1 => *root = entries.pop().map(|e| e.child),
            _ => return,
        }
    }
}

fn branch_entry(node: Node) -> BranchEntry {
    BranchEntry {
        key: node.first_key().unwrap_or_default().to_vec().into(),
        child: NodeRef::Dirty(Box::new(node)),
    }
}

/// Restores the size bounds of child `i` after a change below it.
fn rebalance_child(
    entries: &mut Vec<BranchEntry>,
    i: usize,
    ctx: &mut TreeCtx<'_, '_>,
) -> Result<()> {
    let child = entries[i].child.as_dirty().expect("the child on the changed path is dirty");
    if child.len() == 0 {
        entries.remove(i);
        return Ok(());
    }
    let size = child.encoded_bytes();
    let lone_branch = matches!(child, Node::Branch(e) if e.len() < 2);
    // A lone branch is merged even when large (a single 4 KiB key passes a
    // page): splitting cannot give it a second entry.
    if (lone_branch || size < MERGE_BYTES_MIN) && entries.len() > 1 {
        let left = if i > 0 { i - 1 } else { i };
        merge_children(entries, left, ctx)?;
        if entries[left].child.as_dirty().is_some_and(|n| n.encoded_bytes() > PAGE_BYTES) {
            split_child(entries, left, 2);
        }
    } else if size > PAGE_BYTES {
        spread_child(entries, i, size, ctx)?;
    }
    Ok(())
}

/// Brings child `i`, `size` bytes encoded (over a page), back within one:
/// its entries and those of the sibling with more room are shared out
/// between two nodes if they fit with room to spare, else among three. A
/// plain split leaves two half-full nodes, and random inserts then fill
/// leaves to about 69 % (Yao, "On random 2-3 trees", Acta Informatica 9,
/// 1978); sharing with a sibling first, as B*-trees do (Knuth, TAOCP vol. 3,
/// §6.2.4), keeps them about 83 % full (measured: 500,000 random keys with
/// 100-byte values, 204 → 167 node bytes per key) for the cost of
/// rewriting the sibling when a node overflows.
fn spread_child(
    entries: &mut Vec<BranchEntry>,
    i: usize,
    size: usize,
    ctx: &mut TreeCtx<'_, '_>,
) -> Result<()> {
    let single = entries[i].child.as_dirty().is_some_and(|n| n.len() < 2);
    if single || entries.len() < 2 {
        split_child(entries, i, 2); // a lone large entry, or no sibling to share with
        return Ok(());
    }
    // The sibling with more room; the right one on a tie.
    let right = match entries.get(i + 1) {
        Some(entry) => Some(node_bytes(&entry.child, ctx.reader)?),
        None => None,
    };
    let left = match i.checked_sub(1) {
        Some(l) => Some(node_bytes(&entries[l].child, ctx.reader)?),
        None => None,
    };
    let (first, sibling) = match (left, right) {
        (Some(l), Some(r)) if l < r => (i - 1, l),
        (_, Some(r)) => (i, r),
        (l, _) => (i - 1, l.unwrap_or(0)),
    };
    // Shared by two, each would be left with less than a sixteenth of a
    // page free and overflow again at once: share among three instead.
    // (Measured with 500,000 random 16-byte keys and 100-byte values in
    // deferred transactions of 40, thresholds of 1/4 to 1/32 of a page: an
    // eighth gave nearly the fewest node bytes for no more CPU per insert.)
    let shared = size + sibling - RUN_HEADER_BYTES;
    let parts = if shared > 2 * PAGE_BYTES - PAGE_BYTES / 8 { 3 } else { 2 };
    merge_children(entries, first, ctx)?;
    split_child(entries, first, parts);
    Ok(())
}

/// The bytes `node` takes encoded: its run header's count for a clean one
/// (no decoding), its size for a dirty one.
fn node_bytes(node: &NodeRef, reader: &PageReader<'_>) -> Result<usize> {
    match node {
        NodeRef::Dirty(node) => Ok(node.encoded_bytes()),
        NodeRef::Clean(id) => Ok(reader.node(*id)?.used_bytes().len()),
    }
}

/// Splits child `i` into at least `parts_min` nodes (see
/// [`Node::split_off_parts`]).
fn split_child(entries: &mut Vec<BranchEntry>, i: usize, parts_min: usize) {
    let NodeRef::Dirty(child) = &mut entries[i].child else {
        unreachable!("split children are dirty")
    };
    let tails = child.split_off_parts(parts_min);
    let at = i + 1;
    entries.splice(at..at, tails.into_iter().map(branch_entry));
    debug_assert_ordered(entries, "split");
}

/// Moves the entries of child `left + 1` into child `left`.
fn merge_children(
    entries: &mut Vec<BranchEntry>,
    left: usize,
    ctx: &mut TreeCtx<'_, '_>,
) -> Result<()> {
    entries[left].child.make_dirty(ctx.reader, ctx.freed)?;
    entries[left + 1].child.make_dirty(ctx.reader, ctx.freed)?;
    let right = entries.remove(left + 1);
    let NodeRef::Dirty(right_node) = right.child else { unreachable!("made dirty above") };
    let NodeRef::Dirty(left_node) = &mut entries[left].child else {
        unreachable!("made dirty above")
    };
    match (&mut **left_node, *right_node) {
        (Node::Leaf(l), Node::Leaf(r)) => l.extend(r),
        (Node::Branch(l), Node::Branch(mut r)) => {
            // The right node's first key may be a stale lower bound; its
            // separator in the parent is exact enough to keep order.
            r[0].key = right.key;
            l.extend(r);
        }
        _ => return Err(ctx.reader.corrupt(PageId::NONE, "siblings at different depths")),
    }
    debug_assert_ordered(entries, "merge");
    Ok(())
}

/// Debug builds check that separators stay strictly ascending after every
/// structural change.
fn debug_assert_ordered(entries: &[BranchEntry], after: &str) {
    if cfg!(debug_assertions) {
        assert!(
            entries.windows(2).all(|w| *w[0].key < *w[1].key),
            "separators out of order after {after}"
        );
        for entry in entries {
            if let NodeRef::Dirty(node) = &entry.child {
                if let Node::Branch(inner) = &**node {
                    assert!(
                        inner.windows(2).all(|w| *w[0].key < *w[1].key),
                        "child separators out of order after {after}"
                    );
                }
            }
        }
    }
}
