//! Which membership is in force: the newest one in the log, committed or
//! not (thesis §4.1: a server uses the latest configuration in its log as
//! soon as the entry is appended). When a leader's entries overwrite an
//! uncommitted configuration entry, the one before it is in force again;
//! this keeps what is needed for that.

use super::membership::Membership;
use super::message::Index;

/// The memberships of the log: the newest committed one and those above
/// the commit index.
#[derive(Debug, Clone)]
pub struct MembershipLog {
    /// The newest membership at or below the commit index, and the index of
    /// its entry (or of the snapshot or state it came from).
    committed: (Index, Membership),
    /// Configuration entries above the commit index, in log order.
    pending: Vec<(Index, Membership)>,
}

impl MembershipLog {
    /// Starts from `membership`, in force as of `index`.
    pub fn new(index: Index, membership: Membership) -> Self {
        MembershipLog { committed: (index, membership), pending: Vec::new() }
    }

    /// The membership in force: the newest in the log.
    pub fn current(&self) -> &Membership {
        self.pending.last().map_or(&self.committed.1, |(_, m)| m)
    }

    /// The index of the entry the membership in force came from.
    pub fn current_index(&self) -> Index {
        self.pending.last().map_or(self.committed.0, |(index, _)| *index)
    }

    /// The newest committed membership (as of the last `commit_to`).
    pub fn committed(&self) -> &Membership {
        &self.committed.1
    }

    /// Whether a configuration entry above `commit` is in the log.
    pub fn has_uncommitted(&self, commit: Index) -> bool {
        self.pending.iter().any(|(index, _)| *index > commit)
    }

    /// Entries from `index` on were removed from the log.
    pub fn truncate_from(&mut self, index: Index) {
        self.pending.retain(|(at, _)| *at < index);
    }

    /// A configuration entry was appended at `index`.
    pub fn append(&mut self, index: Index, membership: Membership) {
        self.truncate_from(index);
        self.pending.push((index, membership));
    }

    /// Entries up to `commit` are committed.
    pub fn commit_to(&mut self, commit: Index) {
        let done = self.pending.iter().take_while(|(index, _)| *index <= commit).count();
        if let Some(newest) = self.pending.drain(..done).next_back() {
            self.committed = newest;
        }
    }

    /// The log was replaced by a snapshot at `index` holding `membership`.
    pub fn restore(&mut self, index: Index, membership: Membership) {
        self.committed = (index, membership);
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_is_in_force_and_truncation_restores_the_one_before() {
        let mut log = MembershipLog::new(0, Membership::voters_only(&[1, 2, 3]));
        log.append(5, Membership::voters_only(&[1, 2, 3, 4]));
        assert_eq!(log.current().voter_count(), 4);
        assert!(log.has_uncommitted(4));
        log.truncate_from(5);
        assert_eq!(log.current().voter_count(), 3, "an overwritten entry is no longer in force");
        log.append(6, Membership::voters_only(&[1, 2]));
        log.append(8, Membership::voters_only(&[1]));
        log.commit_to(7);
        assert_eq!(log.committed().voter_count(), 2);
        assert_eq!(log.current().voter_count(), 1);
        assert!(log.has_uncommitted(7) && !log.has_uncommitted(8));
        log.restore(20, Membership::voters_only(&[5]));
        assert_eq!((log.current_index(), log.current().voter_count()), (20, 1));
    }
}
