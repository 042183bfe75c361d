//! `ReadTxn::check`: an integrity walk over a snapshot. Verifies every
//! checksum and ordering rule and accounts for every page: a meta page, part
//! of exactly one reachable run, or free, never two of these, never none.

use super::catalog::decode_root;
use super::page::{checksum_ok, PageId, PageReader, RunKind, RUN_HEADER_BYTES};
use super::read::ReadTxn;
use super::tree::DEPTH_MAX;
use super::view::{key_prefix, ValueRef};
use crate::le::u64_at;
use crate::Result;

/// What [`ReadTxn::check`] counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Trees in the catalog.
    pub trees: u64,
    /// Entries across all trees (the catalog's own excluded).
    pub entries: u64,
    /// Pages in branch and leaf runs, the catalog's included.
    pub node_pages: u64,
    /// Pages in overflow runs.
    pub overflow_pages: u64,
    /// Pages listed free, plus the free list's own run.
    pub free_pages: u64,
    /// Pages of the snapshot, meta pages included.
    pub page_count: u64,
    /// Levels of the tallest tree (a lone leaf: 1; the catalog excluded).
    pub height_max: u64,
}

/// The state of one walk.
struct Walk<'a> {
    /// Reads the snapshot.
    reader: PageReader<'a>,
    /// Whether each page has been accounted for.
    used: Vec<bool>,
    /// The counts so far.
    report: CheckReport,
}

impl ReadTxn {
    /// Walks the whole snapshot; an error names the first damaged page.
    /// Every page must be reachable or free, except in a deferred commit's
    /// snapshot, which has no free list to account for free pages with.
    pub fn check(&self) -> Result<CheckReport> {
        let reader = self.reader();
        let page_count = usize::try_from(reader.page_count)
            .map_err(|_| reader.corrupt(PageId::NONE, "too many pages"))?;
        let mut walk =
            Walk { reader, used: vec![false; page_count], report: CheckReport::default() };
        walk.report.page_count = reader.page_count;
        walk.mark(PageId(0), 2)?;
        walk.free_list(self.freelist())?;
        let mut roots = Vec::new();
        if self.catalog() != PageId::NONE {
            walk.node(self.catalog(), None, None, 0, &mut |_, value| roots.push(value.to_vec()))?;
        }
        for value in roots {
            walk.report.trees += 1;
            let root = decode_root(&value)
                .ok_or_else(|| reader.corrupt(self.catalog(), "catalog value is not a page id"))?;
            if root != PageId::NONE {
                let mut entries = 0;
                let height = walk.node(root, None, None, 0, &mut |_, _| entries += 1)?;
                walk.report.entries += entries;
                walk.report.height_max = walk.report.height_max.max(height as u64);
            }
        }
        // A deferred commit has no free list (FORMAT.md, "Commit
        // protocol"): its free pages cannot be told from leaked ones.
        let accounts_for_free = self.freelist() != PageId::NONE || reader.page_count == 2;
        if let Some(leaked) = walk.used.iter().position(|used| !used).filter(|_| accounts_for_free)
        {
            return Err(reader.corrupt(
                PageId(leaked as u64),
                format!("page {leaked} is neither reachable nor free"),
            ));
        }
        Ok(walk.report)
    }
}

impl Walk<'_> {
    /// Accounts for `pages` pages from `id`; each only once.
    fn mark(&mut self, id: PageId, pages: u32) -> Result<()> {
        for page in id.0..id.0.saturating_add(u64::from(pages)) {
            match usize::try_from(page).ok().and_then(|at| self.used.get_mut(at)) {
                Some(used) if !*used => *used = true,
                Some(_) => {
                    return Err(self
                        .reader
                        .corrupt(PageId(page), format!("page {page} is used twice")))
                }
                None => {
                    return Err(self
                        .reader
                        .corrupt(PageId(page), format!("page {page} is outside the snapshot")))
                }
            }
        }
        Ok(())
    }

    fn free_list(&mut self, id: PageId) -> Result<()> {
        if id == PageId::NONE {
            return Ok(());
        }
        let (header, run) = self.reader.run(id, RunKind::FreeList)?;
        if !checksum_ok(run) {
            return Err(self.reader.corrupt(id, "free list fails its checksum"));
        }
        self.mark(id, header.pages)?;
        self.report.free_pages += u64::from(header.pages);
        for i in 0..header.length as usize / 8 {
            self.mark(PageId(u64_at(run, RUN_HEADER_BYTES + 8 * i)), 1)?;
            self.report.free_pages += 1;
        }
        Ok(())
    }

    /// Checks the subtree at `id`, whose keys must lie in `lower..upper`;
    /// calls `on_entry` for each leaf entry; returns the subtree's height.
    fn node(
        &mut self,
        id: PageId,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
        depth: usize,
        on_entry: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize> {
        let reader = self.reader;
        let node = reader.node(id)?;
        if depth >= DEPTH_MAX || !checksum_ok(node.run_bytes()) {
            return Err(reader.corrupt(id, "node fails its checksum or lies too deep"));
        }
        self.mark(id, node.pages)?;
        self.report.node_pages += u64::from(node.pages);
        let keys: Vec<&[u8]> = (0..node.count).map(|i| node.key(i)).collect::<Result<_>>()?;
        let ordered = keys.windows(2).all(|w| w[0] < w[1]);
        let inside =
            keys.iter().all(|k| lower.is_none_or(|l| *k >= l) && upper.is_none_or(|u| *k < u));
        let problem = if !ordered {
            "keys out of order"
        } else if !inside {
            "keys outside their parent's bounds"
        } else if keys.iter().enumerate().any(|(i, key)| node.slot_prefix(i) != key_prefix(key)) {
            "a slot's key prefix differs from its key"
        } else if !node.is_leaf() && node.count < 2 {
            "a branch with a single child"
        } else {
            ""
        };
        if !problem.is_empty() {
            return Err(reader.corrupt(id, problem));
        }
        if node.is_leaf() {
            for (i, key) in keys.iter().enumerate() {
                let value = self.value(node.value(i)?)?;
                on_entry(key, value);
            }
            return Ok(1);
        }
        let mut height = None;
        for i in 0..node.count {
            let child_lower = Some(keys[i]);
            let child_upper = keys.get(i + 1).copied().or(upper);
            let child_height =
                self.node(node.child(i)?, child_lower, child_upper, depth + 1, on_entry)?;
            if *height.get_or_insert(child_height) != child_height {
                return Err(reader.corrupt(id, "leaves at different depths"));
            }
        }
        Ok(height.unwrap_or(0) + 1)
    }

    /// Checks and accounts for an overflow value; returns its bytes.
    fn value<'v>(&mut self, value: ValueRef<'v>) -> Result<&'v [u8]>
    where
        Self: 'v,
    {
        let ValueRef::Overflow { page, len } = value else { return self.reader.value(value) };
        let (header, run) = self.reader.run(page, RunKind::Overflow)?;
        if !checksum_ok(run) {
            return Err(self.reader.corrupt(page, "overflow value fails its checksum"));
        }
        self.mark(page, header.pages)?;
        self.report.overflow_pages += u64::from(header.pages);
        self.reader.overflow(page, len)
    }
}
