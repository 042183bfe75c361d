//! Model-based tests of the WAL on the simulated disk.
//!
//! Each seed drives a random sequence of appends, syncs, reads, suffix
//! truncations, prefix purges, resets, hard-state saves, crashes and injected
//! IO errors against a WAL and against a model (the log as a map from index to
//! entry, plus what is known to be durable). After every crash the recovered
//! log must hold every synced entry, may hold some unsynced ones, and must
//! hold nothing that was not appended whole: it lies between the model's
//! synced prefix and its full log. When an injected error cut an operation
//! short, the recovered log must match the model from before or after it.
//!
//! A failure names its seed; `RDB_TEST_SEED=<seed>` replays just that one and
//! `RDB_WAL_MODEL_SEEDS=<n>` runs more seeds (a soak); `RDB_TEST_TRACE=1`
//! prints every operation.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rdb_storage::disk::SimDisk;
use rdb_storage::wal::{Entry, HardState, Wal, WalOptions};
use rdb_storage::Error;

/// Seeds run by default: enough to reach every path, a few seconds in all.
const SEEDS_DEFAULT: u64 = 300;
/// Operations per seed.
const STEPS_PER_SEED: usize = 250;
/// Recovery attempts after a crash before the test gives up (an injected
/// error may also hit recovery).
const REOPEN_ATTEMPTS_MAX: usize = 4;

/// What the WAL must contain, as far as the test knows.
#[derive(Debug, Clone, Default)]
struct ModelLog {
    /// Entries by index: term and payload. May hold purged entries.
    entries: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The last appended index.
    last: u64,
    /// Every index up to here is durable.
    synced: u64,
    /// Entries up to here may have been discarded by a purge.
    purged: u64,
    /// The last saved hard state.
    hard_state: HardState,
}

/// One step of the random sequence.
#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Entry>),
    Sync,
    Truncate(u64),
    Purge(u64),
    SaveHardState(HardState),
    Read { lo: u64, hi: u64, max_bytes: usize },
    Crash,
}

/// The state of one seeded run.
struct Run {
    seed: u64,
    rng: fastrand::Rng,
    disk: SimDisk,
    options: WalOptions,
    wal: Option<Wal>,
    model: ModelLog,
    /// The term new entries get; never below any term in the log.
    term: u64,
}

#[test]
fn wal_matches_its_model_through_crashes_and_io_errors() {
    let seeds = common::seeds("RDB_WAL_MODEL_SEEDS", SEEDS_DEFAULT);
    for seed in seeds {
        let _report = common::SeedReport { target: "wal_model", seed };
        Run::new(seed).run();
    }
}

impl Run {
    fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let segment_bytes_max = [1024, 4096, 64 << 10][rng.usize(..3)];
        let disk = SimDisk::new(seed ^ 0x5eed);
        let options = WalOptions { segment_bytes_max };
        let wal = Wal::open(Arc::new(disk.clone()), "/data/wal", options).expect("a new WAL opens");
        Run { seed, rng, disk, options, wal: Some(wal), model: ModelLog::default(), term: 1 }
    }

    fn wal(&mut self) -> &mut Wal {
        self.wal.as_mut().expect("open between steps")
    }

    fn run(mut self) {
        for step in 0..STEPS_PER_SEED {
            if self.rng.u8(..40) == 0 {
                // Fail one of the next few disk operations, whatever they are.
                self.disk.fail_at(self.disk.ops() + self.rng.u64(..8));
            }
            let op = self.next_op();
            if std::env::var_os("RDB_TEST_TRACE").is_some() {
                eprintln!("step {step}: {}", describe(&op));
            }
            let before = self.cut_short_model(&op);
            let after = self.apply_to_model(&op);
            match self.apply_to_wal(&op) {
                Ok(()) => self.model = after,
                Err(error) => {
                    assert!(
                        error.is_fatal(),
                        "seed {} step {step}: {op:?} refused: {error}",
                        self.seed
                    );
                    self.crash_and_check(&[before, after]);
                }
            }
            if matches!(op, Op::Crash) {
                let model = self.model.clone();
                self.crash_and_check(&[model]);
            }
        }
    }

    fn next_op(&mut self) -> Op {
        let m = &self.model;
        let first = m.purged + 1;
        let commit = m.hard_state.commit;
        match self.rng.u8(..100) {
            0..=34 => Op::Append(self.batch()),
            35..=49 => Op::Sync,
            50..=59 if m.last > commit => {
                Op::Truncate(self.rng.u64(commit.max(first - 1) + 1..=m.last + 1))
            }
            60..=64 => Op::Purge(self.rng.u64(first - 1..=commit.max(first - 1))),
            65..=66 => Op::Purge(m.last + self.rng.u64(1..4)),
            67..=76 => Op::SaveHardState(self.next_hard_state()),
            77..=94 => {
                let lo = self.rng.u64(first..=m.last + 1);
                let hi = self.rng.u64(lo..=m.last + 1);
                Op::Read { lo, hi, max_bytes: [0, 100, 700, 1 << 20][self.rng.usize(..4)] }
            }
            95..=99 => Op::Crash,
            _ => Op::Sync,
        }
    }

    fn batch(&mut self) -> Vec<Entry> {
        if self.rng.u8(..8) == 0 {
            self.term += 1;
        }
        let count = self.rng.u64(1..=12);
        let start = self.model.last + 1;
        (start..start + count)
            .map(|index| {
                let len = if self.rng.u8(..20) == 0 {
                    self.rng.usize(..3000)
                } else {
                    self.rng.usize(..120)
                };
                let payload = std::iter::repeat_with(|| self.rng.u8(..)).take(len).collect();
                Entry { index, term: self.term, payload }
            })
            .collect()
    }

    fn next_hard_state(&mut self) -> HardState {
        let current = self.model.hard_state;
        let term = current.term.max(self.term) + self.rng.u64(..2);
        let vote = if term == current.term && current.vote != 0 {
            current.vote
        } else {
            self.rng.u64(..4)
        };
        let commit = self.rng.u64(current.commit..=self.model.synced.max(current.commit));
        self.term = self.term.max(term);
        HardState { term, vote, commit }
    }

    /// What an interrupted `op` may leave besides its full effect (FORMAT.md's
    /// crash protocols): an interrupted truncation leaves a prefix of the old
    /// log at least up to the cut, and an interrupted purge or reset a suffix.
    fn cut_short_model(&self, op: &Op) -> ModelLog {
        let mut m = self.model.clone();
        match op {
            Op::Truncate(from) => m.synced = m.synced.min(from - 1),
            Op::Purge(upto) => m.purged = m.purged.max(*upto),
            _ => {}
        }
        m
    }

    /// The model after `op` succeeds.
    fn apply_to_model(&self, op: &Op) -> ModelLog {
        let mut m = self.model.clone();
        match op {
            Op::Append(entries) => {
                for e in entries {
                    m.entries.insert(e.index, (e.term, e.payload.clone()));
                }
                m.last += entries.len() as u64;
            }
            Op::Sync => m.synced = m.last,
            Op::Truncate(from) => {
                m.entries.split_off(from);
                m.last = from - 1;
                m.synced = from - 1;
            }
            Op::Purge(upto) if *upto > m.last => {
                m.entries.clear();
                (m.last, m.synced, m.purged) = (*upto, *upto, *upto);
            }
            Op::Purge(upto) => m.purged = m.purged.max(*upto),
            Op::SaveHardState(state) => m.hard_state = *state,
            Op::Read { .. } | Op::Crash => {}
        }
        m
    }

    fn apply_to_wal(&mut self, op: &Op) -> Result<(), Error> {
        match op {
            Op::Append(entries) => self.wal().append(entries),
            Op::Sync => self.wal().sync(),
            Op::Truncate(from) => self.wal().truncate_suffix(*from),
            Op::Purge(upto) => self.wal().purge_prefix(*upto),
            Op::SaveHardState(state) => self.wal().save_hard_state(*state),
            Op::Read { lo, hi, max_bytes } => self.check_read(*lo, *hi, *max_bytes),
            Op::Crash => Ok(()),
        }
    }

    /// A read returns the model's entries, as many as the byte budget allows.
    fn check_read(&mut self, lo: u64, hi: u64, max_bytes: usize) -> Result<(), Error> {
        let wal = self.wal.as_ref().expect("open");
        let lo = lo.max(wal.first_index());
        let hi = hi.max(lo);
        let got = wal.entries(lo, hi, max_bytes)?;
        let want: Vec<&(u64, Vec<u8>)> = self.model.entries.range(lo..hi).map(|(_, e)| e).collect();
        assert_eq!(
            got.len().min(1),
            want.len().min(1),
            "seed {}: read {lo}..{hi} returned nothing",
            self.seed
        );
        let mut used = 0;
        for (entry, (term, payload)) in got.iter().zip(&want) {
            assert_eq!(
                (entry.term, &entry.payload),
                (*term, payload),
                "seed {}: entry {}",
                self.seed,
                entry.index
            );
            used += 24 + payload.len();
        }
        assert!(got.len() <= 1 || used <= max_bytes, "seed {}: read past its budget", self.seed);
        if let Some((_, next)) = want.get(got.len()) {
            assert!(used + 24 + next.len() > max_bytes, "seed {}: read stopped early", self.seed);
        }
        for (index, (term, _)) in self.model.entries.range(wal.first_index()..) {
            assert_eq!(wal.term(*index), Some(*term), "seed {}: term of {index}", self.seed);
        }
        assert_eq!(wal.term(wal.last_index() + 1), None);
        Ok(())
    }

    /// Crashes the disk, reopens the WAL and checks it against `candidates`.
    fn crash_and_check(&mut self, candidates: &[ModelLog]) {
        self.wal = None;
        for _ in 0..REOPEN_ATTEMPTS_MAX {
            self.disk.crash();
            match Wal::open(Arc::new(self.disk.clone()), Path::new("/data/wal"), self.options) {
                Ok(wal) => {
                    self.wal = Some(wal);
                    break;
                }
                Err(error) => assert!(
                    matches!(error, Error::Io { .. }),
                    "seed {}: reopen: {error}",
                    self.seed
                ),
            }
        }
        let wal = self.wal.as_ref().expect("the WAL reopens after a crash");
        let problems: Vec<String> =
            candidates.iter().filter_map(|m| mismatch(wal, m).err()).collect();
        assert!(
            problems.len() < candidates.len(),
            "seed {}: recovered log matches no model: {problems:?}",
            self.seed
        );
        self.model = recovered_model(wal);
    }
}

/// One line for the trace: entries by index and term, not payloads.
fn describe(op: &Op) -> String {
    match op {
        Op::Append(entries) => {
            let last = entries.last().expect("batches are not empty");
            format!(
                "append {}..={} term {} ({} entries)",
                entries[0].index,
                last.index,
                last.term,
                entries.len()
            )
        }
        other => format!("{other:?}"),
    }
}

/// Whether a recovered WAL is a legal outcome of a crash in state `m`.
fn mismatch(wal: &Wal, m: &ModelLog) -> Result<(), String> {
    if wal.hard_state() != m.hard_state {
        return Err(format!("hard state {:?}, expected {:?}", wal.hard_state(), m.hard_state));
    }
    if wal.last_index() < m.synced || wal.last_index() > m.last {
        return Err(format!("last index {} outside {}..={}", wal.last_index(), m.synced, m.last));
    }
    if wal.first_index() > m.purged + 1 {
        return Err(format!("first index {} but only {} was purged", wal.first_index(), m.purged));
    }
    let entries = wal
        .entries(wal.first_index(), wal.last_index() + 1, usize::MAX)
        .map_err(|e| e.to_string())?;
    for entry in entries {
        match m.entries.get(&entry.index) {
            Some((term, payload)) if *term == entry.term && *payload == entry.payload => {}
            _ => return Err(format!("entry {} was never appended", entry.index)),
        }
    }
    Ok(())
}

/// The model of a freshly recovered WAL: everything in it is durable.
fn recovered_model(wal: &Wal) -> ModelLog {
    let entries =
        wal.entries(wal.first_index(), wal.last_index() + 1, usize::MAX).expect("readable");
    ModelLog {
        entries: entries.into_iter().map(|e| (e.index, (e.term, e.payload))).collect(),
        last: wal.last_index(),
        synced: wal.last_index(),
        purged: wal.first_index() - 1,
        hard_state: wal.hard_state(),
    }
}
