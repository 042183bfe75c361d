//! Ordered iteration over a committed tree: [`KeyRange`] says which keys,
//! [`Range`] walks them forward or backward with a stack of node positions.

use super::page::{PageId, PageReader};
use super::tree::DEPTH_MAX;
use super::view::NodeView;
use crate::Result;

/// Which keys a range covers: `start` (inclusive) to `end` (exclusive), only
/// those starting with `prefix`, in ascending or descending order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// The smallest key included.
    pub start: Option<Vec<u8>>,
    /// The first key excluded.
    pub end: Option<Vec<u8>>,
    /// Every key must start with these bytes.
    pub prefix: Option<Vec<u8>>,
    /// Largest key first.
    pub reverse: bool,
}

impl KeyRange {
    /// Every key, ascending.
    pub fn all() -> Self {
        Self::default()
    }

    /// The inclusive lower bound after `prefix` is taken into account.
    pub(crate) fn lower(&self) -> Option<&[u8]> {
        match (self.start.as_deref(), self.prefix.as_deref()) {
            (Some(start), Some(prefix)) => Some(start.max(prefix)),
            (bound, None) | (None, bound) => bound,
        }
    }

    /// The exclusive upper bound after `prefix` is taken into account.
    pub(crate) fn upper(&self) -> Option<Vec<u8>> {
        let after_prefix = self.prefix.as_deref().and_then(prefix_successor);
        match (self.end.clone(), after_prefix) {
            (Some(end), Some(after)) => Some(end.min(after)),
            (bound, None) | (None, bound) => bound,
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// An iterator over `(key, value)` pairs of a committed tree, borrowed from
/// the read transaction. Damage ends it with an error.
#[derive(Debug)]
pub struct Range<'a> {
    /// Reads the snapshot.
    reader: PageReader<'a>,
    /// The path from the root to the current leaf entry; empty when done.
    stack: Vec<(NodeView<'a>, usize)>,
    /// Inclusive lower bound.
    lower: Option<Vec<u8>>,
    /// Exclusive upper bound.
    upper: Option<Vec<u8>>,
    /// Descending order.
    reverse: bool,
}

impl<'a> Range<'a> {
    /// A range over the tree rooted at `root` (NONE: an empty tree).
    pub(crate) fn new(reader: PageReader<'a>, root: PageId, range: &KeyRange) -> Result<Self> {
        let lower = range.lower().map(<[u8]>::to_vec);
        let upper = range.upper();
        let mut this = Range { reader, stack: Vec::new(), lower, upper, reverse: range.reverse };
        if root == PageId::NONE {
            return Ok(this);
        }
        if this.reverse {
            this.seek_before(root)?;
        } else {
            this.seek_from(root)?;
        }
        Ok(this)
    }

    /// Positions at the first key at or above the lower bound.
    fn seek_from(&mut self, root: PageId) -> Result<()> {
        let target = self.lower.clone().unwrap_or_default();
        let leaf = self.descend(root, |node| node.route(&target))?;
        let at = match leaf.search(&target)? {
            Ok(i) | Err(i) => i,
        };
        self.stack.push((leaf, at));
        if at == leaf.count {
            self.step_forward()?;
        }
        Ok(())
    }

    /// Positions at the last key below the upper bound.
    fn seek_before(&mut self, root: PageId) -> Result<()> {
        let upper = self.upper.clone();
        let leaf = self.descend(root, |node| match &upper {
            Some(key) => node.route(key),
            None => Ok(node.count - 1),
        })?;
        let end = match &upper {
            Some(key) => match leaf.search(key)? {
                Ok(i) | Err(i) => i,
            },
            None => leaf.count,
        };
        self.stack.push((leaf, end));
        self.step_backward()
    }

    /// Walks from `node` down to a leaf, taking `choose(branch)` at each
    /// branch; pushes the branches and returns the leaf.
    fn descend(
        &mut self,
        node: PageId,
        choose: impl Fn(&NodeView<'a>) -> Result<usize>,
    ) -> Result<NodeView<'a>> {
        let mut node = self.reader.node(node)?;
        while !node.is_leaf() {
            if self.stack.len() >= DEPTH_MAX {
                return Err(self.reader.corrupt(node.id, "tree deeper than the limit"));
            }
            let i = choose(&node)?;
            self.stack.push((node, i));
            node = self.reader.node(node.child(i)?)?;
        }
        Ok(node)
    }

    /// Moves to the next leaf entry; empties the stack past the last.
    fn step_forward(&mut self) -> Result<()> {
        while let Some((node, i)) = self.stack.pop() {
            if i + 1 < node.count {
                self.stack.push((node, i + 1));
                if !node.is_leaf() {
                    let leaf = self.descend(node.child(i + 1)?, |_| Ok(0))?;
                    self.stack.push((leaf, 0));
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Moves to the previous leaf entry; empties the stack before the first.
    fn step_backward(&mut self) -> Result<()> {
        while let Some((node, i)) = self.stack.pop() {
            if i > 0 {
                self.stack.push((node, i - 1));
                if !node.is_leaf() {
                    let leaf = self.descend(node.child(i - 1)?, |n| Ok(n.count - 1))?;
                    self.stack.push((leaf, leaf.count - 1));
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// The entry under the cursor, if it is inside the bounds.
    fn current(&self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let Some((leaf, i)) = self.stack.last() else { return Ok(None) };
        let key = leaf.key(*i)?;
        let below_upper = self.upper.as_deref().is_none_or(|upper| key < upper);
        let above_lower = self.lower.as_deref().is_none_or(|lower| key >= lower);
        if !(below_upper && above_lower) {
            return Ok(None);
        }
        Ok(Some((key, self.reader.value(leaf.value(*i)?)?)))
    }

    fn next_item(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let item = self.current()?;
        if item.is_none() {
            self.stack.clear();
            return Ok(None);
        }
        if self.reverse {
            self.step_backward()?;
        } else {
            self.step_forward()?;
        }
        Ok(item)
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_item() {
            Ok(item) => item.map(Ok),
            Err(error) => {
                self.stack.clear();
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        let range = KeyRange {
            start: Some(b"b".to_vec()),
            prefix: Some(b"abc".to_vec()),
            ..KeyRange::all()
        };
        assert_eq!(range.lower(), Some(&b"b"[..]));
        assert_eq!(range.upper(), Some(b"abd".to_vec()));
    }
}
