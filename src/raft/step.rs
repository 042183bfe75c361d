//! `Raft::step`: one message from a peer. Validation first, then term rules
//! (§5.1; thesis §9.6 pre-vote, §4.2.3 leases), then votes (§5.2, §5.4.1), then
//! what each role does with the rest.

use super::core::{Raft, Role};
use super::membership::Membership;
use super::message::{Body, Entry, EntryKind, Index, Message, NodeId, Position, Term};
use super::ready::{RaftError, ReadState};
use super::store::{LogStore, StoreError};

impl<S: LogStore> Raft<S> {
    /// Handles a message from a peer. A message not addressed to this node,
    /// from itself or from id 0, or malformed, is refused with `Invalid` and
    /// changes nothing; no message can make this panic. Messages from
    /// servers outside the membership this node knows are taken as any
    /// other (a leader may already know a newer membership, and a joining
    /// node knows none); their answers to a leader are ignored, and their
    /// votes count only if they are voters.
    pub fn step(&mut self, message: Message) -> Result<(), RaftError> {
        if message.to != self.config.id || message.from == self.config.id || message.from == 0 {
            return Err(RaftError::Invalid(format!(
                "message from {} to {} is not for node {}",
                message.from, message.to, self.config.id
            )));
        }
        validate(&message)?;
        if message.term > self.term {
            if !self.newer_term(&message) {
                return Ok(());
            }
        } else if message.term < self.term {
            self.older_term(&message);
            return Ok(());
        }
        // Election safety (§5.2): one leader per term. A second one is a bug
        // somewhere; its message is refused, and this node keeps following
        // the first.
        let leads = matches!(
            message.body,
            Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. }
        );
        if leads && self.leader != 0 && self.leader != message.from {
            return Err(RaftError::Invalid(format!(
                "node {} acts as leader of term {}, which node {} leads",
                message.from, self.term, self.leader
            )));
        }
        match (&message.body, self.role) {
            (Body::Vote { .. }, _) => {
                self.vote_asked(&message);
                Ok(())
            }
            (_, Role::Leader) => self.step_leader(message),
            (_, Role::Candidate | Role::PreCandidate) => self.step_candidate(message),
            (_, Role::Follower) => self.step_follower(message),
        }
    }

    /// A message from a newer term. Returns whether to go on handling it.
    fn newer_term(&mut self, message: &Message) -> bool {
        match message.body {
            Body::Vote { pre, transfer, .. } => {
                // A follower that heard from its leader within the minimum
                // election timeout ignores would-be disruptors (thesis
                // §4.2.3); a transfer overrides that.
                let in_lease = self.config.check_quorum
                    && self.leader != 0
                    && self.election_elapsed < self.config.election_ticks;
                if in_lease && !transfer {
                    return false;
                }
                if !pre {
                    self.become_follower(message.term, 0);
                }
                true
            }
            // A granted pre-vote carries the term the candidate will stand
            // in; only the real election moves terms.
            Body::VoteResponse { pre: true, granted: true } => true,
            Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. } => {
                self.become_follower(message.term, message.from);
                true
            }
            _ => {
                self.become_follower(message.term, 0);
                true
            }
        }
    }

    /// A message from an older term: tell a stale leader or pre-candidate
    /// the current term, ignore the rest.
    fn older_term(&mut self, message: &Message) {
        match message.body {
            Body::Append { .. } | Body::Heartbeat { .. } => {
                let body =
                    Body::AppendResponse { reject: true, index: 0, hint_index: 0, hint_term: 0 };
                self.send(message.from, body);
            }
            Body::Vote { pre: true, .. } => {
                self.send(message.from, Body::VoteResponse { pre: true, granted: false });
            }
            _ => {}
        }
    }

    /// Grants a vote if this node has not voted otherwise in the term and
    /// the candidate's log is at least as up to date (§5.2, §5.4.1).
    fn vote_asked(&mut self, message: &Message) {
        let Body::Vote { pre, last_index, last_term, .. } = message.body else { return };
        let can_vote = self.vote == message.from
            || (self.vote == 0 && self.leader == 0)
            || (pre && message.term > self.term);
        if can_vote && self.log.is_up_to_date(last_index, last_term) {
            self.send_at(message.from, message.term, Body::VoteResponse { pre, granted: true });
            if !pre {
                self.reset_election_timer();
                self.vote = message.from;
            }
        } else {
            self.send(message.from, Body::VoteResponse { pre, granted: false });
        }
    }

    /// A (pre-)candidate counts votes; a leader's message makes it follow.
    fn step_candidate(&mut self, message: Message) -> Result<(), RaftError> {
        match message.body {
            Body::VoteResponse { pre, granted } => {
                if pre != (self.role == Role::PreCandidate) {
                    return Ok(()); // an answer to an earlier phase
                }
                self.votes.entry(message.from).or_insert(granted);
                if self.election_won() {
                    return self.win(pre);
                }
                if self.election_lost() {
                    let term = self.term;
                    self.become_follower(term, 0);
                }
                Ok(())
            }
            Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. } => {
                let term = self.term;
                self.become_follower(term, message.from);
                self.step_follower(message)
            }
            _ => Ok(()),
        }
    }

    /// A follower takes entries, commits, snapshots and read answers.
    fn step_follower(&mut self, message: Message) -> Result<(), RaftError> {
        let from = message.from;
        match message.body {
            Body::Append { commit, .. } => {
                self.heard_from_leader(from);
                self.leader_commit = self.leader_commit.max(commit);
                self.append(message)
            }
            Body::Heartbeat { commit, round } => {
                self.heard_from_leader(from);
                self.leader_commit = self.leader_commit.max(commit);
                self.lost_log = (commit > self.log.last_index()).then_some(commit);
                self.log.commit_to(commit.min(self.log.last_index()));
                self.send(from, Body::HeartbeatResponse { round });
                Ok(())
            }
            Body::Snapshot { meta, membership } => {
                self.heard_from_leader(from);
                self.install_snapshot(from, meta, membership);
                Ok(())
            }
            Body::TimeoutNow => self.campaign(false, true),
            Body::ReadIndexResponse { ctx, index } => {
                if self.forwarded_reads.remove(&ctx).is_some() {
                    if index == 0 {
                        self.reads_failed.push(ctx);
                    } else {
                        self.reads_ready.push(ReadState { ctx, index });
                    }
                }
                Ok(())
            }
            Body::ReadIndex { ctx } => {
                self.send(from, Body::ReadIndexResponse { ctx, index: 0 });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The leader of this term spoke: no election for a while.
    fn heard_from_leader(&mut self, leader: NodeId) {
        self.election_elapsed = 0;
        self.set_leader(leader);
    }

    /// AppendEntries receiver rules (§5.3), with a conflict hint on
    /// rejection.
    fn append(&mut self, message: Message) -> Result<(), RaftError> {
        let from = message.from;
        let Body::Append { prev_index, prev_term, entries, commit } = message.body else {
            return Ok(());
        };
        let committed = self.log.committed();
        if prev_index < committed {
            self.send(from, Body::accepted(committed));
            return Ok(());
        }
        if !self.log.matches(prev_index, prev_term)? {
            let hint = prev_index.min(self.log.last_index());
            let hint_index = self.log.find_conflict_by_term(hint, prev_term);
            let hint_term = match self.log.term(hint_index) {
                Ok(term) => term,
                Err(StoreError::Compacted) => 0,
                Err(error) => return Err(error.into()),
            };
            let body =
                Body::AppendResponse { reject: true, index: prev_index, hint_index, hint_term };
            self.send(from, body);
            return Ok(());
        }
        let last_new = prev_index + entries.len() as u64;
        let held = self.log.matching_prefix(&entries)?;
        if let Some(conflict) = entries.get(held) {
            if conflict.index <= committed {
                return Err(RaftError::Invalid(format!(
                    "peer {from} sent an entry {} that conflicts with the committed log",
                    conflict.index
                )));
            }
            // Entries already held stay; from the first conflict on, the
            // leader's replace ours (§5.3).
            let mut entries = entries;
            self.append_entries(entries.split_off(held))?;
        }
        self.log.commit_to(commit.min(last_new));
        self.send(from, Body::accepted(last_new));
        Ok(())
    }

    /// Takes the leader's snapshot unless the log already covers it.
    fn install_snapshot(&mut self, from: NodeId, meta: Position, membership: Membership) {
        let committed = self.log.committed();
        let index = if meta.index <= committed {
            committed
        } else if meta.index <= self.log.last_index() && self.log.term(meta.index) == Ok(meta.term)
        {
            self.log.commit_to(meta.index);
            meta.index
        } else {
            self.log.restore(meta);
            self.membership.restore(meta.index, membership);
            meta.index
        };
        self.send(from, Body::accepted(index));
    }
}

/// Indices at or above this come only from a broken or hostile peer (a log
/// of 2^62 entries is out of reach), and refusing them keeps index
/// arithmetic free of overflow.
pub(super) const INDEX_MAX: Index = 1 << 62;

/// Terms at or above this come only from a broken or hostile peer (an
/// election a nanosecond for a century is below 2^62), and refusing them
/// keeps `term + 1` free of overflow.
pub(super) const TERM_MAX: Term = 1 << 62;

/// Refuses a message whose fields no correct peer sends, before anything
/// (the term included) changes.
fn validate(message: &Message) -> Result<(), RaftError> {
    if message.term >= TERM_MAX {
        // A term this node adopted could not be followed by another.
        return Err(RaftError::Invalid(format!(
            "peer {} sent term {}",
            message.from, message.term
        )));
    }
    match &message.body {
        Body::Append { prev_index, entries, .. } => {
            check_entries(*prev_index, message.term, entries)
        }
        Body::Snapshot { meta, .. } if meta.term > message.term || meta.index >= INDEX_MAX => {
            Err(RaftError::Invalid(format!("peer {} sent snapshot {meta:?}", message.from)))
        }
        _ => Ok(()),
    }
}

/// A leader's entries follow `prev_index` one by one, none from a later
/// term than the message's.
fn check_entries(prev_index: Index, term: Term, entries: &[Entry]) -> Result<(), RaftError> {
    if prev_index >= INDEX_MAX {
        return Err(RaftError::Invalid(format!("append after index {prev_index}")));
    }
    for (offset, entry) in entries.iter().enumerate() {
        if entry.index != prev_index + 1 + offset as u64 || entry.term > term || entry.term == 0 {
            return Err(RaftError::Invalid(format!(
                "append after {prev_index} holds entry {} of term {} out of place",
                entry.index, entry.term
            )));
        }
        if entry.kind == EntryKind::Config {
            Membership::decode(&entry.data).map_err(|why| {
                RaftError::Invalid(format!("configuration entry {}: {why}", entry.index))
            })?;
        }
    }
    Ok(())
}
