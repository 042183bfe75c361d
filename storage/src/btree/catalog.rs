//! The catalog: the tree that maps each tree's name to its root page
//! (FORMAT.md, "Meta page"). Its values are 8-byte little-endian page ids
//! (0: an empty tree). The writer and the readers both go through here.

use super::cursor::{KeyRange, Range};
use super::page::{PageId, PageReader};
use crate::Result;

/// The catalog value for a tree whose root is `root`.
pub(crate) fn encode_root(root: PageId) -> Vec<u8> {
    root.get().to_le_bytes().to_vec()
}

/// The root page stored as a catalog value; None if it is not 8 bytes.
pub(crate) fn decode_root(bytes: &[u8]) -> Option<PageId> {
    Some(PageId(u64::from_le_bytes(bytes.try_into().ok()?)))
}

/// The tree names in a committed catalog, sorted.
pub(crate) fn committed_tree_names(
    reader: &PageReader<'_>,
    catalog: PageId,
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for item in Range::new(*reader, catalog, &KeyRange::all())? {
        let (name, _) = item?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| reader.corrupt(catalog, "a tree name in the catalog is not UTF-8"))?;
        names.push(name);
    }
    Ok(names)
}
