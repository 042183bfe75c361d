//! How full the state file's nodes are after random inserts, and what an
//! insert costs: `cargo run --release -p rdb-storage --example fill --
//! [keys, 500000] [keys per transaction, 40]`.
//!
//! Inserts random 16-character keys with 100-byte values into a fresh state
//! file in a temporary directory, in deferred transactions of the given
//! size (the node's apply batches), syncing every 50 transactions (as the
//! node's 200 ms sync does under load), then prints the file's bytes per
//! key, the node pages' bytes per key, the free pages, and the wall time
//! per insert (one thread: that is its CPU plus the writes' wait); every
//! half million keys a line on stderr gives that step's wall and CPU time
//! per insert.

use std::sync::Arc;

use rdb_storage::btree::{Db, Durability};
use rdb_storage::disk::RealDisk;

/// Transactions between syncs.
const SYNC_EVERY: u64 = 50;
/// Inserts between two progress lines on stderr.
const STEP_KEYS: u64 = 500_000;

/// CPU seconds (user and system) this process has used so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes only into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args().nth(n).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (keys, batch) = (arg(1, 500_000), arg(2, 40).max(1));
    let dir = tempfile::tempdir()?;
    let db = Db::open(Arc::new(RealDisk), dir.path().join("state.db"))?;
    let mut txn = db.begin_write()?;
    txn.create_tree("c")?;
    txn.commit([0; 32], Durability::Durable)?;
    let value = [7u8; 100];
    let mut state: u64 = 1;
    let started = std::time::Instant::now();
    let (mut inserted, mut commits) = (0, 0);
    let (mut step_started, mut step_cpu) = (std::time::Instant::now(), cpu_seconds());
    while inserted < keys {
        let mut txn = db.begin_write()?;
        for _ in 0..batch.min(keys - inserted) {
            // A 64-bit LCG, scrambled: a fixed, repeatable key sequence.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let key = format!("{:016x}", state ^ (state >> 29));
            txn.put("c", key.as_bytes(), &value)?;
            inserted += 1;
        }
        txn.commit([0; 32], Durability::Deferred)?;
        commits += 1;
        if commits % SYNC_EVERY == 0 {
            db.sync()?;
        }
        if inserted % STEP_KEYS < batch {
            let wall = step_started.elapsed().as_secs_f64() * 1e6 / STEP_KEYS as f64;
            let cpu = (cpu_seconds() - step_cpu) * 1e6 / STEP_KEYS as f64;
            eprintln!("{inserted} keys: {wall:.1} µs/insert wall, {cpu:.1} µs CPU");
            (step_started, step_cpu) = (std::time::Instant::now(), cpu_seconds());
        }
    }
    db.sync()?;
    let elapsed = started.elapsed();
    let report = db.begin_read().check()?;
    let per_key = |pages: u64| pages as f64 * 4096.0 / keys as f64;
    println!(
        "{keys} keys in transactions of {batch}: file {:.1} bytes/key, nodes {:.1} bytes/key, \
         {} free pages, {:.1} µs/insert",
        per_key(report.page_count),
        per_key(report.node_pages),
        report.free_pages,
        elapsed.as_secs_f64() * 1e6 / keys as f64
    );
    Ok(())
}
