//! One simulated node: a [`Raft`] over an in-memory store, the "disk" that
//! survives its crashes, and a state machine that is a running hash of the
//! entries applied.
//!
//! The state machine is as durable as its last snapshot: a crash rolls it
//! back there and Raft re-applies the committed entries after it, as the
//! real node replays the WAL past the state file's applied index.
//!
//! With background persistence (by seed, as the real node runs it), a
//! leader's entries reach the store at once but the disk only 0-7 drives of
//! the node later (by seed), or before a `Ready` that must be persisted in
//! full; a crash in between loses them.

use super::violation::Violation;
use std::collections::BTreeMap;

use super::super::config::Config;
use super::super::core::{Raft, Role};
use super::super::membership::Membership;
use super::super::message::{Body, Entry, EntryKind, HardState, Index, NodeId, Position, Term};
use super::super::ready::Ready;
use super::super::store::{LogStore, MemStore};
use super::checker::{data_hash, Checker};
use super::network::{Envelope, Network, SnapshotState};

/// Most `Ready` rounds handled after one input (each makes progress, so a
/// loop that hits this is a bug).
const READY_ROUNDS_MAX: usize = 64;

/// A proposal whose outcome the client is waiting for.
#[derive(Debug, Clone, Copy)]
pub struct PendingProposal {
    /// The term the entry was proposed in.
    pub term: Term,
    /// The client's id for it (the entry's payload).
    pub id: u64,
}

/// One node of the simulated cluster.
#[derive(Debug)]
pub struct SimNode {
    /// Its id.
    pub id: NodeId,
    /// The running node; None while crashed.
    pub raft: Option<Raft<MemStore>>,
    /// What survives a crash.
    pub disk: MemStore,
    /// The state machine: the index applied up to and its running hash.
    pub state: (Index, u64),
    /// The membership the state machine has applied (what the real node
    /// keeps in its state file).
    pub applied_membership: Membership,
    /// The state at the disk's snapshot.
    pub snapshot: SnapshotState,
    /// A snapshot received from the leader, not yet installed.
    pub incoming: Option<SnapshotState>,
    /// Proposals made here, by index.
    pub proposals: BTreeMap<Index, PendingProposal>,
    /// Reads asked here, by request id: the commit index they must see.
    pub reads: BTreeMap<u64, Index>,
    /// The next read request id.
    pub next_read: u64,
    /// The highest commit index seen in this run of the node.
    pub commit_seen: Index,
    /// How many times it was started (varies its timeout seed).
    pub starts: u64,
    /// Entries written in the background, not yet on `disk`.
    pub unsynced: Vec<Entry>,
    /// Drives of the node that pass before a background write reaches the
    /// disk, and how many have passed since the oldest unsynced one.
    pub sync_lag: (u64, u64),
}

/// What a node reports back to the cluster after handling its readies.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Proposals applied with the term they were proposed in: acknowledged.
    pub acked: Vec<(Index, u64)>,
    /// Reads served.
    pub reads_served: u64,
}

impl SimNode {
    /// A node with an empty disk whose cluster starts as `membership`
    /// (empty for a node joining an existing cluster), started.
    pub fn new(id: NodeId, membership: Membership, seed: u64) -> Self {
        let disk = MemStore { snapshot_membership: membership.clone(), ..MemStore::default() };
        let mut node = SimNode {
            id,
            raft: None,
            disk,
            state: (0, 0),
            applied_membership: membership.clone(),
            snapshot: SnapshotState { meta: Default::default(), state_hash: 0, membership },
            incoming: None,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            commit_seen: 0,
            starts: 0,
            unsynced: Vec::new(),
            sync_lag: ((seed / 16) % 8, 0),
        };
        node.start(seed);
        node
    }

    /// Starts the node from its disk: the state machine from the snapshot.
    pub fn start(&mut self, seed: u64) {
        self.starts += 1;
        let mut config = Config::with_membership(self.id, self.snapshot.membership.clone());
        config.seed = seed ^ self.id.rotate_left(32) ^ self.starts.rotate_left(48);
        config.applied = self.snapshot.meta.index;
        // 1 to 8 appends in flight, by seed (the node runs with 2).
        config.inflight_max = usize::try_from(1 + seed % 8).expect("at most 8");
        config.message_bytes_max = 256;
        // The leader syncs in the background by seed (the node always does).
        config.background_persist = (seed / 8) % 2 == 0;
        self.state = (self.snapshot.meta.index, self.snapshot.state_hash);
        self.applied_membership = self.snapshot.membership.clone();
        self.commit_seen = self.disk.hard_state.commit;
        let raft = Raft::new(config, self.disk.clone()).expect("a valid configuration");
        self.raft = Some(raft);
    }

    /// Loses everything not on disk.
    pub fn crash(&mut self) {
        self.raft = None;
        self.unsynced.clear();
        self.sync_lag.1 = 0;
        self.incoming = None;
        self.proposals.clear();
        self.reads.clear();
    }

    /// Handles every `Ready` until there is none, checking as it goes.
    pub fn drive(
        &mut self,
        network: &mut Network,
        checker: &mut Checker,
    ) -> Result<Outcome, Violation> {
        let mut outcome = Outcome::default();
        let (lag, waited) = self.sync_lag;
        if !self.unsynced.is_empty() && waited < lag {
            self.sync_lag.1 += 1;
        } else if let Some(last) = self.sync_background(checker)? {
            let raft = self.raft.as_mut().expect("running");
            raft.persisted(last.index, last.term)
                .map_err(|e| format!("node {}: persisted: {e}", self.id))?;
        }
        for _ in 0..READY_ROUNDS_MAX {
            let Some(raft) = self.raft.as_mut() else { return Ok(outcome) };
            if !raft.has_ready() {
                return self.check_roles(checker).map(|()| outcome);
            }
            let ready = raft.ready().map_err(|e| format!("node {}: ready: {e}", self.id))?;
            self.persist(&ready, checker)?;
            self.send(&ready, network);
            self.apply(&ready, checker, &mut outcome)?;
            let raft = self.raft.as_mut().expect("running");
            raft.advance(&ready).map_err(|e| format!("node {}: advance: {e}", self.id))?;
        }
        Err(format!("node {}: still ready after {READY_ROUNDS_MAX} rounds", self.id).into())
    }

    /// Puts the entries written in the background on the disk; returns the
    /// last of them.
    fn sync_background(&mut self, checker: &mut Checker) -> Result<Option<Position>, Violation> {
        let entries = std::mem::take(&mut self.unsynced);
        self.sync_lag.1 = 0;
        let Some(last) = entries.last() else { return Ok(None) };
        let last = Position { index: last.index, term: last.term };
        self.write_to_disk(&entries, checker)?;
        Ok(Some(last))
    }

    /// Appends `entries` to the disk, checking them.
    fn write_to_disk(&mut self, entries: &[Entry], checker: &mut Checker) -> Result<(), Violation> {
        let Some(first) = entries.first() else { return Ok(()) };
        let mut prev_term = self.disk.term(first.index - 1).unwrap_or(0);
        for entry in entries {
            checker.persisted(self.id, entry, prev_term)?;
            prev_term = entry.term;
        }
        self.disk.append(entries);
        Ok(())
    }

    /// Writes the ready's snapshot, entries and hard state to both the
    /// node's store and its disk (its entries to the store only, when the
    /// ready is a background one).
    fn persist(&mut self, ready: &Ready, checker: &mut Checker) -> Result<(), Violation> {
        if ready.background {
            let raft = self.raft.as_mut().expect("running");
            raft.store_mut().append(&ready.entries);
            self.unsynced.extend(ready.entries.iter().cloned());
        } else {
            self.sync_background(checker)?;
        }
        let raft = self.raft.as_mut().expect("running");
        if let Some(meta) = ready.snapshot {
            let incoming = self.incoming.take().filter(|s| s.meta == meta).ok_or_else(|| {
                format!("node {}: asked to install snapshot {meta:?} it never received", self.id)
            })?;
            raft.store_mut().apply_snapshot(meta, incoming.membership.clone());
            self.disk.apply_snapshot(meta, incoming.membership.clone());
            self.state = (meta.index, incoming.state_hash);
            self.applied_membership = incoming.membership.clone();
            self.snapshot = incoming;
        }
        if !ready.background {
            raft.store_mut().append(&ready.entries);
            self.write_to_disk(&ready.entries, checker)?;
        }
        if let Some(hard_state) = ready.hard_state {
            if hard_state.commit < self.disk.hard_state.commit
                || hard_state.term < self.disk.hard_state.term
            {
                return Err(format!("node {}: persisted {hard_state:?} goes back", self.id).into());
            }
            // A leader may commit past its own disk (its followers hold
            // the entries); the disk records a commit it holds, as the
            // real node's hard state does.
            let commit =
                hard_state.commit.min(self.disk.last_index()).max(self.disk.hard_state.commit);
            let raft = self.raft.as_mut().expect("running");
            raft.store_mut().hard_state = hard_state;
            self.disk.hard_state = HardState { commit, ..hard_state };
        }
        Ok(())
    }

    /// Puts the ready's messages on the network.
    fn send(&self, ready: &Ready, network: &mut Network) {
        for message in ready.messages.iter().chain(&ready.persisted_messages) {
            let snapshot =
                matches!(message.body, Body::Snapshot { .. }).then(|| self.snapshot.clone());
            network.send(Envelope { message: message.clone(), snapshot });
        }
    }

    /// Applies committed entries and serves reads, checking both.
    fn apply(
        &mut self,
        ready: &Ready,
        checker: &mut Checker,
        outcome: &mut Outcome,
    ) -> Result<(), Violation> {
        for entry in &ready.committed {
            if entry.index != self.state.0 + 1 {
                return Err(format!(
                    "node {}: applies {} after {}",
                    self.id, entry.index, self.state.0
                )
                .into());
            }
            // The real node's state file must never get ahead of the log it
            // recovers from: nothing is applied before it is on this disk.
            if entry.index > self.disk.last_index() {
                return Err(format!(
                    "node {}: applies {} before its disk holds it (ends at {})",
                    self.id,
                    entry.index,
                    self.disk.last_index()
                )
                .into());
            }
            checker.applied(self.id, entry)?;
            self.state = (entry.index, self.state.1.rotate_left(5) ^ data_hash(entry));
            if entry.kind == EntryKind::Config {
                self.applied_membership = Membership::decode(&entry.data).map_err(|why| {
                    format!("node {}: applies entry {}: {why}", self.id, entry.index)
                })?;
            }
            if let Some(proposal) = self.proposals.remove(&entry.index) {
                if proposal.term == entry.term && entry.data == proposal.id.to_le_bytes() {
                    outcome.acked.push((entry.index, proposal.id));
                }
            }
        }
        for read in &ready.reads {
            let Some(required) = self.reads.remove(&read.ctx) else {
                return Err(
                    format!("node {}: served read {} nobody asked", self.id, read.ctx).into()
                );
            };
            if read.index < required || self.state.0 < read.index {
                return Err(format!(
                    "linearizability: node {} served read {} at index {} (applied {}), but {} \
                     was committed before it was asked",
                    self.id, read.ctx, read.index, self.state.0, required
                )
                .into());
            }
            outcome.reads_served += 1;
        }
        for ctx in &ready.reads_failed {
            self.reads.remove(ctx);
        }
        Ok(())
    }

    /// Checks the node's role and commit against the run so far.
    fn check_roles(&mut self, checker: &mut Checker) -> Result<(), Violation> {
        let raft = self.raft.as_ref().expect("running");
        // No node here loses what it made durable, so none may ever be told
        // that its log lost acknowledged entries (a false CORRUPT alarm).
        if let Some(commit) = raft.lost_log() {
            let last = raft.last_index();
            return Err(format!(
                "node {}: told it holds {commit}, its log ends at {last}",
                self.id
            )
            .into());
        }
        let committed = raft.committed();
        if committed < self.commit_seen {
            return Err(format!("node {}: commit went back to {committed}", self.id).into());
        }
        for index in self.commit_seen + 1..=committed {
            let term = raft.log().term(index).ok();
            if let Some(term) = term {
                checker.committed(self.id, index, term, raft.term())?;
            }
        }
        self.commit_seen = committed;
        if raft.role() == Role::Leader && checker.leader(raft.term(), self.id)? {
            let log = raft.log();
            checker.leader_complete(self.id, raft.term(), log.last_index(), |index| {
                log.term(index).ok()
            })?;
        }
        Ok(())
    }

    /// One line on the node: id, role, term, log, membership, applied.
    pub fn describe(&self) -> String {
        match &self.raft {
            None => format!("{} crashed", self.id),
            Some(raft) => format!(
                "{} {:?} term {} last {} commit {} applied {} membership {}",
                self.id,
                raft.role(),
                raft.term(),
                raft.last_index(),
                raft.committed(),
                self.state.0,
                raft.membership()
            ),
        }
    }

    /// Folds the log up to the applied index into a snapshot (never past
    /// the disk: `apply` checks that nothing is applied before it is there).
    pub fn compact(&mut self) {
        let Some(raft) = self.raft.as_mut() else { return };
        let index = self.state.0;
        if index <= self.disk.snapshot.index || index > self.disk.last_index() {
            return;
        }
        raft.store_mut().compact(index, self.applied_membership.clone());
        self.disk.compact(index, self.applied_membership.clone());
        self.snapshot = SnapshotState {
            meta: self.disk.snapshot,
            state_hash: self.state.1,
            membership: self.applied_membership.clone(),
        };
    }
}

/// The entry a proposal with client id `id` carries.
pub fn proposal_data(id: u64) -> Vec<u8> {
    id.to_le_bytes().to_vec()
}
