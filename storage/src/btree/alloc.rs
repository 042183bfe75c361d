//! Free pages: which runs the writer may reuse now, which wait for old
//! snapshots or for durability (FORMAT.md, "Free-page reuse"), and the
//! high-water mark past which the file is unused.

use std::collections::{BTreeMap, BTreeSet};

use super::page::{PageId, PageRun};

/// The writer's view of free space. A transaction works on a copy, so an
/// abort forgets its allocations by dropping the copy.
#[derive(Debug, Clone, Default)]
pub(crate) struct FreePages {
    /// Pages that may be written now.
    free: BTreeSet<u64>,
    /// Runs freed by each transaction, not yet reusable.
    pending: BTreeMap<u64, Vec<PageRun>>,
    /// Pages in use or free below this; everything above is unused.
    page_count: u64,
}

impl FreePages {
    /// Free space as loaded from a committed free list.
    pub(crate) fn new(free_ids: impl IntoIterator<Item = u64>, page_count: u64) -> Self {
        FreePages { free: free_ids.into_iter().collect(), pending: BTreeMap::new(), page_count }
    }

    /// The high-water mark in pages.
    pub(crate) fn page_count(&self) -> u64 {
        self.page_count
    }

    /// Pages below the high-water mark that hold no live data: reusable now
    /// or once older readers finish.
    pub(crate) fn free_count(&self) -> u64 {
        let pending: u64 = self.pending.values().flatten().map(|run| u64::from(run.pages)).sum();
        self.free.len() as u64 + pending
    }

    /// Makes the runs freed by transactions up to `txid` reusable.
    pub(crate) fn release_up_to(&mut self, txid: u64) {
        let still_pending = self.pending.split_off(&(txid + 1));
        for run in std::mem::replace(&mut self.pending, still_pending).into_values().flatten() {
            self.free.extend(run.id.0..run.id.0 + u64::from(run.pages));
        }
    }

    /// Records runs freed by transaction `txid`.
    pub(crate) fn free_later(&mut self, txid: u64, runs: Vec<PageRun>) {
        if !runs.is_empty() {
            self.pending.entry(txid).or_default().extend(runs);
        }
    }

    /// A run of `pages` contiguous pages: the lowest free one, or new pages
    /// at the end.
    pub(crate) fn allocate(&mut self, pages: u32) -> PageRun {
        let pages_u64 = u64::from(pages);
        let start =
            if pages == 1 { self.free.pop_first() } else { self.take_contiguous(pages_u64) };
        let start = start.unwrap_or_else(|| {
            let start = self.page_count;
            self.page_count += pages_u64;
            start
        });
        PageRun { id: PageId(start), pages }
    }

    /// Removes and returns the first of `pages` contiguous free pages.
    fn take_contiguous(&mut self, pages: u64) -> Option<u64> {
        let (mut run_start, mut run_len, mut previous) = (0, 0, None);
        for &id in &self.free {
            if previous == Some(id.wrapping_sub(1)) {
                run_len += 1;
            } else {
                (run_start, run_len) = (id, 1);
            }
            previous = Some(id);
            if run_len == pages {
                for taken in run_start..run_start + pages {
                    self.free.remove(&taken);
                }
                return Some(run_start);
            }
        }
        None
    }

    /// Every page a fresh open may reuse: the free pages and all pending
    /// runs (after a restart no snapshot is open), ascending.
    pub(crate) fn persisted_ids(&self) -> Vec<u64> {
        let pending = self
            .pending
            .values()
            .flatten()
            .flat_map(|run| run.id.0..run.id.0 + u64::from(run.pages));
        let mut ids: Vec<u64> = self.free.iter().copied().chain(pending).collect();
        ids.sort_unstable();
        ids
    }

    /// Whether a page is free now.
    #[cfg(test)]
    fn is_free(&self, id: u64) -> bool {
        self.free.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_wait_until_released_and_contiguous_ones_are_found() {
        let mut free = FreePages::new([2, 4, 5, 6, 9], 10);
        assert_eq!(free.allocate(3), PageRun { id: PageId(4), pages: 3 });
        assert_eq!(
            free.allocate(2),
            PageRun { id: PageId(10), pages: 2 },
            "no two contiguous: grow"
        );
        assert_eq!(free.page_count(), 12);
        free.free_later(7, vec![PageRun { id: PageId(4), pages: 3 }]);
        free.release_up_to(6);
        assert!(!free.is_free(4), "freed by 7, not released by 6");
        assert_eq!(free.persisted_ids(), vec![2, 4, 5, 6, 9]);
        free.release_up_to(7);
        assert!(free.is_free(4) && free.is_free(6));
        assert_eq!(free.allocate(1), PageRun { id: PageId(2), pages: 1 });
    }
}
