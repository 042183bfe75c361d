//! Raft scenarios as golden scripts (in the style of etcd raft's
//! `testdata/*.txt` and toydb's goldenscripts): each file in
//! `tests/raft_scripts/` is a list of commands driving a simulated cluster
//! (`rdb::raft::sim`), each followed by `----` and the output it must
//! print. The simulator's safety checker runs after every step, and a
//! script ends with the cluster settled (healed, every acknowledged entry
//! applied by every member).
//!
//! `RDB_SCRIPTS_REWRITE=1 cargo test --test raft_scripts` rewrites the
//! expected output with what the commands print now (review the diff).
//!
//! Commands (ids are node ids; `A->B` names the messages from A to B):
//!
//! | command | does |
//! |---|---|
//! | `cluster N` | N voters, ids 1..=N, seed 1 |
//! | `campaign ID` | ticks node ID until it stands for election |
//! | `tick [N [ID ...]]` | N ticks (default 1) on every node, or only on those |
//! | `run N` | N rounds of one tick on every node and `deliver` |
//! | `deliver [A->B ...]` | delivers every message in flight (or only those), repeatedly, until none is left |
//! | `drop [A->B ...]` | loses every message in flight (or only those) |
//! | `propose ID [N]` | N client proposals at node ID |
//! | `add ID learner|voter at L` | starts server ID if new (knowing no members) and proposes adding it at L |
//! | `promote ID at L` / `remove ID at L` | proposes the change at L |
//! | `transfer L [TO]` | asks leader L to hand over (to the most caught-up voter if no TO) |
//! | `partition A,B / C,D` / `isolate ID` / `heal` | cuts links / restores them |
//! | `crash ID` / `restart ID` | loses what is not on disk / starts from it |
//! | `status` | one line per node: role, term, last, commit, membership |
//! | `settle` | heals, restarts everyone and checks every member applies everything acknowledged |

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use rdb::raft::sim::Cluster;
use rdb::raft::{Member, MemberRole, MembershipChange, NodeId, RaftError, Role};

/// Ticks `campaign` waits at most.
const CAMPAIGN_TICKS_MAX: u32 = 100;
/// Rounds of delivery `deliver` makes at most.
const DELIVER_ROUNDS_MAX: usize = 1_000;

/// Runs one command; its output, or why it failed.
fn run(cluster: &mut Option<Cluster>, command: &str) -> Result<String, String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    if words[0] == "cluster" {
        *cluster = Some(Cluster::new(number(words.get(1))?, 1));
        return Ok(String::new());
    }
    let cluster = cluster.as_mut().ok_or("no cluster yet")?;
    let id = || number(words.get(1));
    let mut out = String::new();
    match words[0] {
        "campaign" => campaign(cluster, id()?)?,
        "tick" => tick(cluster, &words)?,
        "deliver" => deliver(cluster, &links(&words[1..])?)?,
        "run" => {
            for _ in 0..id()? {
                cluster.tick_all(1)?;
                deliver(cluster, &BTreeSet::new())?;
            }
        }
        "drop" => {
            let only = links(&words[1..])?;
            cluster.network.in_flight.retain(|e| !selected(&only, e.message.from, e.message.to));
        }
        "propose" => out = propose(cluster, &words)?,
        "add" | "promote" | "remove" => out = change(cluster, &words)?,
        "transfer" => out = transfer(cluster, &words)?,
        "partition" => {
            let (left, right) =
                command["partition".len()..].split_once('/').ok_or("partition A,B / C,D")?;
            cluster.partition(&ids(left)?, &ids(right)?);
        }
        "isolate" => {
            let node = id()?;
            let others: Vec<NodeId> =
                cluster.members().iter().copied().filter(|&o| o != node).collect();
            cluster.partition(&[node], &others);
        }
        "heal" => cluster.heal(),
        "crash" => cluster.crash(id()?),
        "restart" => cluster.restart(id()?)?,
        "status" => {
            for node in cluster.nodes.values() {
                writeln!(out, "{}", node.describe()).ok();
            }
        }
        "settle" => {
            cluster.settle()?;
            out = "settled: every member applied everything acknowledged".into();
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    Ok(out.trim_end().to_string())
}

/// `tick [N [ID ...]]`.
fn tick(cluster: &mut Cluster, words: &[&str]) -> Result<(), String> {
    let n: u32 = words.get(1).map_or(Ok(1), |n| n.parse().map_err(|_| "tick N"))?;
    if words.len() <= 2 {
        return Ok(cluster.tick_all(n)?);
    }
    let only: Vec<NodeId> =
        words[2..].iter().map(|id| number(Some(id))).collect::<Result<_, _>>()?;
    for _ in 0..n {
        for &node in &only {
            cluster.tick(node)?;
        }
    }
    Ok(())
}

/// `propose ID [N]`: prints the indices accepted and how many were refused.
fn propose(cluster: &mut Cluster, words: &[&str]) -> Result<String, String> {
    let id = number(words.get(1))?;
    let count = words.get(2).map_or(Ok(1), |n| n.parse::<u64>().map_err(|_| "propose ID N"))?;
    let (mut first, mut last, mut refused) = (None, 0, 0);
    for _ in 0..count {
        match cluster.propose(id)? {
            Some(index) => {
                first.get_or_insert(index);
                last = index;
            }
            None => refused += 1,
        }
    }
    let mut out = match first {
        Some(first) if first == last => format!("proposed at {first}\n"),
        Some(first) => format!("proposed at {first}..={last}\n"),
        None => String::new(),
    };
    if refused > 0 {
        writeln!(out, "{refused} refused").ok();
    }
    Ok(out)
}

/// `transfer L [TO]`.
fn transfer(cluster: &mut Cluster, words: &[&str]) -> Result<String, String> {
    let to = words.get(2).map_or(Ok(0), |n| number(Some(n)))?;
    Ok(match cluster.transfer(number(words.get(1))?, to)? {
        Ok(chosen) => format!("transferring to {chosen}"),
        Err(error) => format!("refused: {error}"),
    })
}

fn number(word: Option<&&str>) -> Result<u64, String> {
    word.and_then(|w| w.parse().ok()).ok_or_else(|| "a number is missing".to_string())
}

fn ids(text: &str) -> Result<Vec<NodeId>, String> {
    text.split(',').map(|id| id.trim().parse().map_err(|_| format!("bad id {id:?}"))).collect()
}

fn links(words: &[&str]) -> Result<BTreeSet<(NodeId, NodeId)>, String> {
    words
        .iter()
        .map(|word| {
            let (a, b) = word.split_once("->").ok_or_else(|| format!("{word:?} is not A->B"))?;
            Ok((a.parse().map_err(|_| "bad id")?, b.parse().map_err(|_| "bad id")?))
        })
        .collect()
}

fn selected(only: &BTreeSet<(NodeId, NodeId)>, from: NodeId, to: NodeId) -> bool {
    only.is_empty() || only.contains(&(from, to))
}

fn deliver(cluster: &mut Cluster, only: &BTreeSet<(NodeId, NodeId)>) -> Result<(), String> {
    for _ in 0..DELIVER_ROUNDS_MAX {
        let Some(at) = cluster
            .network
            .in_flight
            .iter()
            .position(|e| selected(only, e.message.from, e.message.to))
        else {
            return Ok(());
        };
        cluster.deliver(at)?;
    }
    Err(format!("messages still in flight after {DELIVER_ROUNDS_MAX} deliveries"))
}

fn campaign(cluster: &mut Cluster, id: NodeId) -> Result<(), String> {
    for _ in 0..CAMPAIGN_TICKS_MAX {
        let role = cluster.nodes[&id].raft.as_ref().map(|raft| raft.role());
        if matches!(role, Some(Role::PreCandidate | Role::Candidate | Role::Leader)) {
            return Ok(());
        }
        cluster.tick(id)?;
    }
    Err(format!("node {id} did not campaign within {CAMPAIGN_TICKS_MAX} ticks"))
}

fn change(cluster: &mut Cluster, words: &[&str]) -> Result<String, String> {
    let id = number(words.get(1))?;
    let at_word = if words[0] == "add" { 3 } else { 2 };
    if words.get(at_word) != Some(&"at") {
        return Err(format!("{} ... at LEADER", words[0]));
    }
    let at = number(words.get(at_word + 1))?;
    let change = match words[0] {
        "add" => {
            let role = match words.get(2) {
                Some(&"learner") => MemberRole::Learner,
                Some(&"voter") => MemberRole::Voter,
                _ => return Err("add ID learner|voter at L".into()),
            };
            cluster.add_server(id);
            MembershipChange::Add(Member {
                id,
                role,
                peer: String::new(),
                client_url: String::new(),
            })
        }
        "promote" => MembershipChange::Promote(id),
        _ => MembershipChange::Remove(id),
    };
    Ok(match cluster.change(at, &change)? {
        Ok(index) => {
            let membership = cluster.membership_of(at).map(ToString::to_string).unwrap_or_default();
            format!("proposed at {index}: {membership}")
        }
        Err(RaftError::Busy) => {
            "refused: busy (no entry of this leader's term is committed yet)".into()
        }
        Err(error) => format!("refused: {error}"),
    })
}

fn run_file(path: &Path) -> Result<(), String> {
    let mut cluster = None;
    common::golden::check(path, |command| run(&mut cluster, command))
}

#[test]
fn every_script_prints_what_it_expects() {
    let paths = common::golden::scripts("tests/raft_scripts");
    let failures: Vec<String> = paths.iter().filter_map(|path| run_file(path).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
