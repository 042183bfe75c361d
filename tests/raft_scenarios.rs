//! The Raft paper's situations as short scripts, on a single node fed by
//! hand or on the simulated cluster (src/raft/sim). Each reads as a story:
//! set the scene, do one thing, check what Raft must (not) do.

use rdb::raft::sim::Cluster;
use rdb::raft::{
    Body, Config, Entry, EntryKind, HardState, MemStore, Member, MemberRole, Membership, Message,
    Raft, Ready, Role,
};

/// Bounds every "until" loop in these scripts.
const ROUNDS_MAX: u32 = 500;

/// Persists a node's readies into its own store and returns what it sent.
fn flush(raft: &mut Raft<MemStore>) -> Vec<Message> {
    let mut sent = Vec::new();
    for _ in 0..ROUNDS_MAX {
        if !raft.has_ready() {
            return sent;
        }
        let ready: Ready = raft.ready().unwrap();
        if let Some(hard_state) = ready.hard_state {
            raft.store_mut().hard_state = hard_state;
        }
        raft.store_mut().append(&ready.entries);
        sent.extend(ready.messages.iter().chain(&ready.persisted_messages).cloned());
        raft.advance(&ready).unwrap();
    }
    panic!("node never ran out of work");
}

fn entry(index: u64, term: u64) -> Entry {
    Entry { term, index, kind: EntryKind::Normal, data: vec![index.to_le_bytes()[0]] }
}

fn message(from: u64, to: u64, term: u64, body: Body) -> Message {
    Message { from, to, term, body }
}

/// Node 1 of {1, 2, 3}, holding `entries` and having seen `term`, elected
/// leader with node 2's vote. Returns it with the term it leads.
fn elected_leader(entries: Vec<Entry>, term: u64) -> (Raft<MemStore>, u64) {
    elected_leader_with(entries, term, |_| {})
}

/// [`elected_leader`], with `configure` changing its configuration.
fn elected_leader_with(
    entries: Vec<Entry>,
    term: u64,
    configure: impl FnOnce(&mut Config),
) -> (Raft<MemStore>, u64) {
    let store = MemStore {
        hard_state: HardState { term, vote: 0, commit: 0 },
        entries,
        ..Default::default()
    };
    let mut config = Config::new(1, vec![1, 2, 3]);
    config.pre_vote = false;
    configure(&mut config);
    let mut raft = Raft::new(config, store).unwrap();
    for _ in 0..ROUNDS_MAX {
        if raft.role() == Role::Candidate {
            break;
        }
        raft.tick().unwrap();
    }
    let term = raft.term();
    flush(&mut raft);
    raft.step(message(2, 1, term, Body::VoteResponse { pre: false, granted: true })).unwrap();
    assert_eq!(raft.role(), Role::Leader);
    flush(&mut raft);
    (raft, term)
}

fn accept(raft: &mut Raft<MemStore>, from: u64, index: u64) {
    let term = raft.term();
    let body = Body::AppendResponse { reject: false, index, hint_index: 0, hint_term: 0 };
    raft.step(message(from, 1, term, body)).unwrap();
    flush(raft);
}

/// Thesis §10.2.1: a leader may sync its own log in parallel with
/// replication. With background persistence its new entries come in a
/// `background` Ready, which the node only writes; its followers alone can
/// commit them, but the leader hands them out to apply only once it reports
/// them synced, so its state never gets ahead of the log it recovers from.
#[test]
fn a_leader_syncing_in_the_background_applies_only_what_it_synced() {
    let (mut leader, term) =
        elected_leader_with(vec![entry(1, 1)], 1, |config| config.background_persist = true);
    let no_op = leader.last_index();
    accept(&mut leader, 2, no_op);
    accept(&mut leader, 3, no_op);
    assert_eq!(leader.committed(), no_op);

    let (index, _) = leader.propose(b"w".to_vec()).unwrap();
    let ready = leader.ready().unwrap();
    assert!(ready.background, "a steady leader's new entries may sync in the background");
    assert_eq!(ready.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![index]);
    assert!(!ready.messages.is_empty(), "the append goes out before the sync");
    leader.store_mut().append(&ready.entries);
    leader.advance(&ready).unwrap();
    assert!(!leader.has_ready() || leader.ready().unwrap().entries.is_empty(), "handed out once");

    // Both followers hold it: committed, though not yet durable here.
    for from in [2, 3] {
        let body = Body::AppendResponse { reject: false, index, hint_index: 0, hint_term: 0 };
        leader.step(message(from, 1, term, body)).unwrap();
    }
    assert_eq!(leader.committed(), index);
    let ready = leader.ready().unwrap();
    assert!(ready.committed.is_empty(), "nothing is applied before the leader's own sync");
    leader.advance(&ready).unwrap();

    // One report covers everything written before it: the leader's no-op,
    // written in the background too (by `flush`, which never reports a
    // sync), and the write.
    leader.persisted(index, term).unwrap();
    let ready = leader.ready().unwrap();
    assert_eq!(ready.committed.iter().map(|e| e.index).collect::<Vec<_>>(), vec![no_op, index]);
    leader.advance(&ready).unwrap();
}

/// §5.4.2, Figure 8: a leader never commits an entry of an earlier term by
/// counting replicas; it commits it only with an entry of its own term.
#[test]
fn figure_8_old_term_entries_commit_only_with_a_current_term_entry() {
    // Node 1 holds an entry of term 2 that it never committed.
    let (mut leader, term) = elected_leader(vec![entry(1, 1), entry(2, 2)], 2);
    assert!(term > 2);
    assert_eq!(leader.last_index(), 3, "the new leader appended its no-op at 3");

    // Node 2 now holds the term-2 entry too: a majority, but of an old term.
    accept(&mut leader, 2, 2);
    assert_eq!(leader.committed(), 0, "replica counting must not commit term 2's entry");

    // Once node 2 holds the no-op of the leader's term, both commit.
    accept(&mut leader, 2, 3);
    assert_eq!(leader.committed(), 3);
}

/// §5.3: "the leader retries AppendEntries indefinitely" until the
/// follower holds every entry. A pipelining leader that lost its appends to
/// a follower, and has nothing new to send, must still find the gap: the
/// follower's heartbeat answers show it is back, so the leader probes and
/// resends. (Without this a follower cut off one way stayed behind after
/// the network healed, until the next write; its linearizable reads, which
/// wait for the leader's commit index, failed meanwhile.)
#[test]
fn lost_appends_are_resent_once_the_follower_answers_again_without_new_writes() {
    let (mut leader, term) = elected_leader(vec![entry(1, 1)], 1);
    let no_op = leader.last_index();
    accept(&mut leader, 2, no_op);
    accept(&mut leader, 3, no_op);

    // Three writes; node 3 gets them, the appends to node 2 are lost.
    for _ in 0..3 {
        leader.propose(b"w".to_vec()).unwrap();
    }
    let sent = flush(&mut leader);
    assert!(sent.iter().any(
        |m| m.to == 2 && matches!(&m.body, Body::Append { entries, .. } if !entries.is_empty())
    ));
    let last = leader.last_index();
    accept(&mut leader, 3, last);
    assert_eq!(leader.committed(), last, "committed with node 3");

    // Node 2 is reachable again and answers a heartbeat; nothing new is
    // proposed. Node 2 holds the log up to the no-op only.
    let mut resent = false;
    for round in 1..=ROUNDS_MAX {
        let round = u64::from(round);
        leader.tick().unwrap();
        let mut sent = flush(&mut leader);
        leader.step(message(2, 1, term, Body::HeartbeatResponse { round })).unwrap();
        sent.extend(flush(&mut leader));
        for m in sent.iter().filter(|m| m.to == 2) {
            match &m.body {
                Body::Append { prev_index, entries, .. } if *prev_index <= no_op => {
                    resent = entries.first().is_some_and(|e| e.index == no_op + 1);
                }
                Body::Append { prev_index, .. } => {
                    // Node 2 lacks `prev_index`: it rejects, hinting its end.
                    let body = Body::AppendResponse {
                        reject: true,
                        index: *prev_index,
                        hint_index: no_op,
                        hint_term: term,
                    };
                    leader.step(message(2, 1, term, body)).unwrap();
                }
                _ => {}
            }
        }
        sent = flush(&mut leader);
        for m in sent.iter().filter(|m| m.to == 2) {
            if let Body::Append { prev_index, entries, .. } = &m.body {
                resent |=
                    *prev_index == no_op && entries.first().is_some_and(|e| e.index == no_op + 1);
            }
        }
        if resent {
            break;
        }
    }
    assert!(resent, "the leader resends the lost entries after node 2 answers again");
}

/// §5.4.1: a node refuses its vote to a candidate whose log is less up to
/// date: an older last term, or the same term and a shorter log.
#[test]
fn votes_go_only_to_candidates_at_least_as_up_to_date() {
    let store = MemStore { entries: vec![entry(1, 1), entry(2, 3)], ..Default::default() };
    let mut voter = Raft::new(Config::new(1, vec![1, 2, 3]), store).unwrap();
    let ask = |term, last_index, last_term| {
        message(2, 1, term, Body::Vote { pre: false, last_index, last_term, transfer: false })
    };
    let granted = |sent: &[Message]| {
        sent.iter().any(|m| matches!(m.body, Body::VoteResponse { granted: true, .. }))
    };

    voter.step(ask(5, 9, 2)).unwrap();
    assert!(!granted(&flush(&mut voter)), "longer log but older last term");
    voter.step(ask(6, 1, 3)).unwrap();
    assert!(!granted(&flush(&mut voter)), "same last term, shorter log");
    voter.step(ask(7, 2, 3)).unwrap();
    assert!(granted(&flush(&mut voter)), "same last term and length");
    assert_eq!(voter.store_mut().hard_state.vote, 2, "the vote is persisted with the grant");
}

/// `Ready` says which messages may leave before the sync (thesis §10.2.1,
/// raft-rs's `messages` and `persisted_messages`): a leader's appends may;
/// a vote and an append's acknowledgement may not, as they promise what is
/// only durable after it.
#[test]
fn only_a_leaders_messages_may_leave_before_the_sync() {
    let (mut leader, term) = elected_leader(vec![], 1);
    let no_op = leader.last_index();
    accept(&mut leader, 2, no_op);
    accept(&mut leader, 3, no_op);
    leader.propose(vec![1]).unwrap();
    let ready = leader.ready().unwrap();
    assert!(!ready.entries.is_empty(), "the proposal is to be persisted");
    assert!(ready.messages.iter().any(|m| matches!(m.body, Body::Append { .. })));
    assert!(ready.persisted_messages.is_empty(), "{:?}", ready.persisted_messages);
    leader.advance(&ready).unwrap();

    let mut voter = Raft::new(Config::new(1, vec![1, 2, 3]), MemStore::default()).unwrap();
    let ask = Body::Vote { pre: false, last_index: 0, last_term: 0, transfer: false };
    voter.step(message(2, 1, term + 1, ask)).unwrap();
    let ready = voter.ready().unwrap();
    assert_eq!(ready.hard_state.map(|h| h.vote), Some(2), "the vote is to be persisted");
    assert!(ready.messages.is_empty(), "{:?}", ready.messages);
    assert!(ready
        .persisted_messages
        .iter()
        .any(|m| m.body == Body::VoteResponse { pre: false, granted: true }));
    voter.advance(&ready).unwrap();
    let append =
        Body::Append { prev_index: 0, prev_term: 0, entries: vec![entry(1, term + 1)], commit: 0 };
    voter.step(message(2, 1, term + 1, append)).unwrap();
    let ready = voter.ready().unwrap();
    assert!(ready.messages.is_empty(), "an acknowledgement waits for the entry's sync");
    assert!(ready
        .persisted_messages
        .iter()
        .any(|m| matches!(m.body, Body::AppendResponse { reject: false, .. })));
}

/// A lone voter wins its election in the tick that starts it, so the
/// `Ready` that carries its new term and vote also carries its first
/// appends (to learners). Were those to leave before the term is durable, a
/// crash could bring the node back in the old term, win the same term again
/// and send different entries under it; they wait for the sync. Once the
/// term is durable the leader's appends go first again.
#[test]
fn a_new_leaders_messages_wait_until_its_term_is_durable() {
    let member =
        |id, role| Member { id, role, peer: format!("127.0.0.1:{id}"), client_url: String::new() };
    let membership =
        Membership::new(vec![member(1, MemberRole::Voter), member(2, MemberRole::Learner)])
            .expect("valid");
    let mut lone = Raft::new(Config::with_membership(1, membership), MemStore::default()).unwrap();
    for _ in 0..ROUNDS_MAX {
        if lone.role() == Role::Leader {
            break;
        }
        lone.tick().unwrap();
    }
    assert_eq!(lone.role(), Role::Leader);
    let ready = lone.ready().unwrap();
    assert!(ready.hard_state.is_some_and(|h| h.term == lone.term() && h.vote == 1));
    assert!(ready.messages.is_empty(), "sent before the term is durable: {:?}", ready.messages);
    assert!(ready
        .persisted_messages
        .iter()
        .any(|m| m.to == 2 && matches!(m.body, Body::Append { .. })));
    lone.store_mut().hard_state = ready.hard_state.expect("the new term");
    lone.store_mut().append(&ready.entries);
    lone.advance(&ready).unwrap();
    accept(&mut lone, 2, 1);
    lone.propose(vec![7]).unwrap();
    let ready = lone.ready().unwrap();
    assert!(ready.hard_state.is_none_or(|h| h.term == lone.term()));
    assert!(ready.messages.iter().any(|m| m.to == 2 && matches!(m.body, Body::Append { .. })));
}

/// A leader cut off from the majority: the majority elects a new leader
/// and commits; the stale leader steps down (check-quorum), never commits,
/// and never serves a read; after healing it follows and catches up.
#[test]
fn a_partitioned_leader_steps_down_and_cannot_serve_reads() {
    let mut cluster = Cluster::new(5, 11);
    let old = settle_leader(&mut cluster);
    let old_term = term_of(&cluster, old);
    let majority: Vec<u64> = cluster.members().iter().copied().filter(|&id| id != old).collect();
    cluster.partition(&[old], &majority);

    // The stale leader takes a write and a read it must not complete.
    let stale_index = cluster.propose(old).unwrap().expect("it still thinks it leads");
    cluster.read(old).unwrap();
    cluster.deliver_all().unwrap();
    assert_eq!(cluster.stats.reads, 0, "no read without a majority's heartbeat answers");

    // The majority moves on.
    let new = elect_among(&mut cluster, &majority);
    let index = cluster.propose(new).unwrap().expect("the new leader accepts");
    cluster.deliver_all().unwrap();
    assert!(cluster.nodes[&new].raft.as_ref().unwrap().committed() >= index);
    for _ in 0..20 {
        // Two election timeouts: the old leader's check-quorum runs.
        cluster.tick_all(1).unwrap();
        cluster.deliver_all().unwrap();
    }
    assert_eq!(cluster.nodes[&old].raft.as_ref().unwrap().role(), Role::Follower);
    assert_eq!(cluster.stats.reads, 0, "the stale leader never served the read");

    // Healed, the old leader follows and holds the new leader's entry at
    // the index its own uncommitted write had.
    cluster.heal();
    for _ in 0..40 {
        cluster.tick_all(1).unwrap();
        cluster.deliver_all().unwrap();
    }
    assert_eq!(cluster.leader(), Some(new));
    let log = cluster.nodes[&old].raft.as_ref().unwrap().log();
    let new_log = cluster.nodes[&new].raft.as_ref().unwrap().log();
    assert_eq!(log.term(stale_index).unwrap(), new_log.term(stale_index).unwrap());
    assert!(new_log.term(stale_index).unwrap() > old_term, "the stale write was overwritten");
}

/// A minority partition cannot commit; the majority keeps going; a crashed
/// and restarted follower catches up through a snapshot once the leader has
/// compacted the entries it lacks.
#[test]
fn a_minority_cannot_commit_and_a_lagging_follower_catches_up_by_snapshot() {
    let mut cluster = Cluster::new(5, 3);
    let leader = settle_leader(&mut cluster);
    let first = other_than(&cluster, &[leader]);
    let minority = [first, other_than(&cluster, &[leader, first])];
    let majority: Vec<u64> =
        cluster.members().iter().copied().filter(|id| !minority.contains(id)).collect();
    cluster.partition(&minority, &majority);
    cluster.crash(minority[0]);

    for _ in 0..20 {
        cluster.propose(leader).unwrap();
        cluster.tick_all(1).unwrap();
        cluster.deliver_all().unwrap();
    }
    let committed = cluster.nodes[&leader].raft.as_ref().unwrap().committed();
    assert!(committed >= 20, "the majority committed, got {committed}");
    let behind = cluster.nodes[&minority[1]].raft.as_ref().unwrap().committed();
    assert!(behind < committed, "the minority did not");

    // The leader compacts everything it applied; the crashed node returns.
    cluster.compact(leader);
    cluster.heal();
    cluster.restart(minority[0]).unwrap();
    for _ in 0..60 {
        cluster.tick_all(1).unwrap();
        cluster.deliver_all().unwrap();
    }
    let caught_up = &cluster.nodes[&minority[0]];
    assert!(caught_up.disk.snapshot.index >= committed - 1, "it installed the leader's snapshot");
    assert_eq!(caught_up.state, cluster.nodes[&leader].state, "same state machine");
}

/// Thesis §3.10: leadership transfer hands over to a caught-up follower
/// without an election timeout, and no write is lost.
#[test]
fn leadership_transfer_hands_over_promptly() {
    let mut cluster = Cluster::new(3, 5);
    let leader = settle_leader(&mut cluster);
    let index = cluster.propose(leader).unwrap().unwrap();
    cluster.deliver_all().unwrap();
    let target = other_than(&cluster, &[leader]);

    cluster.transfer(leader, target).unwrap().unwrap();
    cluster.deliver_all().unwrap();
    assert_eq!(cluster.leader(), Some(target), "no tick needed");
    let again = cluster.propose(target).unwrap().unwrap();
    cluster.deliver_all().unwrap();
    assert!(again > index);
    assert!(cluster.acked.contains_key(&index) && cluster.acked.contains_key(&again));
}

/// Elects a leader by ticking everyone until one appears.
/// Thesis §6.4: a follower's read goes to the leader as ReadIndex. If the
/// request or its answer is lost, the read must fail (so the client retries)
/// within an election timeout rather than wait, and count against the
/// pending-read limit, forever.
#[test]
fn a_forwarded_read_whose_answer_is_lost_fails_within_an_election_timeout() {
    let mut config = Config::new(2, vec![1, 2, 3]);
    config.check_quorum = false;
    let election_ticks = config.election_ticks;
    let mut follower = Raft::new(config, MemStore::default()).unwrap();
    let heartbeat = Body::Heartbeat { commit: 0, round: 1 };
    follower.step(message(1, 2, 1, heartbeat)).unwrap();
    flush(&mut follower);

    follower.read_index(7).unwrap();
    let sent = flush(&mut follower);
    assert!(sent.iter().any(|m| m.to == 1 && m.body == Body::ReadIndex { ctx: 7 }));

    // The ReadIndex request is dropped; the leader keeps heartbeating.
    let mut failed = Vec::new();
    for tick in 0..election_ticks {
        follower.step(message(1, 2, 1, Body::Heartbeat { commit: 0, round: 2 })).unwrap();
        follower.tick().unwrap();
        let ready = follower.ready().unwrap();
        failed.extend(ready.reads_failed.iter().copied());
        assert!(ready.reads.is_empty(), "no answer arrived, tick {tick}");
        follower.advance(&ready).unwrap();
    }
    assert_eq!(failed, [7], "the lost read fails after {election_ticks} ticks");

    // A late answer for it is ignored; a new read with the same id is accepted.
    let late = Body::ReadIndexResponse { ctx: 7, index: 1 };
    follower.step(message(1, 2, 1, late)).unwrap();
    assert!(follower.ready().unwrap().reads.is_empty());
    follower.read_index(7).unwrap();
}

fn settle_leader(cluster: &mut Cluster) -> u64 {
    for _ in 0..ROUNDS_MAX {
        cluster.tick_all(1).unwrap();
        cluster.deliver_all().unwrap();
        if let Some(leader) = cluster.leader() {
            let committed = cluster.nodes[&leader].raft.as_ref().unwrap().committed();
            if committed > 0 {
                return leader;
            }
        }
    }
    panic!("no leader elected");
}

/// Ticks `group` (and everyone else, cut off) until a member of it leads.
fn elect_among(cluster: &mut Cluster, group: &[u64]) -> u64 {
    for _ in 0..ROUNDS_MAX {
        cluster.tick_all(1).unwrap();
        cluster.deliver_all().unwrap();
        let leaders: Vec<u64> = group
            .iter()
            .copied()
            .filter(|id| cluster.nodes[id].raft.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .collect();
        if let [leader] = leaders[..] {
            return leader;
        }
    }
    panic!("the group elected nobody");
}

fn term_of(cluster: &Cluster, id: u64) -> u64 {
    cluster.nodes[&id].raft.as_ref().unwrap().term()
}

fn other_than(cluster: &Cluster, not: &[u64]) -> u64 {
    cluster.members().iter().copied().find(|id| !not.contains(id)).unwrap()
}

#[test]
fn a_follower_whose_log_was_lost_says_so_at_the_next_heartbeat() {
    // Node 1 acknowledged entries up to 5 to leader 2 (its match index),
    // then lost its log: it starts empty under the same id. The leader's
    // heartbeat carries commit min(match, committed) = 5, past the end of
    // an empty log, which no follower that kept its log can see.
    let mut raft = Raft::new(Config::new(1, vec![1, 2, 3]), MemStore::default()).unwrap();
    let heartbeat = |commit| message(2, 1, 4, Body::Heartbeat { commit, round: 1 });
    raft.step(heartbeat(5)).unwrap();
    assert_eq!((raft.leader(), raft.lost_log()), (Some(2), Some(5)));
    assert_eq!(raft.committed(), 0, "nothing past its log is committed");
    // A heartbeat within the log (a leader that knows the truth) clears it,
    // as does another leader (new to its term, it claims nothing yet).
    raft.step(heartbeat(0)).unwrap();
    assert_eq!(raft.lost_log(), None);
    raft.step(heartbeat(5)).unwrap();
    raft.step(message(3, 1, 5, Body::Heartbeat { commit: 0, round: 1 })).unwrap();
    assert_eq!((raft.leader(), raft.lost_log()), (Some(3), None));
}

#[test]
fn a_follower_knows_the_leaders_commit_beyond_its_own_log() {
    // An empty follower refuses an append that does not follow its log, yet
    // learns from it how far the leader has committed: its own commit index
    // cannot pass its log, but how far it trails can be told.
    let mut raft = Raft::new(Config::new(1, vec![1, 2, 3]), MemStore::default()).unwrap();
    let append =
        Body::Append { prev_index: 40, prev_term: 2, entries: vec![entry(41, 2)], commit: 50 };
    raft.step(message(2, 1, 2, append)).unwrap();
    assert_eq!((raft.committed(), raft.leader_commit()), (0, 50));
    // Another leader starts from what it tells.
    raft.step(message(3, 1, 3, Body::Heartbeat { commit: 0, round: 1 })).unwrap();
    assert_eq!(raft.leader_commit(), 0);
}
