//! Nodes as the writer holds them: decoded into vectors, changed in place,
//! encoded into new runs at commit.

use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

use super::page::{
    pages_for, seal_run, write_header, PageId, PageReader, PageRun, RunHeader, RunKind, PAGE_BYTES,
    RUN_HEADER_BYTES,
};
use super::view::{
    key_prefix, NodeView, ValueRef, BRANCH_ENTRY_HEADER_BYTES, CHILD_PAGE_LIMIT,
    LEAF_ENTRY_HEADER_BYTES, SLOT_BYTES, VALUE_INLINE, VALUE_INLINE_BYTES_MAX, VALUE_OVERFLOW,
};
use crate::Result;

/// Key or value bytes held by the writer: a span of a decoded node's page
/// copy, shared by all entries of that node (decoding allocates twice per
/// node, not twice per entry), or bytes of their own. The copy is counted
/// with `Rc`, not `Arc`: decoded nodes never leave the thread that decoded
/// them (the writer's, or a snapshot export's), and an atomic count per
/// entry cost ~7 % of an insert at 1.5 million keys (storage `fill`
/// example, 114 keys a transaction, wall time: 19.1 → 17.8 µs).
#[derive(Clone)]
pub(crate) enum Bytes {
    /// `len` bytes at `at` of a copied run.
    Shared {
        /// The copy of the run's used bytes.
        run: Rc<[u8]>,
        /// Offset of the bytes in `run`.
        at: u32,
        /// Their length.
        len: u32,
    },
    /// Bytes of their own (new keys and values).
    Owned(Vec<u8>),
}

impl Bytes {
    /// `slice`, which lies inside `original`, as the same span of `run`, a
    /// copy of `original`.
    fn span(run: &Rc<[u8]>, original: &[u8], slice: &[u8]) -> Self {
        let at = slice.as_ptr() as usize - original.as_ptr() as usize;
        assert!(at + slice.len() <= run.len(), "the slice lies in the run");
        let at = u32::try_from(at).expect("runs are far below 4 GiB");
        let len = u32::try_from(slice.len()).expect("runs are far below 4 GiB");
        Bytes::Shared { run: Rc::clone(run), at, len }
    }

    /// The length, without forming the slice.
    pub(crate) fn len(&self) -> usize {
        match self {
            Bytes::Shared { len, .. } => *len as usize,
            Bytes::Owned(bytes) => bytes.len(),
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Shared { run, at, len } => &run[*at as usize..(*at + *len) as usize],
            Bytes::Owned(bytes) => bytes,
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::Owned(bytes)
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

/// A value held by the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// Bytes in memory; spilled to an overflow run at commit if too large to
    /// sit in the leaf.
    Bytes(Bytes),
    /// A committed overflow run.
    Overflow {
        /// First page of the run.
        page: PageId,
        /// The value's length.
        len: u32,
    },
}

impl Value {
    /// Bytes the value takes inside its leaf entry.
    fn leaf_bytes(&self) -> usize {
        match self {
            Value::Bytes(bytes) if bytes.len() <= VALUE_INLINE_BYTES_MAX => bytes.len(),
            _ => 8,
        }
    }
}

/// Pages of the overflow run for a value of `len` bytes.
pub(crate) fn overflow_pages(len: usize) -> u32 {
    pages_for(RUN_HEADER_BYTES + len)
}

/// A node or a reference to a committed one.
#[derive(Debug)]
pub(crate) enum NodeRef {
    /// Committed and unchanged.
    Clean(PageId),
    /// Changed in this transaction; gets a new run at commit.
    Dirty(Box<Node>),
}

/// One leaf entry.
#[derive(Debug)]
pub(crate) struct LeafEntry {
    /// The key.
    pub(crate) key: Bytes,
    /// The value.
    pub(crate) value: Value,
}

impl LeafEntry {
    /// Bytes the entry takes encoded, its slot included.
    fn encoded_bytes(&self) -> usize {
        SLOT_BYTES + LEAF_ENTRY_HEADER_BYTES + self.key.len() + self.value.leaf_bytes()
    }
}

/// One branch entry: a child and a lower bound of its keys.
#[derive(Debug)]
pub(crate) struct BranchEntry {
    /// At most every key under `child`, above every key under the previous
    /// child (FORMAT.md, "Branch").
    pub(crate) key: Bytes,
    /// The subtree.
    pub(crate) child: NodeRef,
}

impl BranchEntry {
    /// Bytes the entry takes encoded, its slot included.
    fn encoded_bytes(&self) -> usize {
        SLOT_BYTES + BRANCH_ENTRY_HEADER_BYTES + self.key.len()
    }
}

/// A decoded node.
#[derive(Debug)]
pub(crate) enum Node {
    /// Entries in key order.
    Leaf(Vec<LeafEntry>),
    /// Children in key order.
    Branch(Vec<BranchEntry>),
}

impl Node {
    /// Decodes a committed node; its overflow values stay on disk.
    pub(crate) fn decode(view: &NodeView<'_>) -> Result<Self> {
        let original = view.used_bytes();
        let run: Rc<[u8]> = Rc::from(original);
        let share = |slice: &[u8]| Bytes::span(&run, original, slice);
        if view.is_leaf() {
            let mut entries = Vec::with_capacity(view.count);
            for i in 0..view.count {
                let (key, value) = view.leaf_entry(i).ok_or_else(|| view.damaged(i))?;
                let value = match value {
                    ValueRef::Inline(bytes) => Value::Bytes(share(bytes)),
                    ValueRef::Overflow { page, len } => Value::Overflow { page, len },
                };
                entries.push(LeafEntry { key: share(key), value });
            }
            Ok(Node::Leaf(entries))
        } else {
            let mut entries = Vec::with_capacity(view.count);
            for i in 0..view.count {
                let (key, child) = view.branch_entry(i).ok_or_else(|| view.damaged(i))?;
                entries.push(BranchEntry { key: share(key), child: NodeRef::Clean(child) });
            }
            Ok(Node::Branch(entries))
        }
    }

    /// Entries in the node.
    pub(crate) fn len(&self) -> usize {
        match self {
            Node::Leaf(entries) => entries.len(),
            Node::Branch(entries) => entries.len(),
        }
    }

    /// The first key, if any.
    pub(crate) fn first_key(&self) -> Option<&[u8]> {
        match self {
            Node::Leaf(entries) => entries.first().map(|e| &*e.key),
            Node::Branch(entries) => entries.first().map(|e| &*e.key),
        }
    }

    /// Bytes the encoded node takes, header included.
    pub(crate) fn encoded_bytes(&self) -> usize {
        // Called on every node of a changed path after each change: one loop
        // per kind rather than a match per entry.
        RUN_HEADER_BYTES
            + match self {
                Node::Leaf(entries) => entries.iter().map(LeafEntry::encoded_bytes).sum::<usize>(),
                Node::Branch(entries) => {
                    entries.iter().map(BranchEntry::encoded_bytes).sum::<usize>()
                }
            }
    }

    /// Bytes entry `i` takes, its slot included.
    fn entry_bytes(&self, i: usize) -> usize {
        match self {
            Node::Leaf(entries) => entries[i].encoded_bytes(),
            Node::Branch(entries) => entries[i].encoded_bytes(),
        }
    }

    /// Splits an oversized node into at least `parts_min` parts of about
    /// equal size (more if entries do not divide evenly), each of at most
    /// one page where entries allow; branches keep at least two entries a
    /// part. Returns the parts after the first,
    /// which stays in `self`.
    pub(crate) fn split_off_parts(&mut self, parts_min: usize) -> Vec<Node> {
        let total = self.encoded_bytes();
        let parts = total.div_ceil(PAGE_BYTES).max(parts_min).max(2);
        let target = total / parts;
        let min_entries = if matches!(self, Node::Branch(_)) { 2 } else { 1 };
        let mut cuts = Vec::new();
        let (mut filled, mut since_cut) = (RUN_HEADER_BYTES, 0);
        for i in 0..self.len() {
            let remaining = self.len() - i;
            // Past the target, or the next entry would take the part over a
            // page (a part ends with the entry that reaches the target, so a
            // large one could otherwise overshoot).
            let full = filled >= target || filled + self.entry_bytes(i) > PAGE_BYTES;
            if since_cut >= min_entries && full && remaining >= min_entries {
                cuts.push(i);
                (filled, since_cut) = (RUN_HEADER_BYTES, 0);
            }
            filled += self.entry_bytes(i);
            since_cut += 1;
        }
        let mut tails = Vec::new();
        for cut in cuts.into_iter().rev() {
            tails.push(match self {
                Node::Leaf(entries) => Node::Leaf(entries.split_off(cut)),
                Node::Branch(entries) => Node::Branch(entries.split_off(cut)),
            });
        }
        tails.reverse();
        tails
    }

    /// Encodes the node as the run starting at `id`, sealed. Values must
    /// already fit their leaf (overflow ones spilled); `used` is
    /// `encoded_bytes()`, which the caller already computed to allocate.
    pub(crate) fn encode(&self, id: PageId, used: usize) -> (PageRun, Vec<u8>) {
        debug_assert_eq!(used, self.encoded_bytes(), "the caller sized the node");
        let pages = pages_for(used);
        let mut run = vec![0u8; pages as usize * PAGE_BYTES];
        let (kind, count) = match self {
            Node::Leaf(_) => (RunKind::Leaf, self.len()),
            Node::Branch(_) => (RunKind::Branch, self.len()),
        };
        let count = u16::try_from(count).expect("a node's entries fit a few pages");
        let length = u32::try_from(used - RUN_HEADER_BYTES).expect("node size is bounded");
        write_header(&mut run, RunHeader { kind, count, pages, length, page_id: id });
        let mut at = RUN_HEADER_BYTES + self.len() * SLOT_BYTES;
        for i in 0..self.len() {
            let slot = RUN_HEADER_BYTES + i * SLOT_BYTES;
            run[slot..slot + 4].copy_from_slice(&u32::try_from(at).expect("bounded").to_le_bytes());
            let key = match self {
                Node::Leaf(entries) => &entries[i].key,
                Node::Branch(entries) => &entries[i].key,
            };
            run[slot + 4..slot + 12].copy_from_slice(&key_prefix(key).to_be_bytes());
            at = self.encode_entry(i, &mut run, at);
        }
        debug_assert_eq!(at, used, "encoded size matches encoded_bytes");
        seal_run(&mut run);
        (PageRun { id, pages }, run)
    }

    /// Writes entry `i` at `at`; returns where the next one goes.
    fn encode_entry(&self, i: usize, run: &mut [u8], at: usize) -> usize {
        let (key, header_bytes) = match self {
            Node::Leaf(entries) => (&entries[i].key, LEAF_ENTRY_HEADER_BYTES),
            Node::Branch(entries) => (&entries[i].key, BRANCH_ENTRY_HEADER_BYTES),
        };
        let key_len = u16::try_from(key.len()).expect("keys are at most 4 KiB");
        run[at..at + 2].copy_from_slice(&key_len.to_le_bytes());
        let key_at = at + header_bytes;
        run[key_at..key_at + key.len()].copy_from_slice(key);
        let value_at = key_at + key.len();
        match self {
            Node::Leaf(entries) => match &entries[i].value {
                Value::Bytes(bytes) => {
                    assert!(
                        bytes.len() <= VALUE_INLINE_BYTES_MAX,
                        "large values are spilled first"
                    );
                    run[at + 2] = VALUE_INLINE;
                    let len = u32::try_from(bytes.len()).expect("inline values are small");
                    run[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
                    run[value_at..value_at + bytes.len()].copy_from_slice(bytes);
                    value_at + bytes.len()
                }
                Value::Overflow { page, len } => {
                    run[at + 2] = VALUE_OVERFLOW;
                    run[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
                    run[value_at..value_at + 8].copy_from_slice(&page.0.to_le_bytes());
                    value_at + 8
                }
            },
            Node::Branch(entries) => {
                let NodeRef::Clean(child) = entries[i].child else {
                    panic!("children are spilled first")
                };
                assert!(child.0 < CHILD_PAGE_LIMIT, "a file of 2^48 pages cannot exist");
                run[at + 2..at + 8].copy_from_slice(&child.0.to_le_bytes()[..6]);
                value_at
            }
        }
    }
}

/// An overflow run holding `value`, starting at `id`, sealed.
pub(crate) fn encode_overflow(id: PageId, value: &[u8]) -> (PageRun, Vec<u8>) {
    let pages = overflow_pages(value.len());
    let mut run = vec![0u8; pages as usize * PAGE_BYTES];
    let length = u32::try_from(value.len()).expect("values are at most 1 MiB");
    write_header(
        &mut run,
        RunHeader { kind: RunKind::Overflow, count: 0, pages, length, page_id: id },
    );
    run[RUN_HEADER_BYTES..RUN_HEADER_BYTES + value.len()].copy_from_slice(value);
    seal_run(&mut run);
    (PageRun { id, pages }, run)
}

impl NodeRef {
    /// The node, decoded and marked dirty if it was clean; the clean run it
    /// replaces is added to `freed`.
    pub(crate) fn make_dirty<'n>(
        &'n mut self,
        reader: &PageReader<'_>,
        freed: &mut Vec<PageRun>,
    ) -> Result<&'n mut Node> {
        if let NodeRef::Clean(id) = *self {
            let view = reader.node(id)?;
            let node = Node::decode(&view)?;
            freed.push(PageRun { id, pages: view.pages });
            *self = NodeRef::Dirty(Box::new(node));
        }
        match self {
            NodeRef::Dirty(node) => Ok(node),
            NodeRef::Clean(_) => unreachable!("made dirty above"),
        }
    }

    /// The node if dirty.
    pub(crate) fn as_dirty(&self) -> Option<&Node> {
        match self {
            NodeRef::Dirty(node) => Some(node),
            NodeRef::Clean(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leaf of `count` entries with 16-byte keys and `value_bytes`-byte
    /// values.
    fn leaf(count: usize, value_bytes: usize) -> Node {
        let entries = (0..count)
            .map(|i| LeafEntry {
                key: format!("{i:016}").into_bytes().into(),
                value: Value::Bytes(vec![7; value_bytes].into()),
            })
            .collect();
        Node::Leaf(entries)
    }

    /// `node` encoded at page 2 of a file whose pages 0 and 1 are zero,
    /// after `damage` changed its bytes (the checksum is resealed).
    fn damaged_decode(node: &Node, damage: impl Fn(&mut [u8])) -> String {
        let id = PageId::FIRST_RUN;
        let (run, mut bytes) = node.encode(id, node.encoded_bytes());
        damage(&mut bytes);
        seal_run(&mut bytes);
        let mut file = vec![0u8; 2 * PAGE_BYTES];
        file.extend_from_slice(&bytes);
        let map = crate::disk::Mapping::copied(file);
        let path = std::path::Path::new("state.db");
        let reader = PageReader { map: &map, page_count: 2 + u64::from(run.pages), path };
        let view = reader.node(id).expect("the header is intact");
        Node::decode(&view).expect_err("damaged").to_string()
    }

    #[test]
    fn damaged_entries_fail_decoding_with_what_is_wrong() {
        let slot = |i: usize| RUN_HEADER_BYTES + i * SLOT_BYTES;
        // A leaf's slot 3 points into the slot array.
        let error = damaged_decode(&leaf(10, 100), |bytes| {
            bytes[slot(3)..slot(3) + 4].copy_from_slice(&8u32.to_le_bytes());
        });
        assert!(error.contains("slot 3 points at byte 8"), "{error}");
        // A leaf entry's value length passes the node's end.
        let error = damaged_decode(&leaf(10, 100), |bytes| {
            let at = u32::from_le_bytes(bytes[slot(9)..slot(9) + 4].try_into().unwrap()) as usize;
            bytes[at + 4..at + 8].copy_from_slice(&900u32.to_le_bytes());
        });
        assert!(error.contains("900 bytes at byte"), "{error}");
        // A branch entry's key length passes the node's end.
        let entries = (0..5u64)
            .map(|i| BranchEntry {
                key: format!("key-{i}").into_bytes().into(),
                child: NodeRef::Clean(PageId(10 + i)),
            })
            .collect();
        let error = damaged_decode(&Node::Branch(entries), |bytes| {
            let at = u32::from_le_bytes(bytes[slot(4)..slot(4) + 4].try_into().unwrap()) as usize;
            bytes[at..at + 2].copy_from_slice(&4000u16.to_le_bytes());
        });
        assert!(error.contains("4000 bytes at byte"), "{error}");
    }

    #[test]
    fn split_parts_stay_within_a_page_whatever_the_entry_size() {
        // Entries up to the inline limit, nodes from just over one page to
        // nearly three, into two or three parts: every part fits a page and
        // none is empty (a part ends where the next entry would overflow it,
        // not only where it reaches the target).
        for value_bytes in [100, 300, 700, VALUE_INLINE_BYTES_MAX] {
            let entry_bytes = SLOT_BYTES + LEAF_ENTRY_HEADER_BYTES + 16 + value_bytes;
            for count in (PAGE_BYTES / entry_bytes + 1)..(3 * PAGE_BYTES / entry_bytes) {
                for parts_min in [2, 3] {
                    let mut node = leaf(count, value_bytes);
                    let tails = node.split_off_parts(parts_min);
                    let parts: Vec<&Node> = std::iter::once(&node).chain(&tails).collect();
                    // (Three parts are a target, not a promise: four large
                    // entries split greedily give two.)
                    assert!(parts.len() >= 2, "{count} x {value_bytes}: {} parts", parts.len());
                    for part in &parts {
                        assert!(part.len() > 0);
                        assert!(
                            part.encoded_bytes() <= PAGE_BYTES,
                            "{count} x {value_bytes} into {parts_min}: a part of {} bytes",
                            part.encoded_bytes()
                        );
                    }
                    assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), count);
                }
            }
        }
    }
}
