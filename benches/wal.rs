//! WAL append throughput beside the disk's own limit.
//!
//! Each case appends `batch` records of `payload` bytes and makes them durable
//! with one `sync`: the group commit a node does for the proposals that
//! arrived meanwhile. Beside it, in the same run and on the same file system,
//! the baseline writes the same number of bytes to a plain file with one
//! `write` and one `sync_data`: the fastest that data can be made durable
//! here. Both bound their disk use the same way: the WAL purges sealed
//! segments, the baseline starts a new file, every `FILE_BYTES_MAX`.
//!
//! Run: `cargo bench --bench wal`. Throughput is in bytes of records written
//! (headers included), so the two sides compare directly; syncs per second
//! are elements per second divided by the batch size.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rdb::storage::disk::RealDisk;
use rdb::storage::wal::{Entry, Wal, WalOptions};

/// Bytes of a WAL record header; the baseline writes them too.
const RECORD_HEADER_BYTES: usize = 24;
/// Both sides drop what they wrote once this much has accumulated.
const FILE_BYTES_MAX: u64 = 64 << 20;
const PAYLOAD_BYTES: [usize; 2] = [100, 4096];
const BATCH_RECORDS: [usize; 3] = [1, 16, 256];

fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a scratch directory")
}

/// Appends one batch to the WAL and syncs it, purging old segments as needed.
fn wal_append_sync(wal: &mut Wal, batch: &mut [Entry]) {
    let first = wal.last_index() + 1;
    for (offset, entry) in batch.iter_mut().enumerate() {
        entry.index = first + offset as u64;
    }
    wal.append(batch).unwrap();
    wal.sync().unwrap();
    if wal.bytes() > FILE_BYTES_MAX {
        wal.purge_prefix(wal.last_index()).unwrap();
    }
}

/// A plain file appended with one write and one sync_data per batch.
struct Baseline {
    dir: PathBuf,
    file: File,
    written: u64,
    generation: u64,
}

impl Baseline {
    fn new(dir: &Path) -> Self {
        let baseline = Baseline {
            dir: dir.to_path_buf(),
            file: open_plain(dir, 0),
            written: 0,
            generation: 0,
        };
        baseline.file.sync_all().unwrap();
        baseline
    }

    fn write_sync(&mut self, bytes: &[u8]) {
        self.file.write_all(bytes).unwrap();
        self.file.sync_data().unwrap();
        self.written += bytes.len() as u64;
        if self.written > FILE_BYTES_MAX {
            fs::remove_file(self.dir.join(format!("plain-{}", self.generation))).unwrap();
            self.generation += 1;
            self.file = open_plain(&self.dir, self.generation);
            self.written = 0;
        }
    }
}

fn open_plain(dir: &Path, generation: u64) -> File {
    let path = dir.join(format!("plain-{generation}"));
    OpenOptions::new().create(true).append(true).open(path).unwrap()
}

fn append_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_sync");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for payload in PAYLOAD_BYTES {
        for batch in BATCH_RECORDS {
            let record_bytes = payload + RECORD_HEADER_BYTES;
            group.throughput(Throughput::Bytes((batch * record_bytes) as u64));
            let case = format!("{payload}B x{batch}");

            let dir = bench_dir();
            let mut wal =
                Wal::open(Arc::new(RealDisk), dir.path().join("wal"), WalOptions::default())
                    .unwrap();
            let mut entries: Vec<Entry> = (0..batch)
                .map(|_| Entry { index: 0, term: 1, payload: vec![0xab; payload] })
                .collect();
            group.bench_function(BenchmarkId::new("rdb_wal", &case), |b| {
                b.iter(|| wal_append_sync(&mut wal, &mut entries));
            });
            drop(wal);

            let dir = bench_dir();
            let mut baseline = Baseline::new(dir.path());
            let bytes = vec![0xab; batch * record_bytes];
            group.bench_function(BenchmarkId::new("plain_file", &case), |b| {
                b.iter(|| baseline.write_sync(&bytes));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, append_throughput);
criterion_main!(benches);
