//! What consensus costs without IO: proposals per second through a 3-node
//! cluster of the Raft core alone (the simulator's in-memory stores and a
//! loss-free network that delivers in order), checks included.
//!
//! Run: `cargo bench --bench raft`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rdb::raft::sim::Cluster;

/// Ticks allowed for the first election.
const ELECTION_TICKS_MAX: u32 = 500;

fn elected(seed: u64) -> (Cluster, u64) {
    let mut cluster = Cluster::new(3, seed);
    for _ in 0..ELECTION_TICKS_MAX {
        cluster.tick_all(1).unwrap();
        cluster.deliver_all().unwrap();
        if let Some(leader) = cluster.leader() {
            return (cluster, leader);
        }
    }
    panic!("no leader");
}

fn proposals(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft-3-nodes");
    for batch in [1_u64, 64] {
        group.throughput(Throughput::Elements(batch));
        group.bench_function(BenchmarkId::new("proposals-per-round", batch), |b| {
            let (mut cluster, leader) = elected(1);
            let mut rounds = 0_u64;
            b.iter(|| {
                for _ in 0..batch {
                    cluster.propose(leader).unwrap().expect("the leader accepts");
                }
                cluster.deliver_all().unwrap();
                rounds += 1;
                // Keep the logs bounded: fold applied entries into snapshots.
                if rounds % 1024 == 0 {
                    for id in 1..=3 {
                        cluster.compact(id);
                    }
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, proposals);
criterion_main!(benches);
