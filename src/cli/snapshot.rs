//! `rdb snapshot save|restore|status`: backups without shell access to the
//! nodes (etcdctl's `snapshot save`, etcdutl's `snapshot restore` and
//! `snapshot status`).
//!
//! `save` asks a node to take a snapshot now and streams it to a local file
//! (`GET /admin/snapshot`), verified on arrival (the file's SHA-256 of its
//! content) before it gets its final name. `restore` prepares an empty data
//! directory from a snapshot file offline: a node started on it loads the
//! snapshot and its membership, then catches up from the leader. `status`
//! verifies a file and says what it holds.
//!
//! Caveats: a snapshot keeps the membership it was taken with; restoring a
//! cluster onto other addresses needs the members changed afterwards
//! (docs/OPERATIONS.md). A follower's snapshot is as new as what it has
//! applied; ask the leader for the newest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdb_storage::disk::{Disk, FileWriter, RealDisk, STREAM_WRITEBACK_BYTES};
use serde_json::{json, Value};

use super::client::{Client, ClientArgs, ClientError};
use crate::node::{SnapshotDir, SnapshotHeader};

/// `rdb snapshot` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot on a node now and save it to FILE, verified.
    Save {
        /// Where to write it (replaced only once the new one is verified).
        file: PathBuf,
        /// Where the cluster is.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prepare an empty data directory from a snapshot file (offline).
    Restore {
        /// The snapshot file.
        file: PathBuf,
        /// The new node's data directory: missing or empty.
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify a snapshot file and show its index, term, members and size.
    Status {
        /// The snapshot file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `rdb snapshot ...`; what to print.
pub fn snapshot(command: &SnapshotCmd) -> Result<String, ClientError> {
    let (file, header, json) = match command {
        SnapshotCmd::Save { file, client } => (file, save(file, client)?, client.json),
        SnapshotCmd::Restore { file, data_dir, json } => {
            let header = restore(file, data_dir)?;
            let summary = describe(file, &header);
            return Ok(if *json {
                json!({"restored": summary, "data_dir": data_dir}).to_string()
            } else {
                format!(
                    "{}\nrestored into {}: start the node on it with its usual configuration (the \
                     same --id, --peers and addresses as the members above: a restored node \
                     keeps the snapshot's membership); it loads the snapshot, then catches up",
                    text(&summary),
                    data_dir.display(),
                )
            });
        }
        SnapshotCmd::Status { file, json } => (file, verify(file)?, *json),
    };
    let summary = describe(file, &header);
    Ok(if json { summary.to_string() } else { text(&summary) })
}

/// Downloads into `file` + ".part", syncs, verifies, renames, and syncs
/// the directory (so that the new name survives a crash).
fn save(file: &Path, args: &ClientArgs) -> Result<SnapshotHeader, ClientError> {
    let client = Client::new(args)?;
    if file.is_dir() {
        // Refused before the download, not at the rename after it.
        let message = format!("{} is a directory; give the backup file's name", file.display());
        return Err(ClientError::Usage(message));
    }
    let part = with_suffix(file, ".part");
    let io = |what: &str, path: &Path, e: std::io::Error| {
        ClientError::Usage(format!("cannot {what} {}: {e}", path.display()))
    };
    // A fresh file of our own: never through a link someone left there.
    match std::fs::remove_file(&part) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove", &part, e)),
        _ => {}
    }
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .map_err(|e| io("create", &part, e))?;
    // Written back as it arrives: a backup taken on a node's own machine
    // must not leave the disk a flood to flush that the node's WAL syncs
    // wait behind (storage's disk/stream.rs).
    let out = RealDisk::adopt(out);
    let stream = FileWriter::new(&*out, 0).with_writeback(STREAM_WRITEBACK_BYTES);
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, stream);
    let downloaded = client.download("/admin/snapshot", &mut writer);
    let synced = writer
        .into_inner()
        .map_err(|e| io("write", &part, e.into_error()))
        .and_then(|_| out.sync_data().map_err(|e| io("sync", &part, e)));
    let result = downloaded.and(synced).and_then(|_| verify(&part)).and_then(|header| {
        std::fs::rename(&part, file).map_err(|e| io("rename to", file, e))?;
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        RealDisk.sync_dir(dir).map_err(|e| io("sync", dir, e))?;
        Ok(header)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// Copies a verified snapshot into `<data_dir>/snapshots/` under its own
/// name, durably; refuses a data directory that holds anything. A restore
/// that fails leaves the directory as it found it (missing, or empty).
fn restore(file: &Path, data_dir: &Path) -> Result<SnapshotHeader, ClientError> {
    let header = verify(file)?;
    if let Ok(mut entries) = std::fs::read_dir(data_dir) {
        if entries.next().is_some() {
            return Err(ClientError::Usage(format!(
                "{} is not empty: restore only into a new data directory (a node's own data \
                 is never overwritten)",
                data_dir.display()
            )));
        }
    }
    // From here on everything under `data_dir` is ours to remove on failure.
    let existed = data_dir.exists();
    let result = restore_into(file, data_dir, &header);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(data_dir.join("snapshots"));
        if !existed {
            let _ = std::fs::remove_dir(data_dir);
        }
    }
    result.map(|()| header)
}

fn restore_into(file: &Path, data_dir: &Path, header: &SnapshotHeader) -> Result<(), ClientError> {
    let dir = data_dir.join("snapshots");
    let io = |what: &str, path: &Path, e: std::io::Error| {
        ClientError::Usage(format!("cannot {what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
    let target = dir.join(header.file_name());
    let temp = with_suffix(&target, ".part");
    std::fs::copy(file, &temp).map_err(|e| io("copy to", &temp, e))?;
    let copied = std::fs::File::open(&temp).and_then(|f| f.sync_all());
    copied.map_err(|e| io("sync", &temp, e))?;
    std::fs::rename(&temp, &target).map_err(|e| io("rename to", &target, e))?;
    for synced in [&dir, data_dir] {
        std::fs::File::open(synced)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync", synced, e))?;
    }
    Ok(())
}

/// Reads and checks the whole file.
fn verify(file: &Path) -> Result<SnapshotHeader, ClientError> {
    if !file.is_file() {
        return Err(ClientError::Usage(format!("{}: no such file", file.display())));
    }
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    SnapshotDir::open_read_only(Arc::new(RealDisk), dir).verify(file).map_err(|e| {
        ClientError::Refused(format!("{} is not a valid snapshot: {e}", file.display()))
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What a verified snapshot holds, as JSON.
fn describe(file: &Path, header: &SnapshotHeader) -> Value {
    let members: Vec<Value> = header
        .membership
        .members()
        .iter()
        .map(|m| json!({"id": m.id, "peer": m.peer, "voter": header.membership.voters().any(|v| v == m.id)}))
        .collect();
    let hash: String = header.hash.iter().map(|b| format!("{b:02x}")).collect();
    json!({"file": file, "index": header.meta.index, "term": header.meta.term,
           "file_bytes": std::fs::metadata(file).map(|m| m.len()).ok(),
           "state_bytes": header.content_bytes, "sha256": hash, "members": members})
}

fn text(summary: &Value) -> String {
    let members: Vec<String> = summary["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let role = if m["voter"] == true { "" } else { " (learner)" };
            format!("{}={}{role}", m["id"], m["peer"].as_str().unwrap_or(""))
        })
        .collect();
    let sha = summary["sha256"].as_str().unwrap_or("");
    format!(
        "{}: snapshot at index {} (term {}), {} file, {} state, verified (sha256 {})\nmembers: {}",
        summary["file"].as_str().unwrap_or(""),
        summary["index"],
        summary["term"],
        super::status::bytes(&summary["file_bytes"]),
        super::status::bytes(&summary["state_bytes"]),
        sha.get(..16).unwrap_or(sha),
        members.join(", ")
    )
}
