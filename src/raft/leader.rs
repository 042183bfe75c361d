//! The leader's side: replication (§5.3), commit (§5.4.2), heartbeats,
//! check-quorum, ReadIndex confirmation (thesis §6.4) and leadership
//! transfer (thesis §3.10).

use super::core::{PendingRead, Raft};
use super::message::{Body, Index, Message, NodeId, Term};
use super::progress::{is_majority, quorum_index, ProgressState};
use super::ready::{RaftError, ReadState};
use super::store::{LogStore, StoreError};

/// Ticks a snapshot may stay unanswered before the leader probes again.
const SNAPSHOT_TIMEOUT_ELECTIONS: u32 = 3;

impl<S: LogStore> Raft<S> {
    /// A leader's tick: heartbeats, check-quorum, lapsed transfers and
    /// snapshots.
    pub(super) fn tick_leader(&mut self) -> Result<(), RaftError> {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        let snapshot_ticks_max = self.config.election_ticks * SNAPSHOT_TIMEOUT_ELECTIONS;
        for progress in self.progress.values_mut() {
            if let ProgressState::Snapshot { .. } = progress.state {
                progress.snapshot_ticks += 1;
                if progress.snapshot_ticks > snapshot_ticks_max {
                    progress.become_probe();
                }
            }
        }
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_active() {
                let term = self.term;
                self.become_follower(term, 0);
                return Ok(());
            }
            self.transferee = 0;
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        Ok(())
    }

    /// Whether a majority of the voters was heard from since the last
    /// check (this node counts if it is one); resets the marks for the next.
    fn quorum_active(&mut self) -> bool {
        let own = self.config.id;
        let membership = self.membership.current();
        let active = self
            .progress
            .iter()
            .filter(|(&id, p)| membership.is_voter(id) && (id == own || p.recent_active))
            .count();
        let voters = membership.voter_count();
        for (&id, progress) in &mut self.progress {
            progress.recent_active = id == own;
        }
        is_majority(active, voters)
    }

    /// Sends each follower what it lacks; with `even_if_empty`, an empty
    /// append (to carry a new commit index) to those that lack nothing.
    pub(super) fn broadcast_append(&mut self, even_if_empty: bool) -> Result<(), RaftError> {
        for peer in self.peers() {
            self.send_append(peer, even_if_empty)?;
        }
        Ok(())
    }

    /// Sends one append (or the snapshot) to `to` unless it must wait.
    /// Returns whether something was sent.
    pub(super) fn send_append(
        &mut self,
        to: NodeId,
        even_if_empty: bool,
    ) -> Result<bool, RaftError> {
        let Some(progress) = self.progress.get(&to) else { return Ok(false) };
        progress.assert_invariants();
        assert!(self.log.committed() <= self.log.last_index(), "commit past the last index");
        if progress.is_paused() {
            return Ok(false);
        }
        let next = progress.next_index;
        let last = self.log.last_index();
        if next > last && progress.state == ProgressState::Replicate && !even_if_empty {
            return Ok(false);
        }
        let prev_index = next - 1;
        let bytes_max = self.config.message_bytes_max;
        let read = self
            .log
            .term(prev_index)
            .and_then(|prev_term| Ok((prev_term, self.log.entries(next, last + 1, bytes_max)?)));
        let (prev_term, entries) = match read {
            Ok(read) => read,
            Err(StoreError::Compacted) => return self.send_snapshot(to),
            Err(error) => return Err(error.into()),
        };
        let sent_last = entries.last().map_or(prev_index, |entry| entry.index);
        let count = entries.len();
        let commit = self.log.committed();
        self.send(to, Body::Append { prev_index, prev_term, entries, commit });
        self.progress.get_mut(&to).expect("peer tracked").sent(sent_last, count);
        Ok(true)
    }

    /// Sends the store's snapshot to `to`, if one is available now.
    fn send_snapshot(&mut self, to: NodeId) -> Result<bool, RaftError> {
        let (meta, membership) = match self.log.store().snapshot() {
            Ok(snapshot) => snapshot,
            Err(StoreError::SnapshotUnavailable) => return Ok(false),
            Err(error) => return Err(error.into()),
        };
        self.send(to, Body::Snapshot { meta, membership });
        self.progress.get_mut(&to).expect("peer tracked").become_snapshot(meta.index);
        Ok(true)
    }

    /// Sends appends to `to` until its window is full or it lacks nothing.
    fn send_while_possible(&mut self, to: NodeId) -> Result<(), RaftError> {
        for _ in 0..=self.config.inflight_max {
            if !self.send_append(to, false)? {
                break;
            }
            if self.progress.get(&to).is_none_or(|p| p.state != ProgressState::Replicate) {
                break;
            }
        }
        Ok(())
    }

    /// A new heartbeat round to every follower.
    pub(super) fn broadcast_heartbeat(&mut self) {
        self.round += 1;
        self.round_due = false;
        let round = self.round;
        for peer in self.peers() {
            let Some(progress) = self.progress.get(&peer) else { continue };
            let commit = progress.match_index.min(self.log.committed());
            self.send(peer, Body::Heartbeat { commit, round });
        }
    }

    /// Commits what a majority holds, then tells the followers; a leader
    /// whose removal has committed hands over and steps down (§4.2.2).
    pub(super) fn commit_and_broadcast(&mut self) -> Result<(), RaftError> {
        if self.maybe_commit()? {
            self.broadcast_append(true)?;
            self.leader_after_commit();
        }
        Ok(())
    }

    /// Commits what a majority of the voters holds, if it is of this term
    /// (§5.4.2). Returns whether the commit index moved.
    fn maybe_commit(&mut self) -> Result<bool, RaftError> {
        let membership = self.membership.current();
        let mut matches: Vec<Index> = membership
            .voters()
            .map(|id| self.progress.get(&id).map_or(0, |p| p.match_index))
            .collect();
        if matches.is_empty() {
            return Ok(false);
        }
        let index = quorum_index(&mut matches);
        if index <= self.log.committed() || self.log.term(index)? != self.term {
            return Ok(false);
        }
        let first_in_term = self.log.term(self.log.committed())? != self.term;
        self.log.commit_to(index);
        if first_in_term {
            for (from, ctx) in std::mem::take(&mut self.reads_before_commit) {
                self.leader_read(from, ctx);
            }
        }
        Ok(true)
    }

    /// Queues a read for `from`: at the current commit index once this term
    /// has committed an entry, confirmed by the next heartbeat round.
    pub(super) fn leader_read(&mut self, from: NodeId, ctx: u64) {
        let committed = self.log.committed();
        if self.log.term(committed).ok() != Some(self.term) {
            self.reads_before_commit.push((from, ctx));
            return;
        }
        let read = PendingRead { from, ctx, index: committed, round: self.round + 1 };
        self.pending_reads.push_back(read);
        self.round_due = true;
        // Alone, this node is its own majority: confirmed at once.
        self.confirm_reads();
    }

    /// Releases the reads whose round a majority has answered.
    fn confirm_reads(&mut self) {
        let own = self.config.id;
        let membership = self.membership.current().clone();
        while let Some(&read) = self.pending_reads.front() {
            let acks = self
                .progress
                .iter()
                .filter(|(&id, p)| {
                    membership.is_voter(id) && (id == own || p.round_acked >= read.round)
                })
                .count();
            if !is_majority(acks, membership.voter_count()) {
                break;
            }
            self.pending_reads.pop_front();
            if read.from == own {
                self.reads_ready.push(ReadState { ctx: read.ctx, index: read.index });
            } else {
                self.send(read.from, Body::ReadIndexResponse { ctx: read.ctx, index: read.index });
            }
        }
    }

    /// Handles a message addressed to the leader at its own term.
    pub(super) fn step_leader(&mut self, message: Message) -> Result<(), RaftError> {
        let from = message.from;
        match message.body {
            // Answers from a node that is no longer (or not yet) a member.
            _ if !self.progress.contains_key(&from) => Ok(()),
            Body::AppendResponse { reject, index, hint_index, hint_term } => {
                self.progress.get_mut(&from).expect("peer tracked").recent_active = true;
                if reject {
                    self.append_rejected(from, index, hint_index, hint_term)
                } else {
                    self.append_accepted(from, index)
                }
            }
            Body::HeartbeatResponse { round } => self.heartbeat_answered(from, round),
            Body::ReadIndex { ctx } => {
                self.leader_read(from, ctx);
                Ok(())
            }
            // Another leader in this term cannot exist; candidates' traffic
            // and stale answers need nothing.
            _ => Ok(()),
        }
    }

    /// A follower's log did not match at `rejected`; retry lower, guided by
    /// its hint (the §5.3 optimisation).
    fn append_rejected(
        &mut self,
        from: NodeId,
        rejected: Index,
        hint_index: Index,
        hint_term: Term,
    ) -> Result<(), RaftError> {
        let next = if hint_term > 0 {
            self.log.find_conflict_by_term(hint_index, hint_term) + 1
        } else {
            hint_index.saturating_add(1)
        };
        let progress = self.progress.get_mut(&from).expect("peer tracked");
        if progress.rejected(rejected, next) {
            self.send_append(from, true)?;
        }
        Ok(())
    }

    /// A follower holds our log up to `index`.
    fn append_accepted(&mut self, from: NodeId, index: Index) -> Result<(), RaftError> {
        if index > self.log.last_index() {
            return Err(RaftError::Invalid(format!("peer {from} claims index {index} we lack")));
        }
        let progress = self.progress.get_mut(&from).expect("peer tracked");
        if progress.accepted(index) {
            match progress.state {
                ProgressState::Probe => progress.become_replicate(),
                ProgressState::Snapshot { index: snapshot } if progress.match_index >= snapshot => {
                    progress.become_probe();
                }
                _ => {}
            }
            self.commit_and_broadcast()?;
        }
        if self.role != super::core::Role::Leader {
            return Ok(()); // stepped down: its removal committed
        }
        self.send_while_possible(from)?;
        let caught_up =
            self.progress.get(&from).is_some_and(|p| p.match_index == self.log.last_index());
        if from == self.transferee && caught_up {
            self.send(from, Body::TimeoutNow);
        }
        Ok(())
    }

    /// A follower answered heartbeat `round`: it is alive and follows us.
    fn heartbeat_answered(&mut self, from: NodeId, round: u64) -> Result<(), RaftError> {
        let progress = self.progress.get_mut(&from).expect("peer tracked");
        progress.recent_active = true;
        progress.round_acked = progress.round_acked.max(round.min(self.round));
        // A lost probe or full window would otherwise stall this follower.
        progress.probe_sent = false;
        if progress.state == ProgressState::Replicate && progress.is_paused() {
            progress.inflight.pop_front();
        }
        if progress.match_index < self.log.last_index() {
            // Even if empty: a pipelining leader's next index is optimistic,
            // so after lost appends it may have "nothing to send" while the
            // follower lacks entries. The empty append's consistency check
            // finds the gap (the follower rejects, the leader probes back),
            // as a retry of §5.3 that needs no new write to trigger it.
            self.send_append(from, true)?;
        }
        self.confirm_reads();
        Ok(())
    }
}
