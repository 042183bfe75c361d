//! [`Raft`]: one node's consensus state machine.
//!
//! Pure logic in the style of etcd's raft and tikv's raft-rs: the node feeds
//! it `tick`, `step` (a message from a peer), `propose`, `read_index` and
//! `transfer_leader`; it answers through a [`Ready`] (what to persist, send,
//! apply and serve) and learns through `advance` that the node did it. It
//! owns no clock, socket, thread or file; all randomness comes from the
//! configured seed, so a simulation replays exactly.
//!
//! This file holds the state, the roles and the node-facing calls; `step.rs`
//! the message handlers; `leader.rs` replication, commit and reads;
//! `reconfig.rs` membership changes.

use std::collections::{BTreeMap, VecDeque};

use super::config::Config;
use super::failure::Failure;
use super::log::RaftLog;
use super::membership::{Membership, MembershipError};
use super::membership_log::MembershipLog;
use super::message::{Body, Entry, EntryKind, HardState, Index, Message, NodeId, Term};
use super::progress::{is_lost, is_majority, Progress};
use super::ready::{RaftError, ReadState, Ready};
use super::store::LogStore;

/// The next number of the splitmix64 sequence at `state`: small, fast and
/// good enough for timeouts and test schedules (not for secrets).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix64(*state)
}

/// splitmix64's output function (Steele, Lea, Flood: "Fast splittable
/// pseudorandom number generators", OOPSLA 2014): a bijection on `u64`.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win, before bumping its term (thesis §9.6).
    PreCandidate,
    /// Stands for election (§5.2).
    Candidate,
    /// Leads its term.
    Leader,
}

/// A read waiting for a heartbeat round to confirm leadership.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingRead {
    /// Who asked (this node or a follower).
    pub(super) from: NodeId,
    /// Their request id.
    pub(super) ctx: u64,
    /// The commit index when asked: the read index.
    pub(super) index: Index,
    /// The heartbeat round whose majority answer confirms it.
    pub(super) round: u64,
}

/// One node's Raft state machine over a log store `S`.
#[derive(Debug)]
pub struct Raft<S> {
    /// Settings.
    pub(super) config: Config,
    /// The latest term seen.
    pub(super) term: Term,
    /// Whom this node voted for in `term` (0: nobody).
    pub(super) vote: NodeId,
    /// The current role.
    pub(super) role: Role,
    /// The leader of `term` if known (0: unknown).
    pub(super) leader: NodeId,
    /// The commit index the leader's latest heartbeat said this node holds,
    /// when it lies past the end of this node's log (see
    /// [`Raft::lost_log`]); cleared by a heartbeat that does not, and when
    /// the leader changes.
    pub(super) lost_log: Option<Index>,
    /// The highest commit index the current leader has sent (0: none, or
    /// this node leads); unlike `log.committed()`, not capped by this
    /// node's log, so it shows how far a follower's log trails.
    pub(super) leader_commit: Index,
    /// The log.
    pub(super) log: RaftLog<S>,
    /// The memberships in the log; the newest is in force.
    pub(super) membership: MembershipLog,
    /// The membership last handed out in a `Ready`.
    prev_membership: Membership,
    /// Per member (self included) replication progress; leader only.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// Votes received in the current (pre-)election.
    pub(super) votes: BTreeMap<NodeId, bool>,
    /// Ticks since the last election-timer reset.
    pub(super) election_elapsed: u32,
    /// Ticks since the last heartbeat (leader).
    pub(super) heartbeat_elapsed: u32,
    /// This round's randomised election timeout.
    pub(super) election_timeout: u32,
    /// The splitmix64 state that draws timeouts.
    rng: u64,
    /// Messages to send with the next `Ready`, at once (a leader's).
    pub(super) messages: Vec<Message>,
    /// Messages to send with the next `Ready` once it is persisted.
    pub(super) persisted_messages: Vec<Message>,
    /// The hard state last handed out.
    prev_hard_state: HardState,
    /// The member leadership is being handed to (0: none).
    pub(super) transferee: NodeId,
    /// The last heartbeat round broadcast in this term.
    pub(super) round: u64,
    /// A heartbeat round is needed to confirm queued reads.
    pub(super) round_due: bool,
    /// Reads waiting for their heartbeat round, in round order (leader).
    pub(super) pending_reads: VecDeque<PendingRead>,
    /// Reads waiting for the first commit of this term (leader).
    pub(super) reads_before_commit: Vec<(NodeId, u64)>,
    /// Reads this node forwarded to the leader: request id to the tick by
    /// which the answer must arrive (the request or answer may be lost).
    pub(super) forwarded_reads: BTreeMap<u64, u64>,
    /// Ticks since start; the clock of `forwarded_reads`.
    pub(super) ticks: u64,
    /// Confirmed reads waiting to be served.
    pub(super) reads_ready: Vec<ReadState>,
    /// Reads that failed.
    pub(super) reads_failed: Vec<u64>,
}

impl<S: LogStore> Raft<S> {
    /// A node over `store`, recovering term, vote and commit from it.
    pub fn new(config: Config, store: S) -> Result<Self, RaftError> {
        config.validate()?;
        let (hard_state, snapshot) = store.initial_state()?;
        let applied = config.applied.max(snapshot.index);
        let committed = hard_state.commit.max(applied);
        let log = RaftLog::new(store, committed, applied)?;
        let membership = recover_membership(&log, applied, config.membership.clone())?;
        let mut raft = Raft {
            prev_membership: config.membership.clone(),
            membership,
            rng: config.seed ^ 0x9e37_79b9_7f4a_7c15,
            config,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: 0,
            lost_log: None,
            leader_commit: 0,
            log,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: 0,
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            prev_hard_state: hard_state,
            transferee: 0,
            round: 0,
            round_due: false,
            pending_reads: VecDeque::new(),
            reads_before_commit: Vec::new(),
            forwarded_reads: BTreeMap::new(),
            ticks: 0,
            reads_ready: Vec::new(),
            reads_failed: Vec::new(),
        };
        raft.reset_election_timer();
        Ok(raft)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this node believes in.
    pub fn leader(&self) -> Option<NodeId> {
        (self.leader != 0).then_some(self.leader)
    }

    /// Whether this node's log lost entries it acknowledged: the index the
    /// leader's latest heartbeat said it holds, past the end of its log.
    /// The leader caps a heartbeat's commit index at what the follower
    /// acknowledged holding (its match index, 0 for a leader new to the
    /// term), and a follower acknowledges only what is durable and never
    /// truncates below it within the leader's term; past the end, then, the
    /// log was lost (a wiped data directory, or one restored from an older
    /// copy) and the votes and acknowledgements given with it are
    /// forgotten. etcd's raft panics here ("tocommit is out of range");
    /// this node keeps running and reports it, since the leader, which
    /// counts the entries as held, will not send them again: the member
    /// must be replaced.
    pub fn lost_log(&self) -> Option<Index> {
        self.lost_log
    }

    /// The cluster's commit index as far as this node knows: the highest
    /// the current leader has sent it (in appends, uncapped; heartbeats
    /// carry at most what this node holds), or its own commit index when
    /// higher (on the leader, always). A follower whose log trails reports
    /// the gap here, where `committed()` cannot exceed its log.
    pub fn leader_commit(&self) -> Index {
        self.leader_commit.max(self.log.committed())
    }

    /// The commit index.
    pub fn committed(&self) -> Index {
        self.log.committed()
    }

    /// The highest index handed out to apply.
    pub fn applied(&self) -> Index {
        self.log.applied()
    }

    /// The last log index.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// The log, for inspection.
    pub fn log(&self) -> &RaftLog<S> {
        &self.log
    }

    /// The store, for the node to persist into between `ready` and `advance`.
    pub fn store_mut(&mut self) -> &mut S {
        self.log.store_mut()
    }

    /// On the leader, each member's match index (empty on other roles).
    pub fn match_indexes(&self) -> Vec<(NodeId, Index)> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        self.progress.iter().map(|(id, progress)| (*id, progress.match_index)).collect()
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The members (voters and learners) other than this node.
    pub(super) fn peers(&self) -> Vec<NodeId> {
        self.membership.current().ids().filter(|&id| id != self.config.id).collect()
    }

    /// The voters other than this node.
    pub(super) fn voter_peers(&self) -> Vec<NodeId> {
        self.membership.current().voters().filter(|&id| id != self.config.id).collect()
    }

    /// Whether `id` is a voter in the membership in force.
    pub(super) fn is_voter(&self, id: NodeId) -> bool {
        self.membership.current().is_voter(id)
    }

    /// The membership in force (the newest in the log).
    pub fn membership(&self) -> &Membership {
        self.membership.current()
    }

    /// One unit of time passed.
    pub fn tick(&mut self) -> Result<(), RaftError> {
        self.ticks += 1;
        self.expire_forwarded_reads();
        if self.role == Role::Leader {
            return self.tick_leader();
        }
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            if !self.may_campaign() {
                self.reset_election_timer();
                return Ok(());
            }
            return self.campaign(self.config.pre_vote, false);
        }
        Ok(())
    }

    /// Whether this node may stand for election: if it is a voter in the
    /// newest membership it knows, or if that membership is not committed
    /// yet and the committed one makes it a voter (a leader that removed
    /// itself may still be needed to commit its removal, thesis §4.2.2; it
    /// then counts only the new voters' votes). A learner, a joining node
    /// and a node whose removal it knows committed never campaign.
    pub(super) fn may_campaign(&self) -> bool {
        let own = self.config.id;
        self.is_voter(own)
            || (self.membership.has_uncommitted(self.log.committed())
                && self.membership.committed().is_voter(own))
    }

    /// Appends a command to the log; it is committed (or lost) later.
    /// Returns its index and term: the command took effect if the entry
    /// applied at that index has that term.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(Index, Term), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader() });
        }
        if self.transferee != 0 {
            return Err(RaftError::Transferring);
        }
        if data.len() > self.config.message_bytes_max {
            return Err(RaftError::Invalid(format!(
                "command of {} bytes exceeds the limit of {}",
                data.len(),
                self.config.message_bytes_max
            )));
        }
        let uncommitted = self.log.last_index() - self.log.committed();
        if uncommitted >= self.config.uncommitted_entries_max as u64 {
            return Err(RaftError::Busy);
        }
        let index = self.log.last_index() + 1;
        self.append_entries(vec![Entry { term: self.term, index, kind: EntryKind::Normal, data }])?;
        self.broadcast_append(false)?;
        Ok((index, self.term))
    }

    /// Asks for a linearizable read with request id `ctx` (unique on this
    /// node). It comes back in `Ready::reads` or `Ready::reads_failed`.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), RaftError> {
        let pending = self.pending_reads.len()
            + self.reads_before_commit.len()
            + self.forwarded_reads.len()
            + self.reads_ready.len();
        if pending >= self.config.pending_reads_max {
            return Err(RaftError::Busy);
        }
        match self.role {
            Role::Leader => {
                self.leader_read(self.config.id, ctx);
                Ok(())
            }
            _ if self.leader != 0 => {
                if self.forwarded_reads.contains_key(&ctx) {
                    return Err(RaftError::Invalid(format!("read id {ctx} is already pending")));
                }
                let due = self.ticks + u64::from(self.config.election_ticks);
                self.forwarded_reads.insert(ctx, due);
                self.send(self.leader, Body::ReadIndex { ctx });
                Ok(())
            }
            _ => Err(RaftError::NotLeader { leader: None }),
        }
    }

    /// Hands leadership to voter `to` (0: the most caught-up other voter)
    /// once its log has caught up (thesis §3.10). Proposals are refused
    /// meanwhile; the attempt lapses after an election timeout. Returns the
    /// voter chosen.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<NodeId, RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader() });
        }
        let to = if to == 0 { self.most_caught_up_voter() } else { to };
        if to == self.config.id || !self.is_voter(to) {
            return Err(RaftError::Membership(match self.membership.current().contains(to) {
                true => MembershipError::Invalid(format!("{to} is not another voter")),
                false => MembershipError::UnknownMember(to),
            }));
        }
        self.transferee = to;
        self.election_elapsed = 0;
        if self.progress.get(&to).is_some_and(|p| p.match_index == self.log.last_index()) {
            self.send(to, Body::TimeoutNow);
        } else {
            self.send_append(to, true)?;
        }
        Ok(to)
    }

    /// The node could not deliver a snapshot to `to`: probe again.
    pub fn report_snapshot_failed(&mut self, to: NodeId) {
        if let Some(progress) = self.progress.get_mut(&to) {
            progress.become_probe();
        }
    }

    /// Queues a message from this node at the current term.
    pub(super) fn send(&mut self, to: NodeId, body: Body) {
        self.send_at(to, self.term, body);
    }

    /// Queues a message at a given term (vote traffic). A leader's may
    /// leave before the `Ready` they come with is persisted (thesis
    /// §10.2.1): it counts itself towards a quorum only for what `advance`
    /// reports persisted, and its messages never grant a vote or acknowledge
    /// an entry. Anyone else's may not, so they wait; so do a leader's while
    /// its term and vote are not yet handed out to be persisted (a lone
    /// voter elects itself within one `Ready`; were its appends to leave
    /// first, a crash could bring it back in the old term to win the same
    /// term again and send other entries under it). Every `Ready`'s hard
    /// state is persisted before the next is taken (a `background` one only
    /// comes with term and vote unchanged), so what `prev_hard_state` holds
    /// is durable when the messages queued now leave.
    pub(super) fn send_at(&mut self, to: NodeId, term: Term, body: Body) {
        let message = Message { from: self.config.id, to, term, body };
        let durable = &self.prev_hard_state;
        let term_durable = durable.term == self.term && durable.vote == self.vote;
        if self.role == Role::Leader && term_durable {
            self.messages.push(message);
        } else {
            self.persisted_messages.push(message);
        }
    }

    /// A fresh random timeout in `election_ticks..2 * election_ticks`.
    pub(super) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let z = splitmix64(&mut self.rng);
        let spread = u64::from(self.config.election_ticks);
        let extra = u32::try_from(z % spread).expect("below a u32");
        self.election_timeout = self.config.election_ticks + extra;
    }

    /// Follows `leader` (0: unknown) in `term` (which may be the current).
    pub(super) fn become_follower(&mut self, term: Term, leader: NodeId) {
        if term > self.term {
            self.term = term;
            self.vote = 0;
        }
        self.role = Role::Follower;
        self.set_leader(leader);
        self.reset_election_timer();
        self.end_leadership();
    }

    /// Fails forwarded reads unanswered for an election timeout: their
    /// request or answer was lost, and the caller should retry.
    fn expire_forwarded_reads(&mut self) {
        let now = self.ticks;
        let expired: Vec<u64> = self
            .forwarded_reads
            .iter()
            .filter(|(_, &due)| due <= now)
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in expired {
            self.forwarded_reads.remove(&ctx);
            self.reads_failed.push(ctx);
        }
    }

    /// Records the leader; reads forwarded to another one are lost.
    pub(super) fn set_leader(&mut self, leader: NodeId) {
        if leader != self.leader {
            self.lost_log = None;
            self.leader_commit = 0;
            let lost = std::mem::take(&mut self.forwarded_reads);
            self.reads_failed.extend(lost.into_keys());
            self.leader = leader;
        }
    }

    /// Clears leader-only state; this node's unconfirmed reads fail.
    fn end_leadership(&mut self) {
        let own = self.config.id;
        let reads = std::mem::take(&mut self.pending_reads);
        let own_reads = reads.iter().filter(|read| read.from == own).map(|read| read.ctx);
        self.reads_failed.extend(own_reads);
        let waiting = std::mem::take(&mut self.reads_before_commit);
        self.reads_failed.extend(waiting.iter().filter(|(from, _)| *from == own).map(|r| r.1));
        self.progress.clear();
        self.transferee = 0;
        self.round_due = false;
    }

    /// Starts a (pre-)election; `transfer` bypasses voters' leader leases.
    /// See `may_campaign` for who may.
    pub(super) fn campaign(&mut self, pre: bool, transfer: bool) -> Result<(), RaftError> {
        if !self.may_campaign() {
            return Ok(());
        }
        let vote_term = if pre {
            self.role = Role::PreCandidate;
            self.set_leader(0);
            self.term + 1
        } else {
            self.term += 1;
            self.vote = self.config.id;
            self.role = Role::Candidate;
            self.set_leader(0);
            self.term
        };
        self.end_leadership();
        self.reset_election_timer();
        self.votes.clear();
        self.votes.insert(self.config.id, true);
        if self.election_won() {
            return self.win(pre);
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.voter_peers() {
            let body = Body::Vote { pre, last_index, last_term, transfer };
            self.send_at(peer, vote_term, body);
        }
        Ok(())
    }

    /// How many voters' answers in `votes` are `granted`.
    fn voters_answering(&self, granted: bool) -> usize {
        let membership = self.membership.current();
        self.votes.iter().filter(|(&id, &g)| g == granted && membership.is_voter(id)).count()
    }

    /// Whether the votes so far make a majority of the voters.
    pub(super) fn election_won(&self) -> bool {
        is_majority(self.voters_answering(true), self.membership.current().voter_count())
    }

    /// Whether the votes so far rule a majority out.
    pub(super) fn election_lost(&self) -> bool {
        is_lost(self.voters_answering(false), self.membership.current().voter_count())
    }

    /// A pre-election won leads to the election; an election to leadership.
    pub(super) fn win(&mut self, pre: bool) -> Result<(), RaftError> {
        if pre {
            self.campaign(false, false)
        } else {
            self.become_leader()
        }
    }

    /// Leads the current term: fresh progress for everyone, then a no-op
    /// entry so that earlier entries can commit (§5.4.2).
    fn become_leader(&mut self) -> Result<(), RaftError> {
        self.role = Role::Leader;
        self.set_leader(self.config.id);
        self.end_leadership();
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.round = 0;
        let next = self.log.last_index() + 1;
        let mut own = Progress::new(next, self.config.inflight_max);
        own.match_index = self.log.persisted_index();
        own.recent_active = true;
        own.become_replicate();
        self.progress.insert(self.config.id, own);
        self.sync_progress();
        let index = self.log.last_index() + 1;
        let noop = Entry { term: self.term, index, kind: EntryKind::Noop, data: Vec::new() };
        self.append_entries(vec![noop])?;
        self.broadcast_append(true)
    }

    /// The hard state as it stands.
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed() }
    }

    /// Whether `ready` would return anything.
    pub fn has_ready(&self) -> bool {
        !self.messages.is_empty()
            || !self.persisted_messages.is_empty()
            || self.round_due
            || self.hard_state() != self.prev_hard_state
            || self.log.unstable_snapshot().is_some()
            || !self.log.unstable_entries().is_empty()
            || self.appliable() > self.log.applied()
            || !self.reads_failed.is_empty()
            || self.reads_ready.iter().any(|read| read.index <= self.log.applied())
            || *self.membership.current() != self.prev_membership
    }

    /// The work to do now (see [`Ready`] for the order). Committed entries
    /// handed out here count as applied.
    pub fn ready(&mut self) -> Result<Ready, RaftError> {
        assert!(self.log.committed() <= self.log.last_index(), "commit past the last index");
        if self.round_due {
            self.broadcast_heartbeat();
        }
        let background = self.background();
        let committed = self.log.next_to_apply(self.appliable(), self.config.apply_bytes_max)?;
        if let Some(last) = committed.last() {
            self.log.applied_to(last.index);
        }
        let applied = self.log.applied();
        let (reads, waiting) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|read| read.index <= applied);
        self.reads_ready = waiting;
        let hard_state = self.hard_state();
        let changed = hard_state != self.prev_hard_state;
        self.prev_hard_state = hard_state;
        self.membership.commit_to(self.log.committed());
        let membership = (*self.membership.current() != self.prev_membership).then(|| {
            self.prev_membership = self.membership.current().clone();
            self.prev_membership.clone()
        });
        Ok(Ready {
            background,
            hard_state: changed.then_some(hard_state),
            snapshot: self.log.unstable_snapshot(),
            entries: self.log.unstable_entries().to_vec(),
            messages: std::mem::take(&mut self.messages),
            persisted_messages: std::mem::take(&mut self.persisted_messages),
            committed,
            reads,
            reads_failed: std::mem::take(&mut self.reads_failed),
            membership,
        })
    }

    /// Whether the next `Ready`'s entries may be synced in the background:
    /// a steady leader's, with nothing in it that must be durable first.
    fn background(&self) -> bool {
        self.config.background_persist
            && self.role == Role::Leader
            && self.persisted_messages.is_empty()
            && self.log.unstable_snapshot().is_none()
            && (self.term, self.vote) == (self.prev_hard_state.term, self.prev_hard_state.vote)
    }

    /// The last index that may be handed out to apply: the commit index,
    /// but in background mode no further than what is reported synced.
    fn appliable(&self) -> Index {
        let committed = self.log.committed();
        if self.background() {
            committed.min(self.log.persisted_index())
        } else {
            committed
        }
    }

    /// The node wrote (`ready.background`) or persisted, sent and applied
    /// `ready`. A `Ready` persisted in full also makes every entry written
    /// in the background before it durable.
    pub fn advance(&mut self, ready: &Ready) -> Result<(), RaftError> {
        if let Some(snapshot) = ready.snapshot {
            self.log.stable_snapshot_to(snapshot.index);
        }
        if ready.background {
            if let Some(last) = ready.entries.last() {
                self.log.in_progress_to(last.index);
            }
            return Ok(());
        }
        let last_written = ready.entries.last().map(|entry| entry.index);
        if let Some(last) = last_written.max(self.log.last_in_progress()) {
            let term = self.log.term(last)?;
            self.log.stable_to(last, term);
        }
        self.count_own_persisted()
    }

    /// The node synced its log up to `index` (of `term`), written in the
    /// background; a report for entries overwritten meanwhile is ignored.
    /// A leader counts them towards the commit at once.
    pub fn persisted(&mut self, index: Index, term: Term) -> Result<(), RaftError> {
        self.log.stable_to(index, term);
        self.count_own_persisted()
    }

    /// A leader's own progress is what it persisted; commits what that
    /// makes a majority.
    fn count_own_persisted(&mut self) -> Result<(), RaftError> {
        if self.role == Role::Leader {
            let persisted = self.log.persisted_index();
            if let Some(own) = self.progress.get_mut(&self.config.id) {
                own.match_index = own.match_index.max(persisted);
                own.next_index = own.next_index.max(own.match_index + 1);
            }
            self.commit_and_broadcast()?;
        }
        Ok(())
    }
}

/// The membership log at start: `base` is in force as of `applied`; every
/// configuration entry after it in the store is too, newest last.
fn recover_membership<S: LogStore>(
    log: &RaftLog<S>,
    applied: Index,
    base: Membership,
) -> Result<MembershipLog, RaftError> {
    let mut memberships = MembershipLog::new(applied, base);
    let (mut next, last) = (applied + 1, log.last_index());
    while next <= last {
        let entries = log.entries(next, last + 1, 1 << 20)?;
        let Some(end) = entries.last().map(|entry| entry.index) else { break };
        for entry in entries.iter().filter(|entry| entry.kind == EntryKind::Config) {
            let membership = Membership::decode(&entry.data).map_err(|why| {
                RaftError::Fatal(Failure::invariant(format!(
                    "configuration entry {} in the log: {why}",
                    entry.index
                )))
            })?;
            memberships.append(entry.index, membership);
        }
        next = end + 1;
    }
    memberships.commit_to(log.committed());
    Ok(memberships)
}
