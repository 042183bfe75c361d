//! Seeded random runs of whole simulated clusters (src/raft/sim): safety is
//! checked after every step, liveness after healing at the end. Membership
//! changes (learners added, promoted, any member removed, the leader
//! included, servers re-added) are among the random steps.
//!
//! CI runs a bounded set; `RDB_RAFT_SEEDS=N` runs N seeds per cluster size,
//! `RDB_TEST_SEED=S` replays one seed, `RDB_RAFT_STEPS=K` changes the steps.

mod common;

use rdb::raft::sim::{Cluster, Faults};

/// Seeds per cluster size in CI.
const SEEDS_DEFAULT: u64 = 1_000;
/// Steps per seed in CI.
const STEPS_DEFAULT: u64 = 5_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

/// Runs one seed to the end; the error names the seed and how to replay it.
fn run(name: &str, size: u64, seed: u64, steps: u64, faults: Faults) -> Result<Cluster, String> {
    let mut cluster = Cluster::new(size, seed);
    let outcome = cluster.run_random(steps, faults).and_then(|()| cluster.settle());
    outcome.map(|()| cluster).map_err(|why| {
        format!(
            "{size}-node cluster, seed {seed}: {why}\n  replay: RDB_TEST_SEED={seed} \
             RDB_RAFT_STEPS={steps} cargo test --release --test raft_sim {name}"
        )
    })
}

fn run_seeds(name: &str, size: u64, faults: Faults) {
    let steps = env_u64("RDB_RAFT_STEPS").unwrap_or(STEPS_DEFAULT);
    let seeds: Vec<u64> = match common::seed::replay() {
        Some(seed) => vec![seed],
        None => (0..env_u64("RDB_RAFT_SEEDS").unwrap_or(SEEDS_DEFAULT)).collect(),
    };
    let (mut acked, mut reads, mut crashes, mut terms, mut changes) = (0, 0, 0, 0, 0);
    for &seed in &seeds {
        let cluster = run(name, size, seed, steps, faults).unwrap_or_else(|why| panic!("{why}"));
        acked += cluster.stats.acked;
        reads += cluster.stats.reads;
        crashes += cluster.stats.crashes;
        terms += cluster.stats.term_max;
        changes += cluster.stats.changes;
    }
    eprintln!(
        "{size} nodes: {} seeds x {steps} steps: {acked} acknowledged proposals, {reads} reads, \
         {crashes} crashes, {terms} terms, {changes} membership changes",
        seeds.len()
    );
    // A run where nothing happens proves nothing: the workload must get
    // through despite the faults.
    assert!(acked > seeds.len() as u64, "too few proposals acknowledged: {acked}");
    assert!(reads > 0, "no read was served");
    assert!(changes >= seeds.len() as u64 / 4, "too few membership changes: {changes}");
}

#[test]
fn three_nodes() {
    run_seeds("three_nodes", 3, Faults::default());
}

#[test]
fn five_nodes() {
    run_seeds("five_nodes", 5, Faults::default());
}
