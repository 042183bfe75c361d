//! Membership changes on the core: proposing one (thesis §4.1, with the
//! fix from raft-dev 2015), keeping the membership in force in step with
//! the log, the leader's per-member progress, and a removed leader's
//! hand-over (§4.2.2). See the module docs of [`crate::raft`].

use super::core::{Raft, Role};
use super::membership::{MembershipChange, MembershipError};
use super::message::{Body, Entry, EntryKind, Index, NodeId, Term};
use super::progress::{Progress, ProgressState};
use super::ready::RaftError;
use super::store::LogStore;

impl<S: LogStore> Raft<S> {
    /// Proposes a change of one server. Refused unless this node leads, an
    /// entry of its term has committed (else `Busy`: retry shortly), no
    /// other change is uncommitted, and the change itself is possible (a
    /// learner to promote is at most `promotion_lag_max` entries behind).
    /// Returns the entry's index and term, as `propose` does.
    pub fn propose_membership(
        &mut self,
        change: &MembershipChange,
    ) -> Result<(Index, Term), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader() });
        }
        if self.transferee != 0 {
            return Err(RaftError::Transferring);
        }
        let committed = self.log.committed();
        if self.log.term(committed)? != self.term {
            return Err(RaftError::Busy);
        }
        if self.membership.has_uncommitted(committed) {
            return Err(RaftError::Membership(MembershipError::ChangeInProgress));
        }
        if let MembershipChange::Promote(id) = change {
            self.check_caught_up(*id)?;
        }
        let next = self.membership.current().apply(change).map_err(RaftError::Membership)?;
        let index = self.log.last_index() + 1;
        let entry = Entry { term: self.term, index, kind: EntryKind::Config, data: next.encode() };
        self.append_entries(vec![entry])?;
        self.broadcast_append(false)?;
        Ok((index, self.term))
    }

    /// A learner may be promoted once the leader knows its log matches up
    /// to some entry (it accepted one, and is not waiting for a snapshot)
    /// and it is at most `promotion_lag_max` entries behind.
    fn check_caught_up(&self, id: NodeId) -> Result<(), RaftError> {
        let Some(progress) = self.progress.get(&id) else { return Ok(()) };
        let behind = self.log.last_index().saturating_sub(progress.match_index);
        let matching =
            progress.match_index > 0 && !matches!(progress.state, ProgressState::Snapshot { .. });
        if self.membership.current().is_voter(id)
            || (matching && behind <= self.config.promotion_lag_max)
        {
            return Ok(());
        }
        Err(RaftError::Membership(MembershipError::LearnerBehind { id, behind }))
    }

    /// Appends `entries` to the log and puts any membership they carry in
    /// force (an overwritten configuration entry takes its own with it).
    pub(super) fn append_entries(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        let Some(first) = entries.first().map(|entry| entry.index) else { return Ok(()) };
        let before = self.membership.current_index();
        self.membership.truncate_from(first);
        for entry in entries.iter().filter(|entry| entry.kind == EntryKind::Config) {
            let membership = super::membership::Membership::decode(&entry.data)
                .map_err(|why| RaftError::Invalid(format!("entry {}: {why}", entry.index)))?;
            self.membership.append(entry.index, membership);
        }
        self.log.append(entries);
        if self.membership.current_index() != before {
            self.membership_changed();
        }
        Ok(())
    }

    /// The membership in force changed: a leader tracks the new members and
    /// forgets the removed; a transfer to a server that is no longer a
    /// voter is called off.
    fn membership_changed(&mut self) {
        if self.transferee != 0 && !self.is_voter(self.transferee) {
            self.transferee = 0;
        }
        if self.role == Role::Leader {
            self.sync_progress();
        }
    }

    /// Progress for every member but no one else (this node always keeps
    /// its own, for its match index).
    pub(super) fn sync_progress(&mut self) {
        let own = self.config.id;
        let membership = self.membership.current().clone();
        self.progress.retain(|&id, _| id == own || membership.contains(id));
        let next = self.log.last_index() + 1;
        for id in membership.ids() {
            self.progress
                .entry(id)
                .or_insert_with(|| Progress::new(next, self.config.inflight_max));
        }
    }

    /// After the commit index moved on the leader: once a membership that
    /// leaves this node out is committed, hand over to the most caught-up
    /// voter and step down (§4.2.2). It never campaigns again.
    pub(super) fn leader_after_commit(&mut self) {
        self.membership.commit_to(self.log.committed());
        if self.membership.committed().is_voter(self.config.id) {
            return;
        }
        let successor = self.most_caught_up_voter();
        if successor != 0 {
            self.send(successor, Body::TimeoutNow);
        }
        let term = self.term;
        self.become_follower(term, 0);
    }

    /// The voter other than this node whose log matches the leader's
    /// furthest (0: none).
    pub(super) fn most_caught_up_voter(&self) -> NodeId {
        let own = self.config.id;
        self.membership
            .current()
            .voters()
            .filter(|&id| id != own)
            .max_by_key(|id| self.progress.get(id).map_or(0, |p| p.match_index))
            .unwrap_or(0)
    }
}
