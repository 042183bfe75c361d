//! Zero-copy views of branch, leaf and overflow runs in a mapping. Every
//! offset read from the page is bounds-checked, so damaged bytes give an
//! error, never a panic or a read outside the run.

use std::cmp::Ordering;

use super::page::{PageId, PageReader, RunKind, RUN_HEADER_BYTES};
use crate::le::{u16_at, u32_at, u64_at};
use crate::Result;

/// Largest value stored inside its leaf; larger ones get an overflow run.
pub const VALUE_INLINE_BYTES_MAX: usize = 1024;
/// Bytes of a leaf entry before its key: key_len, value_kind, zero, value_len.
pub(crate) const LEAF_ENTRY_HEADER_BYTES: usize = 8;
/// Bytes of a branch entry before its key: key_len, then the child page in
/// six bytes (2^48 pages of 4 KiB: an exbibyte), to keep branches wide.
pub(crate) const BRANCH_ENTRY_HEADER_BYTES: usize = 8;
/// Page ids a branch entry can hold.
pub(crate) const CHILD_PAGE_LIMIT: u64 = 1 << 48;
/// Bytes of one slot offset.
pub(crate) const SLOT_BYTES: usize = 12;

/// A key's first 8 bytes, zero-padded, as a big-endian number: prefixes that
/// differ order like their keys (FORMAT.md, "Slots").
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    // The common case without a variable-length copy (a `memcpy` call,
    // measured at ~4 % of a busy apply thread's samples).
    if let Some(first) = key.first_chunk::<8>() {
        return u64::from_be_bytes(*first);
    }
    let mut prefix = [0u8; 8];
    let len = key.len().min(8);
    prefix[..len].copy_from_slice(&key[..len]);
    u64::from_be_bytes(prefix)
}
/// `value_kind` of an inline value.
pub(crate) const VALUE_INLINE: u8 = 0;
/// `value_kind` of a value in an overflow run.
pub(crate) const VALUE_OVERFLOW: u8 = 1;

/// Where a leaf entry's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueRef<'a> {
    /// In the leaf itself.
    Inline(&'a [u8]),
    /// In an overflow run of `len` bytes starting at `page`.
    Overflow {
        /// First page of the run.
        page: PageId,
        /// The value's length.
        len: u32,
    },
}

/// A branch or leaf node in a mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeView<'a> {
    /// Where the run starts.
    pub(crate) id: PageId,
    /// Branch or leaf.
    pub(crate) kind: RunKind,
    /// Number of entries.
    pub(crate) count: usize,
    /// Pages in the run.
    pub(crate) pages: u32,
    /// The run's bytes.
    bytes: &'a [u8],
    /// End of the used bytes: every entry lies below.
    end: usize,
    /// For error messages.
    reader: PageReader<'a>,
}

impl<'a> PageReader<'a> {
    /// The node (branch or leaf) whose run starts at `id`.
    pub(crate) fn node(&self, id: PageId) -> Result<NodeView<'a>> {
        let (header, bytes) =
            self.run_of(id, |kind| kind == RunKind::Branch || kind == RunKind::Leaf)?;
        let kind = header.kind;
        let count = usize::from(header.count);
        let end = RUN_HEADER_BYTES + header.length as usize;
        if count == 0 || RUN_HEADER_BYTES + count * SLOT_BYTES > end {
            return Err(self.corrupt(id, format!("node with {count} entries in {end} bytes")));
        }
        Ok(NodeView { id, kind, count, pages: header.pages, bytes, end, reader: *self })
    }

    /// The bytes of the overflow value of `len` bytes at `page`.
    pub(crate) fn overflow(&self, page: PageId, len: u32) -> Result<&'a [u8]> {
        let (header, bytes) = self.run(page, RunKind::Overflow)?;
        if header.length != len {
            return Err(self.corrupt(
                page,
                format!("overflow run holds {} bytes, leaf says {len}", header.length),
            ));
        }
        Ok(&bytes[RUN_HEADER_BYTES..RUN_HEADER_BYTES + len as usize])
    }

    /// The value a leaf entry refers to.
    pub(crate) fn value(&self, value: ValueRef<'a>) -> Result<&'a [u8]> {
        match value {
            ValueRef::Inline(bytes) => Ok(bytes),
            ValueRef::Overflow { page, len } => self.overflow(page, len),
        }
    }
}

impl<'a> NodeView<'a> {
    /// Whether this is a leaf.
    pub(crate) fn is_leaf(&self) -> bool {
        self.kind == RunKind::Leaf
    }

    /// The key of entry `i`.
    pub(crate) fn key(&self, i: usize) -> Result<&'a [u8]> {
        let at = self.entry(i)?;
        let key_at = at + self.entry_header_bytes();
        self.slice(key_at, usize::from(u16_at(self.bytes, at)))
    }

    /// Entry `i`'s key and the offset of the entry, or `None` if its slot
    /// or its key pass the used bytes: the error-free core of
    /// [`key`](Self::key) for decoding, which reads every entry (an
    /// `Option` comes back in registers, a `Result` of this crate's error
    /// through memory).
    fn entry_key(&self, i: usize) -> Option<(usize, &'a [u8])> {
        if i >= self.count {
            return None;
        }
        let at = u32_at(self.bytes, RUN_HEADER_BYTES + i * SLOT_BYTES) as usize;
        let key_at = at + self.entry_header_bytes();
        let first_entry = RUN_HEADER_BYTES + self.count * SLOT_BYTES;
        if at < first_entry || key_at > self.end {
            return None;
        }
        let key_end = key_at + usize::from(u16_at(self.bytes, at));
        (key_end <= self.end).then(|| (at, &self.bytes[key_at..key_end]))
    }

    /// Branch entry `i`'s key and child, or `None` if damaged (see
    /// [`damaged`](Self::damaged)).
    pub(crate) fn branch_entry(&self, i: usize) -> Option<(&'a [u8], PageId)> {
        debug_assert!(!self.is_leaf());
        let (at, key) = self.entry_key(i)?;
        Some((key, self.child_at(at)))
    }

    /// Leaf entry `i`'s key and value, or `None` if damaged (see
    /// [`damaged`](Self::damaged)).
    pub(crate) fn leaf_entry(&self, i: usize) -> Option<(&'a [u8], ValueRef<'a>)> {
        debug_assert!(self.is_leaf());
        let (at, key) = self.entry_key(i)?;
        Some((key, self.value_at(i, at).ok()?))
    }

    /// The error for entry `i` when [`branch_entry`](Self::branch_entry)
    /// or [`leaf_entry`](Self::leaf_entry) found it damaged.
    pub(crate) fn damaged(&self, i: usize) -> crate::Error {
        // The checked readers find what the fast path found, with its words.
        let found = match self.key(i) {
            Ok(_) if self.is_leaf() => self.value(i).err(),
            Ok(_) => None,
            Err(error) => Some(error),
        };
        found.unwrap_or_else(|| self.corrupt(format!("entry {i} is damaged")))
    }

    /// The value of leaf entry `i`.
    pub(crate) fn value(&self, i: usize) -> Result<ValueRef<'a>> {
        self.value_at(i, self.entry(i)?)
    }

    /// The value of leaf entry `i`, which starts at `at` (checked to leave
    /// room for its header).
    fn value_at(&self, i: usize, at: usize) -> Result<ValueRef<'a>> {
        debug_assert!(self.is_leaf());
        let key_len = usize::from(u16_at(self.bytes, at));
        let value_len = u32_at(self.bytes, at + 4);
        let value_at = at + LEAF_ENTRY_HEADER_BYTES + key_len;
        match self.bytes[at + 2] {
            VALUE_INLINE if value_len as usize <= VALUE_INLINE_BYTES_MAX => {
                Ok(ValueRef::Inline(self.slice(value_at, value_len as usize)?))
            }
            VALUE_OVERFLOW => {
                let page = u64_at(self.slice(value_at, 8)?, 0);
                Ok(ValueRef::Overflow { page: PageId(page), len: value_len })
            }
            kind => {
                Err(self.corrupt(format!("entry {i} has value kind {kind} with {value_len} bytes")))
            }
        }
    }

    /// The child of branch entry `i`.
    pub(crate) fn child(&self, i: usize) -> Result<PageId> {
        debug_assert!(!self.is_leaf());
        Ok(self.child_at(self.entry(i)?))
    }

    /// The child of the branch entry at `at` (checked to leave room for its
    /// header): six bytes after the key length.
    fn child_at(&self, at: usize) -> PageId {
        let mut child = [0u8; 8];
        child[..6].copy_from_slice(&self.bytes[at + 2..at + 8]);
        PageId(u64::from_le_bytes(child))
    }

    /// Binary search for `key`: `Ok(i)` where it is, `Err(i)` where it
    /// would go.
    pub(crate) fn search(&self, key: &[u8]) -> Result<Result<usize, usize>> {
        let target = key_prefix(key);
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let by_prefix = self.slot_prefix(mid).cmp(&target);
            let order =
                if by_prefix == Ordering::Equal { self.key(mid)?.cmp(key) } else { by_prefix };
            match order {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// The branch entry whose child holds `key`: the last entry with a key
    /// at most `key`, or the first.
    pub(crate) fn route(&self, key: &[u8]) -> Result<usize> {
        Ok(match self.search(key)? {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        })
    }

    /// The header and every entry: what a decoded copy needs.
    pub(crate) fn used_bytes(&self) -> &'a [u8] {
        &self.bytes[..self.end]
    }

    /// The run's bytes, for checksums and copies.
    pub(crate) fn run_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn entry_header_bytes(&self) -> usize {
        if self.is_leaf() {
            LEAF_ENTRY_HEADER_BYTES
        } else {
            BRANCH_ENTRY_HEADER_BYTES
        }
    }

    /// The key prefix stored in slot `i` (`i < count`, checked by the caller's
    /// loop bounds; the slot array lies inside the used bytes, checked at
    /// construction).
    pub(crate) fn slot_prefix(&self, i: usize) -> u64 {
        let at = RUN_HEADER_BYTES + i * SLOT_BYTES + 4;
        u64::from_be_bytes(self.bytes[at..at + 8].try_into().expect("8 bytes"))
    }

    /// The offset of entry `i`, checked to leave room for its header.
    fn entry(&self, i: usize) -> Result<usize> {
        if i >= self.count {
            return Err(self.corrupt(format!("entry {i} of {}", self.count)));
        }
        let at = u32_at(self.bytes, RUN_HEADER_BYTES + i * SLOT_BYTES) as usize;
        let first_entry = RUN_HEADER_BYTES + self.count * SLOT_BYTES;
        if at < first_entry || at + self.entry_header_bytes() > self.end {
            return Err(self.corrupt(format!("slot {i} points at byte {at}")));
        }
        Ok(at)
    }

    /// `len` bytes at `at`, checked to lie inside the used bytes.
    fn slice(&self, at: usize, len: usize) -> Result<&'a [u8]> {
        match at.checked_add(len) {
            Some(end) if end <= self.end => Ok(&self.bytes[at..end]),
            _ => Err(self.corrupt(format!("{len} bytes at byte {at} pass the node's end"))),
        }
    }

    fn corrupt(&self, reason: String) -> crate::Error {
        self.reader.corrupt(self.id, reason)
    }
}
