//! Snapshot creation and installation rates on a state file of at least
//! 256 MiB.
//!
//! The state file is loaded once with 1,000-byte alphanumeric values (about
//! 6 bits of entropy per byte, so LZ4 has something, but not everything, to
//! gain) in deferred transactions, then synced. Criterion then measures:
//!
//! - `create`: a snapshot from a read transaction, as a node takes one:
//!   compact export, SHA-256, LZ4, write, fsync, rename;
//! - `install`: what a follower does with a received snapshot: verify and
//!   unpack into a new state file, fsync, open it.
//!
//! Throughput is reported in bytes of the (uncompressed) state file.
//! Run: `cargo bench --bench snapshot` (about a minute; ~800 MB of scratch
//! files under target/).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rdb::raft::Position;
use rdb::storage::btree::{Db, Durability, USER_META_BYTES};
use rdb::storage::disk::RealDisk;

const STATE_BYTES_MIN: u64 = 256 << 20;
const VALUE_BYTES: usize = 1_000;
const KEYS_PER_TRANSACTION: u32 = 10_000;

fn load(dir: &std::path::Path) -> Db {
    let db = Db::open(Arc::new(RealDisk), dir.join("state.db")).expect("state file");
    let mut rng = fastrand::Rng::with_seed(256);
    let started = Instant::now();
    let mut keys = 0u32;
    while db.begin_read().page_count() * 4096 < STATE_BYTES_MIN {
        let mut txn = db.begin_write().expect("writer");
        txn.create_tree("d/bench").expect("tree");
        for _ in 0..KEYS_PER_TRANSACTION {
            let value: String = (0..VALUE_BYTES).map(|_| rng.alphanumeric()).collect();
            txn.put("d/bench", format!("key-{keys:010}").as_bytes(), value.as_bytes())
                .expect("put");
            keys += 1;
        }
        txn.commit([0; USER_META_BYTES], Durability::Deferred).expect("commit");
    }
    db.sync().expect("sync");
    let bytes = db.begin_read().page_count() * 4096;
    println!("load: {keys} keys, state file {} MiB, {:?}", bytes >> 20, started.elapsed());
    db
}

fn snapshots(c: &mut Criterion) {
    let scratch = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("snapshot-bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let db = load(&scratch);
    let dir = rdb::node::SnapshotDir::open(Arc::new(RealDisk), &scratch.join("snapshots"))
        .expect("snapshot directory");
    let meta = Position { index: 1, term: 1 };
    let (path, header) = dir
        .write(&db.begin_read(), meta, &rdb::raft::Membership::voters_only(&[1, 2, 3]))
        .expect("snapshot");
    let file_bytes = std::fs::metadata(&path).expect("file").len();
    println!(
        "snapshot: state {} MiB -> file {} MiB (LZ4)",
        header.content_bytes >> 20,
        file_bytes >> 20
    );

    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(header.content_bytes));
    group.bench_function("create", |b| {
        b.iter(|| {
            dir.write(&db.begin_read(), meta, &rdb::raft::Membership::voters_only(&[1, 2, 3]))
                .expect("snapshot")
        });
    });
    let installed = scratch.join("installed.db");
    group.bench_function("install", |b| {
        b.iter(|| {
            let mut out = std::fs::File::create(&installed).expect("create");
            dir.unpack(&path, &mut out).expect("unpack");
            out.sync_all().expect("sync");
            drop(out);
            Db::open(Arc::new(RealDisk), &installed).expect("open")
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&scratch);
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
