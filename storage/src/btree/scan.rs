//! Keys of a tree as a write transaction sees it: committed subtrees
//! walked with a [`Range`] cursor, nodes changed in the transaction walked
//! in memory. What a range delete applies to.

use super::cursor::{KeyRange, Range};
use super::node::{Node, NodeRef};
use super::page::{PageId, PageReader};
use super::tree::DEPTH_MAX;
use crate::Result;

/// Appends the keys of the tree at `root` within `range` (its start, end
/// and prefix; never reversed) to `out` in order, up to `limit` keys in
/// all, walking committed subtrees with a cursor and changed nodes in
/// memory.
pub(crate) fn keys_in(
    root: &NodeRef,
    range: &KeyRange,
    limit: usize,
    reader: &PageReader<'_>,
    out: &mut Vec<Vec<u8>>,
) -> Result<()> {
    let (lower, upper) = (range.lower().map(<[u8]>::to_vec), range.upper());
    keys_under(root, (lower.as_deref(), upper.as_deref()), limit, reader, out, 0)
}

fn keys_under(
    node_ref: &NodeRef,
    (lower, upper): (Option<&[u8]>, Option<&[u8]>),
    limit: usize,
    reader: &PageReader<'_>,
    out: &mut Vec<Vec<u8>>,
    depth: usize,
) -> Result<()> {
    if depth >= DEPTH_MAX {
        return Err(reader.corrupt(PageId::NONE, "tree deeper than the limit"));
    }
    let node = match node_ref {
        NodeRef::Clean(id) => {
            let bounds = KeyRange {
                start: lower.map(<[u8]>::to_vec),
                end: upper.map(<[u8]>::to_vec),
                ..KeyRange::default()
            };
            for item in Range::new(*reader, *id, &bounds)? {
                if out.len() >= limit {
                    break;
                }
                out.push(item?.0.to_vec());
            }
            return Ok(());
        }
        NodeRef::Dirty(node) => node,
    };
    let inside = |key: &[u8]| lower.is_none_or(|l| key >= l) && upper.is_none_or(|u| key < u);
    match &**node {
        Node::Leaf(entries) => {
            let keys = entries.iter().map(|e| &*e.key).filter(|k| inside(k));
            out.extend(keys.take(limit.saturating_sub(out.len())).map(<[u8]>::to_vec));
        }
        Node::Branch(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                // The child's keys lie in [its key, the next entry's key).
                let past_lower =
                    entries.get(i + 1).is_some_and(|next| lower.is_some_and(|l| *next.key <= *l));
                if past_lower {
                    continue;
                }
                if i > 0 && upper.is_some_and(|u| *entry.key >= *u) || out.len() >= limit {
                    break;
                }
                keys_under(&entry.child, (lower, upper), limit, reader, out, depth + 1)?;
            }
        }
    }
    Ok(())
}
