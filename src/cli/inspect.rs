//! `rdb inspect DATA_DIR ...`: a node's files, read offline (etcdutl's and
//! bbolt's inspection commands, in the one binary). Read-only and safe
//! beside a running node: the state file is opened read-only through its
//! mapping, WAL segments and snapshots are read without writing, nothing
//! is created or removed.
//!
//! Exit codes: 0 done; 1 not found, or damage found (`check`, naming the
//! file and offset); 2 usage (no such data directory); 3 the node
//! committed over the pages being read (a running node reuses freed pages
//! soon after): stop it or run again.
//!
//! Caveats: beside a running node every view is of the moment each file
//! was opened; the WAL's last record may be one being written (shown as a
//! torn tail, not damage).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdb_storage::btree::{Db, KeyRange, ReadTxn};
use rdb_storage::disk::RealDisk;
use serde_json::{json, Value};

use super::client::ClientError;
use super::status::bytes;
use crate::kv::Command;
use crate::node::{split_record, state_file, SnapshotDir};
use crate::raft::{EntryKind, Membership};

/// `rdb inspect` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum InspectCmd {
    /// Sizes and counts: state-file pages, free pages, tree height, each
    /// collection's keys and bytes; WAL segments and indexes; snapshots.
    Stats,
    /// The collections in the state file.
    Collections,
    /// Keys (and values) of a collection, in order.
    Keys {
        /// The collection.
        collection: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// The first key shown (to page on: the last key shown before).
        #[arg(long)]
        start: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One key's value.
    Get {
        /// The collection.
        collection: String,
        /// The key.
        #[arg(id = "item_key")]
        key: String,
    },
    /// Decoded WAL entries: index, term, kind, command.
    Wal {
        /// The first index shown.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Every WAL record's checksum, the state file's pages, each snapshot's
    /// SHA-256; exit 1 naming the file and offset of the first damage.
    Check,
}

/// `rdb inspect` flags.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The node's data directory (holds wal/, state/ and snapshots/).
    pub data_dir: PathBuf,
    /// What to show.
    #[command(subcommand)]
    pub command: InspectCmd,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Runs `rdb inspect ...`; what to print.
pub fn inspect(args: &InspectArgs) -> Result<String, ClientError> {
    let dir = &args.data_dir;
    if !["state", "wal", "snapshots"].iter().any(|sub| dir.join(sub).is_dir()) {
        let why = format!(
            "{} is not an rdb data directory (no state/, wal/ or snapshots/)",
            dir.display()
        );
        return Err(ClientError::Usage(why));
    }
    let answer = match &args.command {
        InspectCmd::Stats => stats(dir)?,
        InspectCmd::Collections => collections(dir)?,
        InspectCmd::Keys { collection, prefix, start, limit } => {
            keys(dir, collection, (prefix.as_deref(), start.as_deref()), *limit)?
        }
        InspectCmd::Get { collection, key } => get(dir, collection, key)?,
        InspectCmd::Wal { from, limit } => wal(dir, *from, *limit)?,
        InspectCmd::Check => check(dir)?,
    };
    Ok(if args.json { answer.to_string() } else { text(&args.command, &answer) })
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state").join(state_file::STATE_FILE_NAME)
}

/// Opens the state file read-only and runs `read` on its newest durable
/// commit. Beside a running node a read can meet pages the node reused
/// after a later durable commit: so a read counts only if the file's
/// durable commit is still the one it began on, and it is tried again (up
/// to [`READ_ATTEMPTS_MAX`] times) otherwise; damage seen on a file that
/// did not change is damage (exit 1), else exit 3.
fn with_state<T>(
    dir: &Path,
    read: impl Fn(&ReadTxn) -> rdb_storage::Result<T>,
) -> Result<T, ClientError> {
    let path = state_path(dir);
    let mut moved = String::new();
    for _ in 0..READ_ATTEMPTS_MAX {
        let db = Db::open_read_only(Arc::new(RealDisk), &path)
            .map_err(|e| ClientError::Refused(format!("cannot open the state file: {e}")))?;
        let txid = db.durable_txid();
        let result = read(&db.begin_read());
        let unchanged = db.durable_txid_on_disk().is_ok_and(|now| now == txid);
        match result {
            Ok(value) if unchanged => return Ok(value),
            Err(error @ rdb_storage::Error::Corrupt { .. }) if unchanged => {
                return Err(ClientError::Refused(format!("damaged: {error}")))
            }
            Err(error) if unchanged => {
                return Err(ClientError::Refused(format!("cannot read the state file: {error}")))
            }
            Ok(_) => moved = "the node committed while the read ran".into(),
            Err(error) => moved = format!("the node committed over the pages being read ({error})"),
        }
    }
    Err(ClientError::Unavailable(format!(
        "{moved}, {READ_ATTEMPTS_MAX} times; stop the node or run again"
    )))
}

/// Reads of the state file tried before giving up on a busy node.
const READ_ATTEMPTS_MAX: usize = 5;

/// The `d/<collection>` trees: collection name and tree name.
fn collection_trees(txn: &ReadTxn) -> rdb_storage::Result<Vec<(String, String)>> {
    let mut trees: Vec<(String, String)> = txn
        .list_trees()?
        .into_iter()
        .filter_map(|tree| tree.strip_prefix("d/").map(|name| (name.to_string(), tree.clone())))
        .collect();
    trees.sort();
    Ok(trees)
}

fn stats(dir: &Path) -> Result<Value, ClientError> {
    // A restored directory holds only a snapshot until its first start.
    let state = if state_path(dir).is_file() { state_stats(dir)? } else { Value::Null };
    let wal = if dir.join("wal").is_dir() {
        wal_json(&scan_wal(dir, |_| ControlFlow::Continue(()))?)
    } else {
        Value::Null
    };
    Ok(json!({"state": state, "wal": wal, "snapshots": snapshots(dir, false)?}))
}

fn state_stats(dir: &Path) -> Result<Value, ClientError> {
    with_state(dir, |txn| {
        let report = txn.check()?;
        let mut collections = Vec::new();
        for (name, tree) in collection_trees(txn)? {
            let (mut keys, mut key_bytes, mut value_bytes) = (0u64, 0u64, 0u64);
            for item in txn.range(&tree, &KeyRange::default())? {
                let (key, value) = item?;
                keys += 1;
                key_bytes += key.len() as u64;
                value_bytes += value.len() as u64;
            }
            collections.push(json!({"name": name, "keys": keys, "key_bytes": key_bytes,
                                    "value_bytes": value_bytes}));
        }
        let applied = state_file::applied_of(txn);
        Ok(json!({"file": state_path(dir), "applied_index": applied.index,
                  "applied_term": applied.term, "txid": txn.txid(),
                  "pages": report.page_count, "free_pages": report.free_pages,
                  "node_pages": report.node_pages, "overflow_pages": report.overflow_pages,
                  "height_max": report.height_max, "trees": report.trees,
                  "collections": collections}))
    })
}

fn collections(dir: &Path) -> Result<Value, ClientError> {
    let names = with_state(dir, |txn| {
        Ok(collection_trees(txn)?.into_iter().map(|(n, _)| n).collect::<Vec<_>>())
    })?;
    Ok(json!({"collections": names}))
}

fn keys(
    dir: &Path,
    collection: &str,
    (prefix, start): (Option<&str>, Option<&str>),
    limit: usize,
) -> Result<Value, ClientError> {
    let tree = format!("d/{collection}");
    let found = with_state(dir, |txn| {
        if !txn.tree_exists(&tree)? {
            return Ok(None);
        }
        let range = KeyRange {
            prefix: prefix.map(|p| p.as_bytes().to_vec()),
            start: start.map(|s| s.as_bytes().to_vec()),
            ..KeyRange::default()
        };
        let mut items = Vec::new();
        let mut more = false;
        for item in txn.range(&tree, &range)? {
            let (key, value) = item?;
            if items.len() == limit {
                more = true;
                break;
            }
            let (revisions, value) = crate::kv::decode_item(value);
            items.push(json!({"key": lossy(key), "value": lossy(value),
                              "mod_revision": revisions.mod_revision}));
        }
        Ok(Some(json!({"collection": collection, "items": items, "more": more})))
    })?;
    found.ok_or_else(|| ClientError::Refused(format!("no collection {collection:?}")))
}

fn get(dir: &Path, collection: &str, key: &str) -> Result<Value, ClientError> {
    let tree = format!("d/{collection}");
    let value = with_state(dir, |txn| {
        if !txn.tree_exists(&tree)? {
            return Ok(None);
        }
        Ok(txn.get(&tree, key.as_bytes())?.map(|stored| lossy(crate::kv::decode_item(stored).1)))
    })?;
    let value =
        value.ok_or_else(|| ClientError::Refused(format!("{collection}/{key}: not found")))?;
    Ok(json!({"collection": collection, "key": key, "value": value}))
}

fn wal(dir: &Path, from: u64, limit: usize) -> Result<Value, ClientError> {
    let mut entries = Vec::new();
    let mut more = false;
    scan_wal(dir, |record| {
        if record.index < from {
            return ControlFlow::Continue(());
        }
        if entries.len() == limit {
            more = true;
            return ControlFlow::Break(());
        }
        entries.push(describe_entry(record.index, record.term, record.payload));
        ControlFlow::Continue(())
    })?;
    Ok(json!({"entries": entries, "more": more}))
}

fn check(dir: &Path) -> Result<Value, ClientError> {
    let state = match state_path(dir).is_file() {
        true => {
            let (report, applied) =
                with_state(dir, |txn| Ok((txn.check()?, state_file::applied_of(txn).index)))?;
            json!({"pages": report.page_count, "entries": report.entries, "applied_index": applied})
        }
        false => Value::Null,
    };
    let wal = match dir.join("wal").is_dir() {
        true => {
            let report = scan_wal(dir, |_| ControlFlow::Continue(()))?;
            let applied = state["applied_index"].as_u64().unwrap_or(0);
            check_hard_state(&report, applied)?;
            wal_json(&report)
        }
        false => Value::Null,
    };
    let snapshots = snapshots(dir, true)?;
    Ok(json!({"ok": true, "state": state, "wal": wal, "snapshots": snapshots}))
}

/// What a node checks of the hard state at start: it reads, and its
/// commit index lies within what the log and the state file hold.
fn check_hard_state(
    report: &rdb_storage::wal::ScanReport,
    applied: u64,
) -> Result<(), ClientError> {
    let hard_state = report
        .hard_state
        .as_ref()
        .map_err(|why| ClientError::Refused(format!("damaged: the WAL's hard state: {why}")))?;
    let last = report.indexes.map_or(0, |(_, last)| last).max(applied);
    if hard_state.commit > last {
        return Err(ClientError::Refused(format!(
            "damaged: the saved commit index {} is beyond the last log index {last} (a WAL cut \
             short)",
            hard_state.commit
        )));
    }
    Ok(())
}

fn scan_wal(
    dir: &Path,
    visit: impl FnMut(rdb_storage::wal::RecordRef<'_>) -> ControlFlow<()>,
) -> Result<rdb_storage::wal::ScanReport, ClientError> {
    let wal_dir = dir.join("wal");
    rdb_storage::wal::scan(&RealDisk, &wal_dir, visit).map_err(|e| match e {
        rdb_storage::Error::Corrupt { .. } => ClientError::Refused(format!("damaged: {e}")),
        e => ClientError::Refused(format!("cannot read the WAL: {e}")),
    })
}

fn wal_json(report: &rdb_storage::wal::ScanReport) -> Value {
    let segments: Vec<Value> = report
        .segments
        .iter()
        .map(|s| {
            json!({"file": s.path, "first_index": s.first_index, "records": s.records,
                        "bytes": s.bytes, "torn_bytes": s.torn_bytes})
        })
        .collect();
    let hard_state = match &report.hard_state {
        Ok(h) => json!({"term": h.term, "vote": h.vote, "commit": h.commit}),
        Err(why) => json!({"error": why}),
    };
    json!({"segments": segments, "bytes": report.segments.iter().map(|s| s.bytes).sum::<u64>(),
           "first_index": report.indexes.map(|(lo, _)| lo),
           "last_index": report.indexes.map(|(_, hi)| hi), "hard_state": hard_state})
}

/// The snapshot files, newest first; with `verify`, each one's content
/// checked against its SHA-256 (damage is exit 1).
fn snapshots(dir: &Path, verify: bool) -> Result<Vec<Value>, ClientError> {
    let snapshots = SnapshotDir::open_read_only(Arc::new(RealDisk), &dir.join("snapshots"));
    if !snapshots.path().is_dir() {
        return Ok(Vec::new());
    }
    if verify {
        // Every snapshot file, including those whose header a node would
        // skip: a check names them all.
        let names = std::fs::read_dir(snapshots.path())
            .map_err(|e| ClientError::Refused(format!("snapshots: {e}")))?;
        for entry in names.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("state_") && name.ends_with(".lz4") {
                snapshots
                    .verify(&path)
                    .map_err(|e| ClientError::Refused(format!("damaged: {e}")))?;
            }
        }
    }
    let files = snapshots.list().map_err(|e| ClientError::Refused(format!("snapshots: {e}")))?;
    let mut out = Vec::new();
    for (path, header) in files {
        out.push(json!({"file": path, "index": header.meta.index, "term": header.meta.term,
                        "bytes": snapshots.file_bytes(&path), "state_bytes": header.content_bytes}));
    }
    Ok(out)
}

/// A WAL entry as JSON: index, term, kind, and the command or membership.
fn describe_entry(index: u64, term: u64, payload: &[u8]) -> Value {
    let (kind, detail) = match split_record(payload) {
        None => ("unknown", json!(null)),
        Some((EntryKind::Noop, _)) => ("noop", json!(null)),
        Some((EntryKind::Normal, data)) => match Command::decode(data) {
            Ok(command) => ("command", command.to_json()),
            Err(why) => ("command", json!({"undecodable": why.to_string()})),
        },
        Some((EntryKind::Config, data)) => match Membership::decode(data) {
            Ok(membership) => ("membership", crate::node::members_json(&membership)),
            Err(why) => ("membership", json!({"undecodable": why.to_string()})),
        },
    };
    json!({"index": index, "term": term, "kind": kind, "entry": detail})
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Text for people.
fn text(command: &InspectCmd, answer: &Value) -> String {
    let str_of = |v: &Value| v.as_str().unwrap_or("").to_string();
    match command {
        InspectCmd::Stats => stats_text(answer),
        InspectCmd::Collections => answer["collections"]
            .as_array()
            .map(|names| names.iter().map(str_of).collect::<Vec<_>>().join("\n"))
            .filter(|text| !text.is_empty())
            .unwrap_or_else(|| "(no collections)".into()),
        InspectCmd::Keys { .. } => {
            let mut lines: Vec<String> = answer["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| format!("{}\t{}", str_of(&item["key"]), str_of(&item["value"])))
                .collect();
            if answer["more"] == true {
                lines.push(
                    "(more: repeat with --start set to the last key, which comes again)".into(),
                );
            }
            if lines.is_empty() {
                lines.push("(no keys)".into());
            }
            lines.join("\n")
        }
        InspectCmd::Get { .. } => {
            format!("{}\t{}", str_of(&answer["key"]), str_of(&answer["value"]))
        }
        InspectCmd::Wal { .. } => {
            let mut lines: Vec<String> = answer["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    format!("{}\t{}\t{}\t{}", e["index"], e["term"], str_of(&e["kind"]), e["entry"])
                })
                .collect();
            if answer["more"] == true {
                lines.push("(more: --from the next index)".into());
            }
            if lines.is_empty() {
                lines.push("(no entries)".into());
            }
            format!("INDEX\tTERM\tKIND\tENTRY\n{}", lines.join("\n"))
        }
        InspectCmd::Check => {
            let state = match answer["state"]["pages"].as_u64() {
                Some(pages) => {
                    format!("state file ({pages} pages, {} entries)", answer["state"]["entries"])
                }
                None => "no state file yet".into(),
            };
            let wal = match answer["wal"]["segments"].as_array() {
                Some(segments) => format!("WAL ({} segment(s))", segments.len()),
                None => "no WAL yet".into(),
            };
            let snapshots = answer["snapshots"].as_array().map_or(0, Vec::len);
            format!("ok: {state}, {wal}, {snapshots} snapshot(s) verified")
        }
    }
}

fn stats_text(answer: &Value) -> String {
    let mut out = match answer["state"].is_null() {
        true => "state file  none yet (a restored directory, before its first start)\n".into(),
        false => state_text(&answer["state"]),
    };
    out.push_str(&wal_text(&answer["wal"]));
    let snapshots = answer["snapshots"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("snapshots   {}", snapshots.len()));
    for s in snapshots {
        out.push_str(&format!(
            "\n  {} index {} term {} ({}, state {})",
            s["file"].as_str().unwrap_or(""),
            s["index"],
            s["term"],
            bytes(&s["bytes"]),
            bytes(&s["state_bytes"])
        ));
    }
    out
}

fn state_text(state: &Value) -> String {
    let page_bytes = rdb_storage::btree::PAGE_BYTES as u64;
    let pages_as_bytes = |v: &Value| bytes(&json!(v.as_u64().unwrap_or(0) * page_bytes));
    let mut out = format!(
        "state file  {}\n  applied     index {} (term {}), txid {}\n  \
         pages       {} in use or free below the high-water mark ({}; the file may be longer), \
         {} of them free ({}); {} tree pages, {} overflow\n  \
         trees       {}, the tallest {} level(s)\n",
        state["file"].as_str().unwrap_or(""),
        state["applied_index"],
        state["applied_term"],
        state["txid"],
        state["pages"],
        pages_as_bytes(&state["pages"]),
        state["free_pages"],
        pages_as_bytes(&state["free_pages"]),
        state["node_pages"],
        state["overflow_pages"],
        state["trees"],
        state["height_max"],
    );
    let row = |cells: [&str; 4]| {
        format!("  {:<24} {:>10}  {:>10}  {:>11}\n", cells[0], cells[1], cells[2], cells[3])
    };
    out.push_str(&row(["COLLECTION", "KEYS", "KEY BYTES", "VALUE BYTES"]));
    for c in state["collections"].as_array().into_iter().flatten() {
        let keys = c["keys"].to_string();
        let (key_bytes, value_bytes) = (bytes(&c["key_bytes"]), bytes(&c["value_bytes"]));
        out.push_str(&row([c["name"].as_str().unwrap_or(""), &keys, &key_bytes, &value_bytes]));
    }
    out
}

fn wal_text(wal: &Value) -> String {
    if wal.is_null() {
        return "WAL         none yet\n".into();
    }
    let segments = wal["segments"].as_array().map_or(0, Vec::len);
    let indexes = match (wal["first_index"].as_u64(), wal["last_index"].as_u64()) {
        (Some(first), Some(last)) => format!("entries {first} to {last}"),
        _ => "no entries".into(),
    };
    let mut out = format!("WAL         {segments} segment(s), {}, {indexes}", bytes(&wal["bytes"]));
    if let Some(why) = wal["hard_state"]["error"].as_str() {
        out.push_str(&format!("; the hard state does not read: {why}"));
    } else if let Some(hs) = wal["hard_state"].as_object() {
        out.push_str(&format!(
            "; saved term {} vote {} (its commit index, {}, is saved only now and then)",
            hs["term"], hs["vote"], hs["commit"]
        ));
    }
    out.push('\n');
    out
}
