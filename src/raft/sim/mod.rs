//! A seeded simulator of whole Raft clusters.
//!
//! Every node is a [`Raft`](super::Raft) over an in-memory store; the network
//! is a bag of messages delivered in random order, lost, duplicated or cut
//! by partitions; nodes crash (losing everything not persisted) and restart.
//! All choices come from one seed, so a failing run replays exactly. After
//! every step the [`Checker`] verifies the Raft safety properties; at the
//! end [`Cluster::settle`] heals everything and checks that every
//! acknowledged proposal is applied on every node within a bounded number
//! of ticks.
//!
//! Scenario tests use the same verbs a script would: `tick`, `deliver_all`,
//! `propose`, `partition`, `heal`, `crash`, `restart`, `transfer`,
//! `add_server` and `change` (membership).

mod checker;
mod network;
mod node;
mod random;
mod violation;

use std::collections::BTreeMap;

pub use self::checker::Checker;
pub use self::network::{Envelope, Network, IN_FLIGHT_MAX};
pub use self::node::{proposal_data, PendingProposal, SimNode};
pub use self::random::Faults;
pub use self::violation::Violation;
use super::core::{splitmix64, Role};
use super::membership::{Membership, MembershipChange};
use super::message::{Index, NodeId};
use super::ready::RaftError;

/// Ticks `settle` allows a healed cluster to apply every acknowledged entry.
pub const SETTLE_TICKS_MAX: u32 = 400;
/// Deliveries `deliver_all` makes at most (each may cause more).
pub const DELIVERIES_MAX: usize = 100_000;

/// A deterministic random source (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A source for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).expect("below n")
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// What a run did, for the test's report.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Steps taken.
    pub steps: u64,
    /// Proposals acknowledged.
    pub acked: u64,
    /// Reads served.
    pub reads: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Membership changes proposed and accepted by a leader.
    pub changes: u64,
    /// Highest term reached.
    pub term_max: u64,
}

/// A simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes by id.
    pub nodes: BTreeMap<NodeId, SimNode>,
    /// The network between them.
    pub network: Network,
    /// The safety record of the run.
    pub checker: Checker,
    /// The run's random source.
    pub rng: Rng,
    /// Every server's id (members, joining and removed ones alike).
    members: Vec<NodeId>,
    /// How many servers the cluster started with.
    pub initial_size: usize,
    /// The seed, for restarts.
    seed: u64,
    /// Acknowledged proposals: index -> client id.
    pub acked: BTreeMap<Index, u64>,
    /// The next client proposal id.
    next_proposal: u64,
    /// Counters.
    pub stats: Stats,
}

impl Cluster {
    /// `size` fresh nodes with ids 1..=size, all voters.
    pub fn new(size: u64, seed: u64) -> Self {
        let members: Vec<NodeId> = (1..=size).collect();
        let membership = Membership::voters_only(&members);
        let nodes =
            members.iter().map(|&id| (id, SimNode::new(id, membership.clone(), seed))).collect();
        Cluster {
            nodes,
            network: Network::default(),
            checker: Checker::default(),
            rng: Rng::new(seed),
            initial_size: members.len(),
            members,
            seed,
            acked: BTreeMap::new(),
            next_proposal: 1,
            stats: Stats::default(),
        }
    }

    /// Handles node `id`'s readies and records what it acknowledged.
    fn drive(&mut self, id: NodeId) -> Result<(), Violation> {
        let node = self.nodes.get_mut(&id).expect("member");
        let outcome = node.drive(&mut self.network, &mut self.checker)?;
        self.stats.reads += outcome.reads_served;
        for (index, proposal) in outcome.acked {
            if let Some(other) = self.acked.insert(index, proposal) {
                if other != proposal {
                    return Err(format!(
                        "acknowledged writes {other} and {proposal} share {index}"
                    )
                    .into());
                }
            }
            self.stats.acked += 1;
        }
        if let Some(raft) = &self.nodes[&id].raft {
            self.stats.term_max = self.stats.term_max.max(raft.term());
        }
        Ok(())
    }

    /// One tick on node `id`.
    pub fn tick(&mut self, id: NodeId) -> Result<(), Violation> {
        if let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) {
            raft.tick().map_err(|e| format!("node {id}: tick: {e}"))?;
            self.drive(id)?;
        }
        Ok(())
    }

    /// `n` ticks on every running node.
    pub fn tick_all(&mut self, n: u32) -> Result<(), Violation> {
        for _ in 0..n {
            for id in self.members.clone() {
                self.tick(id)?;
            }
        }
        Ok(())
    }

    /// Delivers the message at `at` in flight (cut links and crashed
    /// receivers lose it).
    pub fn deliver(&mut self, at: usize) -> Result<(), Violation> {
        let Some(envelope) = self.network.take(at) else { return Ok(()) };
        let message = envelope.message;
        let (from, to) = (message.from, message.to);
        if self.network.is_cut(from, to) {
            self.network.lost += 1;
            return Ok(());
        }
        let Some(node) = self.nodes.get_mut(&to) else { return Ok(()) };
        let Some(raft) = node.raft.as_mut() else { return Ok(()) };
        if envelope.snapshot.is_some() {
            node.incoming = envelope.snapshot;
        }
        match raft.step(message) {
            Ok(()) => {}
            Err(RaftError::Invalid(why)) => {
                return Err(format!("node {to} refused a message: {why}").into())
            }
            Err(error) => return Err(format!("node {to}: step: {error}").into()),
        }
        self.drive(to)
    }

    /// Delivers messages oldest first until none is in flight.
    pub fn deliver_all(&mut self) -> Result<(), Violation> {
        for _ in 0..DELIVERIES_MAX {
            if self.network.in_flight.is_empty() {
                return Ok(());
            }
            self.deliver(0)?;
        }
        Err(format!("messages still in flight after {DELIVERIES_MAX} deliveries").into())
    }

    /// A client proposal at node `id`: its index if the node accepted it.
    pub fn propose(&mut self, id: NodeId) -> Result<Option<Index>, Violation> {
        let proposal = self.next_proposal;
        self.next_proposal += 1;
        let Some(node) = self.nodes.get_mut(&id) else { return Ok(None) };
        let Some(raft) = node.raft.as_mut() else { return Ok(None) };
        match raft.propose(proposal_data(proposal)) {
            Ok((index, term)) => {
                node.proposals.insert(index, PendingProposal { term, id: proposal });
                self.drive(id)?;
                Ok(Some(index))
            }
            Err(RaftError::Fatal(why)) => Err(format!("node {id}: propose: {why}").into()),
            Err(_) => Ok(None),
        }
    }

    /// A linearizable read at node `id`: it must observe every entry
    /// committed anywhere before now.
    pub fn read(&mut self, id: NodeId) -> Result<(), Violation> {
        let required = self.checker.commit_max;
        let Some(node) = self.nodes.get_mut(&id) else { return Ok(()) };
        let Some(raft) = node.raft.as_mut() else { return Ok(()) };
        let ctx = node.next_read;
        node.next_read += 1;
        match raft.read_index(ctx) {
            Ok(()) => {
                node.reads.insert(ctx, required);
                self.drive(id)
            }
            Err(RaftError::Fatal(why)) => Err(format!("node {id}: read: {why}").into()),
            Err(_) => Ok(()),
        }
    }

    /// Cuts the two groups apart.
    pub fn partition(&mut self, left: &[NodeId], right: &[NodeId]) {
        self.network.partition(left, right);
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.network.heal();
    }

    /// Crashes node `id`.
    pub fn crash(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            if node.raft.is_some() {
                node.crash();
                self.stats.crashes += 1;
            }
        }
    }

    /// Restarts node `id` from its disk (if crashed).
    pub fn restart(&mut self, id: NodeId) -> Result<(), Violation> {
        let node = self.nodes.get_mut(&id).expect("member");
        if node.raft.is_none() {
            node.start(self.seed);
            self.drive(id)?;
        }
        Ok(())
    }

    /// Starts a new server `id` with an empty disk that knows no members
    /// (`rdb serve --join`); a leader must add it.
    pub fn add_server(&mut self, id: NodeId) {
        if !self.nodes.contains_key(&id) {
            self.nodes.insert(id, SimNode::new(id, Membership::default(), self.seed));
            self.members.push(id);
        }
    }

    /// Asks node `at` (the leader, if it is one) for a membership change:
    /// the entry's index, or why Raft refused (Err only if the node failed).
    pub fn change(
        &mut self,
        at: NodeId,
        change: &MembershipChange,
    ) -> Result<Result<Index, RaftError>, Violation> {
        let Some(raft) = self.nodes.get_mut(&at).and_then(|n| n.raft.as_mut()) else {
            return Ok(Err(RaftError::NotLeader { leader: None }));
        };
        match raft.propose_membership(change) {
            Ok((index, _)) => {
                self.stats.changes += 1;
                self.drive(at)?;
                Ok(Ok(index))
            }
            Err(RaftError::Fatal(why)) => Err(format!("node {at}: change: {why}").into()),
            Err(error) => Ok(Err(error)),
        }
    }

    /// Asks leader `from` to hand over to `to` (0: the most caught-up
    /// voter): the voter chosen, or why not (Err only if the node failed).
    pub fn transfer(
        &mut self,
        from: NodeId,
        to: NodeId,
    ) -> Result<Result<NodeId, RaftError>, Violation> {
        let Some(raft) = self.nodes.get_mut(&from).and_then(|n| n.raft.as_mut()) else {
            return Ok(Err(RaftError::NotLeader { leader: None }));
        };
        let chosen = raft.transfer_leader(to);
        self.drive(from)?;
        Ok(chosen)
    }

    /// Compacts node `id`'s log up to what it applied.
    pub fn compact(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.compact();
        }
    }

    /// The running leader of the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|node| node.raft.as_ref())
            .filter(|raft| raft.role() == Role::Leader)
            .max_by_key(|raft| raft.term())
            .map(|raft| raft.id())
    }

    /// Every server's id (members or not).
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// The membership in force on node `id`, if it runs.
    pub fn membership_of(&self, id: NodeId) -> Option<&Membership> {
        self.nodes.get(&id).and_then(|n| n.raft.as_ref()).map(|raft| raft.membership())
    }
}
