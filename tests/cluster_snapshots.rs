//! Snapshots and compaction on real clusters: the WAL is compacted below
//! the durable state file without snapshot files; a follower that missed
//! compacted entries catches up by a snapshot written for it, also when it
//! is killed in the middle of receiving one; a damaged snapshot is skipped
//! at start; the WAL stays bounded under a long write load.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{put, TestCluster, SNAPSHOT_ARGS};
use serde_json::{json, Value};

/// Every collection's contents on node `id` (serializable reads).
fn everything(cluster: &TestCluster, id: u16) -> Vec<(String, Vec<(String, String)>)> {
    let (status, body) = cluster.command(
        id,
        &json!({"action": "list collections",
        "payload": {"consistency": "serializable"}}),
    );
    assert_eq!(status, 200, "{body}");
    let names: Vec<String> = body["collections"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    names
        .into_iter()
        .map(|name| {
            let items = cluster.contents(id, &name);
            (name, items)
        })
        .collect()
}

fn status_u64(cluster: &TestCluster, id: u16, field: &str) -> u64 {
    cluster.status(id).and_then(|s| s[field].as_u64()).unwrap_or(0)
}

fn metric(cluster: &TestCluster, id: u16, name: &str) -> u64 {
    let (_, body) = cluster.get(id, "/metrics");
    let text = body.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Writes `count` key-addressed puts of `value_bytes`-byte values spread
/// over three collections, plus a dropped collection, through `node`.
fn write_load(cluster: &TestCluster, node: u16, count: usize, value_bytes: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..count {
        let value: String = (0..value_bytes).map(|_| rng.alphanumeric()).collect();
        let collection = format!("c{}", i % 3);
        let (status, body) = cluster.command(node, &put(&collection, &format!("k{i:05}"), &value));
        assert_eq!(status, 200, "{body}");
    }
    let doomed = json!({"action": "put", "payload": {"collection": "doomed", "value": "x"}});
    assert_eq!(cluster.command(node, &doomed).0, 200);
    let drop = json!({"action": "drop collection", "payload": {"collection": "doomed"}});
    assert_eq!(cluster.command(node, &drop).0, 200);
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_identical(cluster: &TestCluster) {
    cluster.wait_for_convergence(Duration::from_secs(30));
    let first = everything(cluster, 1);
    assert!(first.len() >= 3, "{} collections", first.len());
    for id in 2..=3 {
        assert_eq!(everything(cluster, id), first, "node {id} differs from node 1");
    }
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    // Phase 1: a follower is down while the others write and compact their
    // WALs below their durable state files, writing no snapshot file.
    let mut cluster = TestCluster::start(
        3,
        common::ports::base("cluster_snapshots::catches_up_by_snapshot"),
        &SNAPSHOT_ARGS,
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    let lagging = (1..=3).find(|&id| id != leader).expect("a follower");
    let other = (1..=3).find(|&id| id != leader && id != lagging).expect("another follower");
    cluster.kill(lagging);
    write_load(&cluster, leader, 1_500, 100, 1);
    wait_until("compaction on both live nodes", Duration::from_secs(20), || {
        [leader, other].iter().all(|&id| status_u64(&cluster, id, "wal_first_index") > 1)
    });
    for id in [leader, other] {
        assert_eq!(status_u64(&cluster, id, "snapshot_index"), 0, "node {id} wrote a snapshot");
        assert_eq!(metric(&cluster, id, "rdb_snapshots_made_total"), 0, "node {id}");
    }

    // Phase 2: it returns; the leader writes a snapshot because it needs
    // one, sends it, and the follower ends identical.
    cluster.restart(lagging);
    assert_identical(&cluster);
    assert!(metric(&cluster, leader, "rdb_snapshots_made_total") >= 1, "no snapshot made");
    assert!(metric(&cluster, leader, "rdb_snapshots_sent_total") >= 1, "no snapshot sent");
    assert!(
        metric(&cluster, lagging, "rdb_snapshots_installed_total") >= 1,
        "no snapshot installed"
    );

    // Phase 3: a node whose newest snapshot is damaged reports and skips it
    // (two taken on request, with writes between them).
    for (round, seed) in [(0, 5), (1, 6)] {
        let (status, answer) = cluster.command_to(other, "/admin/snapshot");
        assert_eq!(status, 200, "snapshot {round}: {answer}");
        write_load(&cluster, leader, 20, 10, seed);
        cluster.wait_for_convergence(Duration::from_secs(30));
    }
    let before = status_u64(&cluster, other, "snapshot_index");
    cluster.kill(other);
    let dir = cluster.nodes[usize::from(other - 1)].data_dir.join("snapshots");
    let newest = newest_snapshot(&dir);
    let mut bytes = std::fs::read(&newest).expect("snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&newest, bytes).expect("damage it");
    cluster.restart(other);
    cluster.wait_for_leader(Duration::from_secs(15));
    let after = status_u64(&cluster, other, "snapshot_index");
    assert!(after > 0 && after < before, "the damaged snapshot at {before} was used (now {after})");
    assert_identical(&cluster);
}

fn newest_snapshot(dir: &Path) -> std::path::PathBuf {
    let snapshots =
        rdb::node::SnapshotDir::open(std::sync::Arc::new(rdb::storage::disk::RealDisk), dir)
            .expect("dir");
    let headers = snapshots.list().expect("list");
    headers.first().map(|(path, _)| path.clone()).expect("a snapshot")
}

#[test]
fn a_follower_killed_while_receiving_a_snapshot_recovers_and_completes() {
    let mut args = SNAPSHOT_ARGS.to_vec();
    args.extend(["--snapshot-chunk-bytes", "512"]);
    let mut cluster = TestCluster::start(
        3,
        common::ports::base("cluster_snapshots::killed_while_receiving"),
        &args,
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    let lagging = (1..=3).find(|&id| id != leader).expect("a follower");
    cluster.kill(lagging);
    write_load(&cluster, leader, 1_200, 400, 2);
    wait_until("compaction on the leader", Duration::from_secs(20), || {
        status_u64(&cluster, leader, "wal_first_index") > 1
    });

    // The transfer starts; kill the follower once part of it is on disk.
    cluster.restart(lagging);
    let incoming = cluster.nodes[usize::from(lagging - 1)].data_dir.join("snapshots/incoming.tmp");
    wait_until("a partial transfer", Duration::from_secs(30), || {
        std::fs::metadata(&incoming).is_ok_and(|m| m.len() > 4096)
    });
    cluster.kill(lagging);
    assert_eq!(metric(&cluster, leader, "rdb_snapshots_sent_total"), 0, "the transfer was not cut");

    // Restarted, it discards the partial file and receives the snapshot anew.
    cluster.restart(lagging);
    assert_identical(&cluster);
    assert!(metric(&cluster, lagging, "rdb_snapshots_installed_total") >= 1);
}

#[test]
fn the_wal_stays_bounded_under_a_long_write_load() {
    const SNAPSHOT_WAL_BYTES: u64 = 65_536;
    const SEGMENT_BYTES: u64 = 16_384;
    const MARGIN_ENTRIES: u64 = 100;
    /// An entry of this load in the WAL: a 100-byte value, key, collection
    /// and framing, rounded up.
    const ENTRY_BYTES_MAX: u64 = 256;
    let args = [
        "--snapshot-entries".to_string(),
        "1000000".into(),
        "--snapshot-wal-bytes".into(),
        SNAPSHOT_WAL_BYTES.to_string(),
        "--wal-segment-bytes".into(),
        SEGMENT_BYTES.to_string(),
        "--compaction-margin-entries".into(),
        MARGIN_ENTRIES.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = TestCluster::start(
        3,
        common::ports::base("cluster_snapshots::the_wal_stays_bounded"),
        &args,
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    // What the configuration allows: the trigger's growth, the margin kept
    // below the compaction point, the segment that straddles it and the open
    // one, and one more trigger's worth written while the state file's
    // next sync is awaited.
    let bound = 2 * SNAPSHOT_WAL_BYTES + MARGIN_ENTRIES * ENTRY_BYTES_MAX + 2 * SEGMENT_BYTES;
    let mut largest = 0;
    let mut rng = fastrand::Rng::with_seed(3);
    let writes = 6_000;
    for i in 0..writes {
        let value: String = (0..100).map(|_| rng.alphanumeric()).collect();
        assert_eq!(cluster.command(leader, &put("log", &format!("k{}", i % 500), &value)).0, 200);
        if i % 50 == 0 {
            for id in 1..=3 {
                largest = largest.max(status_u64(&cluster, id, "wal_bytes"));
            }
        }
    }
    let written = writes * 150;
    assert!(
        written > 3 * bound,
        "the load ({written} bytes) must exceed the bound ({bound}) to test it"
    );
    assert!(
        largest > 0 && largest <= bound,
        "the WAL reached {largest} bytes; the configuration allows {bound}"
    );
}

#[test]
fn a_cluster_is_rebuilt_from_one_backup_snapshot() {
    // Phase 1: data, then a backup: POST /admin/snapshot and copy the file.
    let mut cluster = TestCluster::start(
        3,
        common::ports::base("cluster_snapshots::rebuilt_from_one_backup"),
        &[],
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    write_load(&cluster, leader, 300, 50, 4);
    cluster.wait_for_convergence(Duration::from_secs(15));
    let before = everything(&cluster, leader);
    let (status, answer) = cluster.command_to(leader, "/admin/snapshot");
    assert_eq!(status, 200, "{answer}");
    let file = std::path::PathBuf::from(answer["file"].as_str().expect("file"));
    let backup = tempfile::tempdir().expect("dir");
    let saved = backup.path().join(file.file_name().expect("name"));
    std::fs::copy(&file, &saved).expect("copy the backup");

    // Phase 2: every node is lost; each starts from the backup alone.
    for id in 1..=3 {
        cluster.kill(id);
        let data = cluster.nodes[usize::from(id - 1)].data_dir.clone();
        std::fs::remove_dir_all(&data).expect("wipe");
        std::fs::create_dir_all(data.join("snapshots")).expect("dir");
        std::fs::copy(&saved, data.join("snapshots").join(saved.file_name().expect("name")))
            .expect("restore");
    }
    for id in 1..=3 {
        cluster.restart(id);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    for id in 1..=3 {
        assert_eq!(everything(&cluster, id), before, "node {id} after the restore");
    }
    // Phase 3: the rebuilt cluster takes writes.
    assert_eq!(cluster.command(leader, &put("c0", "new", "v")).0, 200);
    assert_identical(&cluster);
}
