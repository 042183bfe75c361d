//! The simulated network: messages in flight, delivered in any order, lost,
//! duplicated or cut by partitions, all decided by the simulation's seed.

use std::collections::BTreeSet;

use super::super::membership::Membership;
use super::super::message::{Message, NodeId, Position};

/// Most messages in flight; past it the oldest is lost (a full queue).
pub const IN_FLIGHT_MAX: usize = 4096;

/// A machine state that travels beside a snapshot message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotState {
    /// Which snapshot.
    pub meta: Position,
    /// The state machine's hash at `meta.index`.
    pub state_hash: u64,
    /// The membership the state machine had applied at `meta.index`.
    pub membership: Membership,
}

/// A message on its way.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The message.
    pub message: Message,
    /// For snapshot messages, the snapshot's content.
    pub snapshot: Option<SnapshotState>,
}

/// Messages in flight and the links that are cut.
#[derive(Debug, Default)]
pub struct Network {
    /// In flight, oldest first.
    pub in_flight: Vec<Envelope>,
    /// Cut links, `(from, to)`: messages on them are dropped when sent and
    /// when delivered.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Messages lost so far (cut links, full queue, random loss).
    pub lost: u64,
}

impl Network {
    /// Puts a message on the wire unless its link is cut.
    pub fn send(&mut self, envelope: Envelope) {
        if self.is_cut(envelope.message.from, envelope.message.to) {
            self.lost += 1;
            return;
        }
        if self.in_flight.len() >= IN_FLIGHT_MAX {
            self.in_flight.remove(0);
            self.lost += 1;
        }
        self.in_flight.push(envelope);
    }

    /// Whether messages from `from` to `to` are dropped.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, left: &[NodeId], right: &[NodeId]) {
        for &a in left {
            for &b in right {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
    }

    /// Cuts one direction only.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Takes message `at` off the wire.
    pub fn take(&mut self, at: usize) -> Option<Envelope> {
        (at < self.in_flight.len()).then(|| self.in_flight.remove(at))
    }
}
