//! What a leader knows about each follower's log, and the quorum arithmetic
//! built on it.
//!
//! A follower is probed (one append at a time, backing off on rejection)
//! until its log is known to match, then replicated to optimistically (many
//! appends in flight, bounded by `inflight_max`), or sent a snapshot when the
//! entries it needs are compacted away. `match_index` only grows within a
//! term; `next_index > match_index` always.

use std::collections::VecDeque;

use super::message::Index;

/// How the leader sends to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the logs agree is unknown: one append at a time.
    Probe,
    /// The logs agree up to `match_index`: pipeline appends.
    Replicate,
    /// A snapshot is on its way; wait for it.
    Snapshot {
        /// The snapshot's index.
        index: Index,
    },
}

/// One follower's progress.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Highest index known to be replicated on the follower.
    pub match_index: Index,
    /// Next index to send.
    pub next_index: Index,
    /// Probe, replicate or snapshot.
    pub state: ProgressState,
    /// In Probe: an append was sent and not yet answered.
    pub probe_sent: bool,
    /// Last indices of appends in flight (Replicate), oldest first.
    pub inflight: VecDeque<Index>,
    /// Most appends in flight at once.
    pub inflight_max: usize,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Ticks since the snapshot was sent (Snapshot state).
    pub snapshot_ticks: u32,
    /// Highest heartbeat round the follower answered in this term.
    pub round_acked: u64,
}

impl Progress {
    /// Panics unless `next_index > match_index`: sending from at or below
    /// what the follower is known to hold would mean the leader lost track.
    pub fn assert_invariants(&self) {
        assert!(
            self.next_index > self.match_index,
            "progress: next_index {} not past match_index {}",
            self.next_index,
            self.match_index
        );
    }

    /// A follower whose log is unknown: probe from just after ours.
    pub fn new(next_index: Index, inflight_max: usize) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_max,
            recent_active: false,
            snapshot_ticks: 0,
            round_acked: 0,
        }
    }

    /// Whether sending must wait for an answer.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= self.inflight_max,
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Back to probing from just after the known match.
    pub fn become_probe(&mut self) {
        if let ProgressState::Snapshot { index } = self.state {
            self.next_index = (self.match_index + 1).max(index + 1);
        } else {
            self.next_index = self.match_index + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.assert_invariants();
    }

    /// The logs agree up to `match_index`: pipeline.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// A snapshot ending at `index` was sent.
    pub fn become_snapshot(&mut self, index: Index) {
        self.state = ProgressState::Snapshot { index };
        self.inflight.clear();
        self.snapshot_ticks = 0;
    }

    /// Records an append ending at `last` as sent.
    pub fn sent(&mut self, last: Index, entries: usize) {
        match self.state {
            ProgressState::Replicate if entries > 0 => {
                self.next_index = last + 1;
                self.inflight.push_back(last);
            }
            ProgressState::Probe => self.probe_sent = true,
            _ => {}
        }
        self.assert_invariants();
    }

    /// The follower accepted up to `index`. Returns whether that was news.
    pub fn accepted(&mut self, index: Index) -> bool {
        let news = index > self.match_index;
        if news {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        self.assert_invariants();
        news
    }

    /// The follower rejected an append at `rejected`; `next` is the leader's
    /// guess of where to retry. Returns false for a stale rejection.
    pub fn rejected(&mut self, rejected: Index, next: Index) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.match_index {
                return false; // answers an append sent before the match was known
            }
            self.become_probe();
            self.next_index = (self.match_index + 1).max(next.min(rejected));
            return true;
        }
        if self.next_index.checked_sub(1) != Some(rejected) {
            return false; // answers an older probe
        }
        self.next_index = (self.match_index + 1).max(next.min(rejected));
        self.probe_sent = false;
        true
    }
}

/// The highest index a majority of `matches` has reached.
pub fn quorum_index(matches: &mut [Index]) -> Index {
    assert!(!matches.is_empty(), "a cluster has members");
    matches.sort_unstable_by(|a, b| b.cmp(a));
    matches[matches.len() / 2]
}

/// Whether `yes` votes out of `members` make a majority.
pub fn is_majority(yes: usize, members: usize) -> bool {
    yes > members / 2
}

/// Whether `no` votes out of `members` make a majority impossible.
pub fn is_lost(no: usize, members: usize) -> bool {
    members - no.min(members) <= members / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_index_is_the_majority_position() {
        assert_eq!(quorum_index(&mut [5]), 5);
        assert_eq!(quorum_index(&mut [1, 5, 3]), 3);
        assert_eq!(quorum_index(&mut [9, 1, 9, 1]), 1, "4 members need 3");
        assert_eq!(quorum_index(&mut [7, 2, 4, 6, 1]), 4, "5 members need 3");
        assert_eq!(quorum_index(&mut [0, 0, 10]), 0);
    }

    #[test]
    fn majorities_and_lost_elections() {
        assert!(is_majority(2, 3) && !is_majority(1, 3));
        assert!(is_majority(3, 5) && !is_majority(2, 5));
        assert!(!is_majority(2, 4) && is_majority(3, 4));
        assert!(is_lost(2, 3) && !is_lost(1, 3));
        assert!(is_lost(3, 5) && !is_lost(2, 5));
        assert!(is_lost(2, 4), "4 members: 2 no leaves at most 2 yes");
    }

    #[test]
    fn replicate_pipelines_until_the_window_is_full() {
        let mut progress = Progress::new(11, 2);
        progress.accepted(10);
        progress.become_replicate();
        assert_eq!(progress.next_index, 11);
        progress.sent(12, 2);
        assert!(!progress.is_paused());
        progress.sent(14, 2);
        assert!(progress.is_paused(), "two appends in flight");
        assert_eq!(progress.next_index, 15);
        assert!(progress.accepted(12));
        assert!(!progress.is_paused(), "the first answer frees a slot");
        assert!(!progress.accepted(11), "a stale answer is no news");
        assert_eq!(progress.match_index, 12);
    }

    #[test]
    fn rejections_back_off_and_stale_ones_are_ignored() {
        let mut progress = Progress::new(20, 4);
        progress.sent(19, 0);
        assert!(progress.is_paused(), "a probe waits for its answer");
        assert!(!progress.rejected(15, 10), "not the probe in flight");
        assert!(progress.rejected(19, 12));
        assert_eq!(progress.next_index, 12);
        assert!(!progress.is_paused());
        progress.accepted(11);
        progress.become_replicate();
        progress.sent(15, 4);
        assert!(!progress.rejected(11, 5), "below the match: stale");
        assert!(progress.rejected(15, 13));
        assert_eq!(progress.state, ProgressState::Probe);
        assert_eq!(progress.next_index, 13, "never below match + 1");
    }

    #[test]
    #[should_panic(expected = "next_index 5 not past match_index 10")]
    fn a_progress_that_lost_track_is_caught_before_it_sends() {
        let mut progress = Progress::new(5, 4);
        progress.match_index = 10; // what a bug elsewhere would do
        progress.sent(4, 0);
    }

    #[test]
    fn snapshot_waits_then_probes_after_it() {
        let mut progress = Progress::new(5, 4);
        progress.become_snapshot(100);
        assert!(progress.is_paused());
        progress.become_probe();
        assert_eq!(progress.next_index, 101);
    }
}
