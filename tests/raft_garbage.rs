//! No message from a peer may panic a node: seeded random messages with
//! arbitrary fields, fed to a follower and to a leader, are handled or
//! refused with `Invalid`; the node keeps its safety state.

use rdb::raft::sim::Rng;
use rdb::raft::{
    Body, Config, Entry, EntryKind, MemStore, Membership, Message, Position, Raft, RaftError, Role,
};

/// Random messages per node role.
const MESSAGES: u32 = 20_000;

fn any_u64(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => rng.below(8) as u64,
        1 => u64::MAX - rng.below(4) as u64,
        2 => 1 << 62,
        _ => rng.next_u64(),
    }
}

/// Half of the appends are plausible: they follow the node's last entry
/// with entries of the message's term, so that random commit indices and
/// later garbage meet a log that grows.
fn plausible_append(rng: &mut Rng, raft: &Raft<MemStore>, term: u64) -> Body {
    let prev_index = raft.last_index();
    let prev_term = raft.log().term(prev_index).unwrap_or(0);
    let entries = (1..=rng.below(3) as u64)
        .map(|i| {
            let (kind, data) = any_entry_data(rng);
            Entry { term, index: prev_index + i, kind, data }
        })
        .collect();
    Body::Append { prev_index, prev_term, entries, commit: any_u64(rng) }
}

/// Some voters among 1..=5, possibly without this node (1).
fn any_membership(rng: &mut Rng) -> Membership {
    let ids: Vec<u64> = (1..=5).filter(|_| rng.chance(60)).collect();
    Membership::voters_only(&ids)
}

/// A command, a valid membership, or a damaged one.
fn any_entry_data(rng: &mut Rng) -> (EntryKind, Vec<u8>) {
    match rng.below(4) {
        0 => (EntryKind::Config, any_membership(rng).encode()),
        1 => {
            let mut bytes = any_membership(rng).encode();
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
            (EntryKind::Config, bytes)
        }
        2 => (EntryKind::Noop, Vec::new()),
        _ => (EntryKind::Normal, vec![1]),
    }
}

fn any_body(rng: &mut Rng) -> Body {
    match rng.below(9) {
        0 => Body::Vote {
            pre: rng.chance(50),
            last_index: any_u64(rng),
            last_term: any_u64(rng),
            transfer: rng.chance(50),
        },
        1 => Body::VoteResponse { pre: rng.chance(50), granted: rng.chance(50) },
        2 => {
            let prev_index = any_u64(rng);
            let first = prev_index.wrapping_add(1);
            let entries = (0..rng.below(3) as u64)
                .map(|i| {
                    let (kind, data) = any_entry_data(rng);
                    Entry { term: any_u64(rng), index: first.wrapping_add(i), kind, data }
                })
                .collect();
            Body::Append { prev_index, prev_term: any_u64(rng), entries, commit: any_u64(rng) }
        }
        3 => Body::AppendResponse {
            reject: rng.chance(50),
            index: any_u64(rng),
            hint_index: any_u64(rng),
            hint_term: any_u64(rng),
        },
        4 => Body::Heartbeat { commit: any_u64(rng), round: any_u64(rng) },
        5 => Body::HeartbeatResponse { round: any_u64(rng) },
        6 => Body::Snapshot {
            meta: Position { index: any_u64(rng), term: any_u64(rng) },
            membership: any_membership(rng),
        },
        7 => Body::ReadIndex { ctx: any_u64(rng) },
        _ => Body::ReadIndexResponse { ctx: any_u64(rng), index: any_u64(rng) },
    }
}

/// Node 1 of {1, 2, 3}, made leader if asked by a vote from node 2.
fn node(leader: bool) -> Raft<MemStore> {
    let mut config = Config::new(1, vec![1, 2, 3]);
    config.pre_vote = false;
    let mut raft = Raft::new(config, MemStore::default()).unwrap();
    if leader {
        while raft.role() != Role::Candidate {
            raft.tick().unwrap();
        }
        let term = raft.term();
        let vote = Message {
            from: 2,
            to: 1,
            term,
            body: Body::VoteResponse { pre: false, granted: true },
        };
        raft.step(vote).unwrap();
        assert_eq!(raft.role(), Role::Leader);
    }
    raft
}

fn feed(leader: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut raft = node(leader);
    let (mut appended, mut refused) = (0, 0);
    for _ in 0..MESSAGES {
        let term = if rng.chance(70) { raft.term() } else { any_u64(&mut rng) };
        let from = [0, 1, 2, 3, 4][rng.below(5)];
        let to = if rng.chance(95) { 1 } else { 2 };
        let body = if rng.chance(20) && term > 0 {
            plausible_append(&mut rng, &raft, term)
        } else {
            any_body(&mut rng)
        };
        let message = Message { from, to, term, body };
        let before = (raft.hard_state(), raft.role(), raft.last_index());
        match raft.step(message) {
            Ok(()) => {}
            Err(RaftError::Invalid(_)) => {
                let after = (raft.hard_state(), raft.role(), raft.last_index());
                assert_eq!(before, after, "seed {seed}: a refused message changed the node");
                refused += 1;
            }
            Err(other) => panic!("seed {seed}: unexpected {other}"),
        }
        // Persist what it asks for, so that later messages meet a real log.
        let ready = raft.ready().unwrap();
        if let Some(hard_state) = ready.hard_state {
            raft.store_mut().hard_state = hard_state;
        }
        if ready.snapshot.is_some() || ready.entries.len() > 64 {
            raft = node(leader); // keep the log small: start over
            continue;
        }
        appended += ready.entries.len();
        raft.store_mut().append(&ready.entries);
        raft.advance(&ready).unwrap();
        if rng.chance(5) {
            raft.tick().unwrap();
        }
    }
    // The generator must reach the interesting paths, not only refusals.
    assert!(appended > 0 && refused > 0, "seed {seed}: appended {appended}, refused {refused}");
}

#[test]
fn a_follower_survives_random_messages() {
    for seed in 0..5 {
        feed(false, seed);
    }
}

#[test]
fn a_leader_survives_random_messages() {
    for seed in 0..5 {
        feed(true, seed);
    }
}

#[test]
fn a_second_leader_in_a_term_is_refused_and_changes_nothing() {
    // Election safety (§5.2): once node 2 has led term 3 here, node 3's
    // claim to the same term is a bug elsewhere, refused, not followed.
    let mut raft = node(false);
    let heartbeat =
        |from| Message { from, to: 1, term: 3, body: Body::Heartbeat { commit: 0, round: 1 } };
    raft.step(heartbeat(2)).unwrap();
    assert_eq!(raft.leader(), Some(2));
    let before = (raft.hard_state(), raft.role(), raft.last_index());
    let refused = raft.step(heartbeat(3));
    assert!(
        matches!(&refused, Err(RaftError::Invalid(why)) if why == "node 3 acts as leader of term 3, which node 2 leads"),
        "{refused:?}"
    );
    assert_eq!((raft.hard_state(), raft.role(), raft.last_index()), before);
    assert_eq!(raft.leader(), Some(2));
    raft.step(heartbeat(2)).expect("the leader of the term is still followed");
}

#[test]
fn a_term_past_the_limit_is_refused_and_the_node_can_still_campaign() {
    // A node that took term u64::MAX from a peer would overflow at its next
    // campaign (term + 1); such a term is refused before anything changes.
    let mut raft = node(false);
    for term in [u64::MAX, 1 << 62] {
        let heartbeat =
            Message { from: 2, to: 1, term, body: Body::Heartbeat { commit: 0, round: 1 } };
        let before = (raft.hard_state(), raft.role(), raft.last_index());
        let refused = raft.step(heartbeat);
        assert!(matches!(&refused, Err(RaftError::Invalid(_))), "term {term}: {refused:?}");
        assert_eq!((raft.hard_state(), raft.role(), raft.last_index()), before);
    }
    let start = raft.term();
    for _ in 0..1_000 {
        raft.tick().unwrap();
        if raft.role() == Role::Candidate {
            break;
        }
    }
    assert_eq!((raft.role(), raft.term()), (Role::Candidate, start + 1));
}
