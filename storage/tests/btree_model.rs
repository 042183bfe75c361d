//! Model-based tests of the B-tree state file on the simulated disk.
//!
//! Each seed runs random write transactions (put, delete, get, create, drop,
//! list) against a `Db` and a model (`BTreeMap` of `BTreeMap`s), committing
//! durably or deferred, or aborting; syncs and reopens now and then (a reopen
//! loses deferred commits: the model keeps the durable state apart). After
//! every commit a reader compares the whole content and random ranges with
//! the model, and `check` accounts for every page. Old readers are held open
//! across later commits and must still see their snapshot, which fails if a
//! page they can reach is reused too early.
//!
//! `RDB_TEST_SEED=<seed>` replays one seed; `RDB_BTREE_MODEL_SEEDS=<n>` runs
//! more.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use rdb_storage::btree::{Db, Durability, KeyRange, ReadTxn, WriteTxn};
use rdb_storage::disk::SimDisk;

const SEEDS_DEFAULT: u64 = 60;
const TRANSACTIONS_PER_SEED: usize = 40;
const OPS_PER_TRANSACTION_MAX: usize = 60;
const TREE_NAMES: [&str; 3] = ["alpha", "beta", "gamma"];
const PATH: &str = "/data/state/state.db";

type Trees = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// One seeded run.
struct Run {
    seed: u64,
    rng: fastrand::Rng,
    disk: SimDisk,
    db: Db,
    /// What the newest commit holds.
    committed: Trees,
    /// What the newest durable commit holds.
    durable: Trees,
    /// Readers kept open across commits, with what they must see.
    old_readers: Vec<(ReadTxn, Trees)>,
    /// Keys each tree draws from: small pools make overwrites and deletes hit.
    key_pool: Vec<Vec<u8>>,
}

#[test]
fn btree_matches_its_model() {
    let seeds = common::seeds("RDB_BTREE_MODEL_SEEDS", SEEDS_DEFAULT);
    for seed in seeds {
        let _report = common::SeedReport { target: "btree_model", seed };
        Run::new(seed).run();
    }
}

impl Run {
    fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let disk = SimDisk::new(seed);
        let db = Db::open(Arc::new(disk.clone()), PATH).unwrap();
        let pool_size = rng.usize(20..400);
        let key_pool = (0..pool_size).map(|_| random_key(&mut rng)).collect();
        Run {
            seed,
            rng,
            disk,
            db,
            committed: Trees::new(),
            durable: Trees::new(),
            old_readers: Vec::new(),
            key_pool,
        }
    }

    fn run(mut self) {
        for _ in 0..TRANSACTIONS_PER_SEED {
            self.transaction();
            match self.rng.u8(..20) {
                0 => self.reopen(),
                1 => {
                    self.db.sync().unwrap();
                    self.durable = self.committed.clone();
                }
                2 => self.old_readers.clear(),
                _ => {}
            }
            self.check_old_readers();
        }
    }

    fn transaction(&mut self) {
        let db = self.db.clone();
        let mut txn = db.begin_write().unwrap();
        let mut model = self.committed.clone();
        for _ in 0..self.rng.usize(1..=OPS_PER_TRANSACTION_MAX) {
            self.op(&mut txn, &mut model);
        }
        match self.rng.u8(..10) {
            0 => drop(txn), // abort
            1..=4 => {
                txn.commit([self.rng.u8(..); 32], Durability::Durable).unwrap();
                self.committed = model;
                self.durable = self.committed.clone();
            }
            _ => {
                txn.commit([0; 32], Durability::Deferred).unwrap();
                self.committed = model;
            }
        }
        let (reader, expected) = (self.db.begin_read(), self.committed.clone());
        self.check_reader_sees(&reader, &expected);
        if self.rng.u8(..4) == 0 {
            self.old_readers.push((self.db.begin_read(), self.committed.clone()));
        }
    }

    fn op(&mut self, txn: &mut WriteTxn<'_>, model: &mut Trees) {
        let name = TREE_NAMES[self.rng.usize(..TREE_NAMES.len())];
        let key = self.key_pool[self.rng.usize(..self.key_pool.len())].clone();
        let seed = self.seed;
        match self.rng.u8(..100) {
            0..=2 => {
                let existed = model.remove(name).is_some();
                assert_eq!(txn.drop_tree(name).unwrap(), existed, "seed {seed}: drop {name}");
            }
            3..=9 => {
                let created = !model.contains_key(name);
                model.entry(name.to_owned()).or_default();
                assert_eq!(txn.create_tree(name).unwrap(), created, "seed {seed}: create {name}");
            }
            10..=59 if model.contains_key(name) => {
                let value = random_value(&mut self.rng);
                txn.put(name, &key, &value).unwrap();
                model.get_mut(name).unwrap().insert(key, value);
            }
            60..=79 => {
                let expected = model.get_mut(name).and_then(|tree| tree.remove(&key));
                assert_eq!(txn.delete(name, &key).unwrap(), expected, "seed {seed}: delete");
            }
            80..=97 => {
                let expected = model.get(name).and_then(|tree| tree.get(&key)).cloned();
                assert_eq!(txn.get(name, &key).unwrap(), expected, "seed {seed}: get");
            }
            _ => assert_eq!(txn.list_trees().unwrap(), model.keys().cloned().collect::<Vec<_>>()),
        }
    }

    fn reopen(&mut self) {
        self.old_readers.clear();
        self.db = Db::open(Arc::new(self.disk.clone()), PATH).unwrap();
        self.committed = self.durable.clone();
        let (reader, expected) = (self.db.begin_read(), self.committed.clone());
        self.check_reader_sees(&reader, &expected);
    }

    fn check_old_readers(&mut self) {
        for (reader, expected) in &self.old_readers {
            self.check_contents(reader, expected);
        }
    }

    /// Full contents, random ranges and the page accounting.
    fn check_reader_sees(&mut self, reader: &ReadTxn, expected: &Trees) {
        self.check_contents(reader, expected);
        for _ in 0..4 {
            self.check_random_range(reader, expected);
        }
        let report = reader.check().unwrap_or_else(|e| panic!("seed {}: check: {e}", self.seed));
        assert_eq!(report.trees, expected.len() as u64);
        assert_eq!(report.entries, expected.values().map(|t| t.len() as u64).sum::<u64>());
    }

    fn check_contents(&self, reader: &ReadTxn, expected: &Trees) {
        assert_eq!(
            reader.list_trees().unwrap(),
            expected.keys().cloned().collect::<Vec<_>>(),
            "seed {}",
            self.seed
        );
        for (name, tree) in expected {
            let got: Vec<(Vec<u8>, Vec<u8>)> = reader
                .range(name, &KeyRange::all())
                .unwrap()
                .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect();
            let want: Vec<(Vec<u8>, Vec<u8>)> =
                tree.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert!(
                got == want,
                "seed {}: tree {name}: {} entries, expected {}",
                self.seed,
                got.len(),
                want.len()
            );
        }
    }

    fn check_random_range(&mut self, reader: &ReadTxn, expected: &Trees) {
        let Some((name, tree)) = expected.iter().nth(self.rng.usize(..expected.len().max(1)))
        else {
            return;
        };
        let mut bound = || (self.rng.bool()).then(|| random_key(&mut self.rng));
        let range = KeyRange {
            start: bound(),
            end: bound(),
            prefix: bound().map(|p| p[..1].to_vec()),
            reverse: self.rng.bool(),
        };
        let mut want: Vec<&Vec<u8>> = tree
            .keys()
            .filter(|k| range.start.as_ref().is_none_or(|s| *k >= s))
            .filter(|k| range.end.as_ref().is_none_or(|e| *k < e))
            .filter(|k| range.prefix.as_ref().is_none_or(|p| k.starts_with(p)))
            .collect();
        if range.reverse {
            want.reverse();
        }
        let got: Vec<Vec<u8>> =
            reader.range(name, &range).unwrap().map(|item| item.unwrap().0.to_vec()).collect();
        assert!(
            got.iter().eq(want.iter().copied()),
            "seed {}: range {range:?} on {name}",
            self.seed
        );
    }
}

/// Short keys from a small alphabet (so prefixes and neighbours collide),
/// now and then a long one (multi-page nodes).
fn random_key(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = match rng.u8(..50) {
        0 => rng.usize(1000..=4096),
        1..=5 => rng.usize(40..200),
        _ => rng.usize(1..12),
    };
    (0..len).map(|_| b"abcdef\x00\xff"[rng.usize(..8)]).collect()
}

/// Mostly small values, some large enough for overflow runs.
fn random_value(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = match rng.u8(..40) {
        0 => rng.usize(1025..20_000),
        1..=3 => rng.usize(500..1025),
        _ => rng.usize(0..150),
    };
    let fill = rng.u8(..);
    (0..len).map(|i: usize| fill.wrapping_add(i.to_le_bytes()[0])).collect()
}
