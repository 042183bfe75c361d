//! Random runs: each step picks one action (deliver, lose, duplicate, tick,
//! propose, read, partition, heal, crash, restart, transfer, compact,
//! membership change) from the seed; then `settle` heals the cluster and
//! checks liveness.

use super::super::membership::{Member, MemberRole, MembershipChange};
use super::super::message::NodeId;
use super::violation::Violation;
use super::{Cluster, SimNode, SETTLE_TICKS_MAX};

/// Servers a random run may add beyond the initial members.
const EXTRA_SERVERS_MAX: usize = 2;

/// How hostile a random run is. Each step picks an action; these are the
/// chances, in percent, that the action turns into a fault.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// A picked delivery loses the message instead.
    pub loss: u64,
    /// A picked delivery also leaves a copy in flight.
    pub duplicate: u64,
    /// A picked partition step (3 % of steps) changes the partition.
    pub partition: u64,
    /// A picked crash step (3 % of steps) on a running node crashes it (on
    /// a crashed node it always restarts it).
    pub crash: u64,
    /// Crashes may take down a majority (safety must hold; progress stops);
    /// otherwise at most a minority is down at once.
    pub crash_any: bool,
    /// A picked membership step (1 % of steps) proposes a random change at
    /// the leader: add a learner (a new server, or one removed before),
    /// promote one, add a voter, or remove any member, the leader included.
    pub membership: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults { loss: 5, duplicate: 3, partition: 20, crash: 10, crash_any: true, membership: 100 }
    }
}

impl Cluster {
    /// Takes `steps` random steps under `faults`.
    pub fn run_random(&mut self, steps: u64, faults: Faults) -> Result<(), Violation> {
        for step in 0..steps {
            self.stats.steps = step + 1;
            self.random_step(faults).map_err(|e| format!("step {step}: {e}"))?;
        }
        Ok(())
    }

    /// One random action.
    fn random_step(&mut self, faults: Faults) -> Result<(), Violation> {
        let roll = self.rng.next_u64() % 1000;
        let id = self.random_member();
        match roll {
            0..=399 => self.deliver_random(faults),
            400..=549 => self.tick_all(1),
            550..=649 => self.tick(id),
            650..=799 => self.propose_somewhere().map(|_| ()),
            800..=869 => self.read(id),
            870..=899 => {
                self.compact(id);
                Ok(())
            }
            900..=929 => self.change_partition(faults),
            930..=959 => self.crash_or_restart(faults, id),
            960..=969 => self.transfer_randomly(id),
            970..=979 if self.rng.chance(faults.membership) => self.change_randomly(),
            _ => self.tick_all(1),
        }
    }

    /// A member chosen at random.
    fn random_member(&mut self) -> NodeId {
        let at = self.rng.below(self.members().len());
        self.members()[at]
    }

    /// Delivers (or loses, or duplicates) a random message in flight.
    fn deliver_random(&mut self, faults: Faults) -> Result<(), Violation> {
        let count = self.network.in_flight.len();
        if count == 0 {
            return self.tick_all(1);
        }
        let at = self.rng.below(count);
        if self.rng.chance(faults.loss) {
            self.network.take(at);
            self.network.lost += 1;
            return Ok(());
        }
        if self.rng.chance(faults.duplicate) {
            let copy = self.network.in_flight[at].clone();
            self.network.in_flight.push(copy);
        }
        self.deliver(at)
    }

    /// Proposes at the leader most of the time, elsewhere sometimes.
    fn propose_somewhere(&mut self) -> Result<(), Violation> {
        let id = match self.leader() {
            Some(leader) if self.rng.chance(90) => leader,
            _ => self.random_member(),
        };
        self.propose(id).map(|_| ())
    }

    /// Heals, or cuts a random node off (both ways or one way).
    fn change_partition(&mut self, faults: Faults) -> Result<(), Violation> {
        if !self.rng.chance(faults.partition) {
            return Ok(());
        }
        let id = self.random_member();
        match self.rng.below(4) {
            0 | 1 => self.heal(),
            2 => {
                let others: Vec<NodeId> =
                    self.members().iter().copied().filter(|&o| o != id).collect();
                self.partition(&[id], &others);
            }
            _ => {
                let other = self.random_member();
                if other != id {
                    self.network.cut_one_way(id, other);
                }
            }
        }
        Ok(())
    }

    /// Crashes a running node or restarts a crashed one.
    fn crash_or_restart(&mut self, faults: Faults, id: NodeId) -> Result<(), Violation> {
        if self.nodes[&id].raft.is_none() {
            return self.restart(id);
        }
        if !self.rng.chance(faults.crash) {
            return Ok(());
        }
        let down = self.nodes.values().filter(|node| node.raft.is_none()).count();
        let minority = (self.members().len() - 1) / 2;
        if faults.crash_any || down < minority {
            self.crash(id);
        }
        Ok(())
    }

    /// Asks the leader to hand over to `to`.
    fn transfer_randomly(&mut self, to: NodeId) -> Result<(), Violation> {
        match self.leader() {
            Some(leader) if leader != to => self.transfer(leader, to).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Proposes a random membership change at the leader, if there is one.
    fn change_randomly(&mut self) -> Result<(), Violation> {
        let Some(leader) = self.leader() else { return Ok(()) };
        let Some(membership) = self.membership_of(leader).cloned() else { return Ok(()) };
        let pick = |rng: &mut super::Rng, ids: &[NodeId]| {
            (!ids.is_empty()).then(|| ids[rng.below(ids.len())])
        };
        let change = match self.rng.below(4) {
            0 | 1 => {
                let outsiders: Vec<NodeId> =
                    self.members().iter().copied().filter(|&id| !membership.contains(id)).collect();
                let id = match pick(&mut self.rng, &outsiders) {
                    Some(id) if self.rng.chance(50) => id,
                    _ if self.members().len() < self.initial_size + EXTRA_SERVERS_MAX => {
                        let id = self.members().iter().max().copied().unwrap_or(0) + 1;
                        self.add_server(id);
                        id
                    }
                    _ => return Ok(()),
                };
                let role =
                    if self.rng.chance(80) { MemberRole::Learner } else { MemberRole::Voter };
                let member = Member { id, role, peer: String::new(), client_url: String::new() };
                MembershipChange::Add(member)
            }
            2 => {
                let learners: Vec<NodeId> =
                    membership.ids().filter(|&id| !membership.is_voter(id)).collect();
                let Some(id) = pick(&mut self.rng, &learners) else { return Ok(()) };
                MembershipChange::Promote(id)
            }
            _ => {
                let ids: Vec<NodeId> = membership.ids().collect();
                let Some(id) = pick(&mut self.rng, &ids) else { return Ok(()) };
                MembershipChange::Remove(id)
            }
        };
        self.change(leader, &change).map(|_| ())
    }

    /// Heals the network, restarts every node and runs with a reliable
    /// network until every node applied every acknowledged entry and all
    /// agree, within `SETTLE_TICKS_MAX` ticks.
    pub fn settle(&mut self) -> Result<(), Violation> {
        self.heal();
        for id in self.members().to_vec() {
            self.restart(id)?;
        }
        // Commit something in the final term so that everything before it
        // commits too (§5.4.2), then wait for every node to apply it.
        let mut target = self.acked.keys().next_back().copied().unwrap_or(0);
        for tick in 0..SETTLE_TICKS_MAX {
            self.deliver_all()?;
            if let Some(leader) = self.leader() {
                if tick % 20 == 0 {
                    if let Some(index) = self.propose(leader)? {
                        target = target.max(index);
                    }
                }
            }
            if target > 0 && self.members_agree(target) {
                return Ok(());
            }
            self.tick_all(1)?;
        }
        let nodes: Vec<String> = self.nodes.values().map(SimNode::describe).collect();
        Err(format!(
            "liveness: after healing and {SETTLE_TICKS_MAX} ticks, acknowledged up to {target}; \
             nodes: {}",
            nodes.join("; ")
        )
        .into())
    }

    /// Whether every member of the leader's membership has applied at
    /// least `target`, all to the same state.
    fn members_agree(&self, target: u64) -> bool {
        let Some(membership) = self.leader().and_then(|l| self.membership_of(l)) else {
            return false;
        };
        let states: Vec<_> =
            membership.ids().filter_map(|id| self.nodes.get(&id)).map(|n| n.state).collect();
        states.len() == membership.members().len()
            && states.iter().all(|state| state.0 >= target && *state == states[0])
    }
}
