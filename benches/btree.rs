//! The B-tree state file beside redb and LMDB (through heed), same workload,
//! same run, same disk.
//!
//! Each engine first loads 1,000,000 random 16-byte keys with 100-byte values
//! in transactions of 1,000 with durable commits; that load is timed as a
//! whole and printed (`load:` lines). Then criterion measures, on the loaded
//! file: another transaction of 1,000 new random keys with a durable commit,
//! 1,000 random point reads of existing keys, and a full ordered scan.
//!
//! Run: `cargo bench --bench btree` (a few minutes; about 1 GB of scratch
//! files under target/).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use heed::types::Bytes;
use heed::CommitOrAbort;
use rdb::storage::btree::{Db, Durability, KeyRange};
use rdb::storage::disk::RealDisk;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const KEYS: usize = 1_000_000;
const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
const KEYS_PER_TRANSACTION: usize = 1_000;
const READS_PER_ITERATION: usize = 1_000;
const REDB_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");
const LMDB_MAP_BYTES: usize = 8 << 30;

type Key = [u8; KEY_BYTES];

/// What the benchmark asks of each engine.
trait Engine {
    /// One transaction holding `keys`, committed durably.
    fn insert(&mut self, keys: &[Key], value: &[u8]);
    /// Reads every key; returns how many were found.
    fn get_all(&self, keys: &[Key]) -> usize;
    /// Scans every entry in order; returns the count.
    fn scan(&self) -> usize;
}

struct Rdb(Db);
struct Redb(redb::Database);
/// The environment is leaked: heed ties a database to it by lifetime, and it
/// lives as long as the benchmark process anyway.
struct Lmdb(&'static heed::Env, heed::Database<'static, Bytes, Bytes>);

impl Rdb {
    fn open(dir: &Path) -> Self {
        let db = Db::open(Arc::new(RealDisk), dir.join("state.db")).unwrap();
        let mut txn = db.begin_write().unwrap();
        txn.create_tree("bench").unwrap();
        txn.commit([0; 32], Durability::Durable).unwrap();
        Rdb(db)
    }
}

impl Engine for Rdb {
    fn insert(&mut self, keys: &[Key], value: &[u8]) {
        let mut txn = self.0.begin_write().unwrap();
        for key in keys {
            txn.put("bench", key, value).unwrap();
        }
        txn.commit([0; 32], Durability::Durable).unwrap();
    }

    fn get_all(&self, keys: &[Key]) -> usize {
        let txn = self.0.begin_read();
        let tree = txn.open_tree("bench").unwrap().unwrap();
        keys.iter().filter(|key| black_box(tree.get(&key[..]).unwrap()).is_some()).count()
    }

    fn scan(&self) -> usize {
        let txn = self.0.begin_read();
        count_all(txn.range("bench", &KeyRange::all()).unwrap().map(Result::unwrap))
    }
}

impl Engine for Redb {
    fn insert(&mut self, keys: &[Key], value: &[u8]) {
        let txn = self.0.begin_write().unwrap();
        {
            let mut table = txn.open_table(REDB_TABLE).unwrap();
            for key in keys {
                table.insert(&key[..], value).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn get_all(&self, keys: &[Key]) -> usize {
        let txn = self.0.begin_read().unwrap();
        let table = txn.open_table(REDB_TABLE).unwrap();
        keys.iter().filter(|key| black_box(table.get(&key[..]).unwrap()).is_some()).count()
    }

    fn scan(&self) -> usize {
        let txn = self.0.begin_read().unwrap();
        let table = txn.open_table(REDB_TABLE).unwrap();
        count_all(table.iter().unwrap().map(Result::unwrap))
    }
}

impl Lmdb {
    fn open(dir: &Path) -> Self {
        // SAFETY (heed's contract): the environment is opened once, by this
        // process only, and never on a file another process maps.
        let env =
            unsafe { heed::EnvOpenOptions::new().map_size(LMDB_MAP_BYTES).open(dir).unwrap() };
        let env: &'static heed::Env = Box::leak(Box::new(env));
        let txn = env.write_txn().unwrap();
        let db = env
            .create_databases_and_commit(txn, |opener, txn| {
                opener
                    .create_database::<Bytes, Bytes>(txn, None)
                    .map(CommitOrAbort::<_, ()>::Commit)
            })
            .unwrap()
            .unwrap_commit();
        Lmdb(env, db)
    }
}

impl Engine for Lmdb {
    fn insert(&mut self, keys: &[Key], value: &[u8]) {
        let mut txn = self.0.write_txn().unwrap();
        for key in keys {
            self.1.put(&mut txn, &key[..], value).unwrap();
        }
        txn.commit().unwrap();
    }

    fn get_all(&self, keys: &[Key]) -> usize {
        let txn = self.0.read_txn().unwrap();
        keys.iter().filter(|key| black_box(self.1.get(&txn, &key[..]).unwrap()).is_some()).count()
    }

    fn scan(&self) -> usize {
        let txn = self.0.read_txn().unwrap();
        count_all(self.1.iter(&txn).unwrap().map(Result::unwrap))
    }
}

/// Counts items, handing each to `black_box` so that none is optimised away.
fn count_all<T>(items: impl Iterator<Item = T>) -> usize {
    let mut count = 0;
    for item in items {
        black_box(item);
        count += 1;
    }
    count
}

fn random_keys(seed: u64, count: usize) -> Vec<Key> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count).map(|_| std::array::from_fn(|_| rng.u8(..))).collect()
}

/// Loads the keys in durable transactions of 1,000 and prints the rate.
fn load(name: &str, engine: &mut dyn Engine, keys: &[Key], value: &[u8]) {
    let started = Instant::now();
    for batch in keys.chunks(KEYS_PER_TRANSACTION) {
        engine.insert(batch, value);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("load: {name}: {} keys in {seconds:.1} s = {:.0} keys/s (durable transactions of {KEYS_PER_TRANSACTION})", keys.len(), keys.len() as f64 / seconds);
}

fn compare(c: &mut Criterion) {
    let keys = random_keys(1, KEYS);
    let value = vec![0x5a; VALUE_BYTES];
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut engines: Vec<(&str, Box<dyn Engine>)> = Vec::new();
    for name in ["rdb", "redb", "lmdb"] {
        let dir = scratch.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut engine: Box<dyn Engine> = match name {
            "rdb" => Box::new(Rdb::open(&dir)),
            "redb" => Box::new(Redb(redb::Database::create(dir.join("bench.redb")).unwrap())),
            _ => Box::new(Lmdb::open(&dir)),
        };
        load(name, engine.as_mut(), &keys, &value);
        engines.push((name, engine));
    }

    let mut group = c.benchmark_group("btree_insert_txn_1000_durable");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(KEYS_PER_TRANSACTION as u64));
    for (name, engine) in &mut engines {
        let mut more = random_keys(2, 10_000_000).into_iter();
        group.bench_function(BenchmarkId::from_parameter(*name), |b| {
            b.iter(|| {
                let batch: Vec<Key> = more.by_ref().take(KEYS_PER_TRANSACTION).collect();
                engine.insert(&batch, &value);
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("btree_point_reads");
    group.sample_size(30).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(READS_PER_ITERATION as u64));
    for (name, engine) in &engines {
        let mut rng = fastrand::Rng::with_seed(3);
        group.bench_function(BenchmarkId::from_parameter(*name), |b| {
            b.iter(|| {
                let start = rng.usize(..KEYS - READS_PER_ITERATION);
                assert_eq!(
                    engine.get_all(&keys[start..start + READS_PER_ITERATION]),
                    READS_PER_ITERATION
                );
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("btree_full_scan");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(KEYS as u64));
    for (name, engine) in &engines {
        group.bench_function(BenchmarkId::from_parameter(*name), |b| {
            b.iter(|| assert!(engine.scan() >= KEYS))
        });
    }
    group.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
