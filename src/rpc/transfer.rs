//! Snapshot transfer over `installSnapshot`: the leader streams the file in
//! chunks, one call at a time (bounded memory on both ends, any size); the
//! follower appends them to a temporary file, and only when the last chunk
//! is in and the whole file verifies does it hand the file, with the
//! leader's `Snapshot` message, to its node. A chunk out of order (after a
//! restart of either end) is declined and the leader starts over.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;

use futures::channel::mpsc;
use futures::{AsyncReadExt, StreamExt};

use super::links::{Incoming, Links};
use super::raft_capnp::snapshot_chunk;
use super::CALL_TIMEOUT;
use crate::node::snapshot_file;
use crate::raft::{Body, Message, NodeId, SnapshotMeta};

/// Bytes per chunk the leader sends by default.
pub const CHUNK_BYTES: usize = 1 << 20;
/// The largest chunk a follower accepts.
pub const CHUNK_BYTES_MAX: usize = 4 << 20;
/// Transfers queued in the RPC thread, at most.
pub const TRANSFER_QUEUE_LEN_MAX: usize = 64;

/// A snapshot to stream to a follower.
#[derive(Debug)]
pub(super) struct TransferJob {
    /// The leader's `Snapshot` message (its receiver and meta).
    pub(super) message: Message,
    /// The snapshot file.
    pub(super) path: PathBuf,
}

/// Streams each queued snapshot, one task per transfer.
pub(super) async fn transfer_loop(links: Rc<Links>, mut jobs: mpsc::Receiver<TransferJob>) {
    while let Some(job) = jobs.next().await {
        let task_links = links.clone();
        links.spawn(async move {
            let to = job.message.to;
            match send_file(&task_links, &job).await {
                Ok(bytes) => task_links.node.snapshot_sent(to, true, bytes),
                Err(why) => {
                    log::warn!("node {}: snapshot transfer to {to} failed: {why}", task_links.id);
                    task_links.node.snapshot_sent(to, false, 0);
                }
            }
        });
    }
}

async fn send_file(links: &Links, job: &TransferJob) -> Result<u64, String> {
    let Body::Snapshot { meta, .. } = job.message.body else {
        return Err("not a snapshot offer".into());
    };
    let remote = links.remote(job.message.to).ok_or("no connection")?;
    let mut file = async_std::fs::File::open(&job.path)
        .await
        .map_err(|e| format!("{}: {e}", job.path.display()))?;
    let mut buffer = vec![0u8; links.chunk_bytes];
    let mut offset = 0u64;
    loop {
        let filled = fill(&mut file, &mut buffer)
            .await
            .map_err(|e| format!("{}: {e}", job.path.display()))?;
        let done = filled < buffer.len();
        let mut request = remote.install_snapshot_request();
        let mut chunk = request.get().init_chunk();
        chunk.set_from(links.id);
        chunk.set_term(job.message.term);
        chunk.set_index(meta.index);
        chunk.set_snapshot_term(meta.term);
        chunk.set_offset(offset);
        chunk.set_bytes(&buffer[..filled]);
        chunk.set_done(done);
        let answer = async_std::future::timeout(CALL_TIMEOUT, request.send().promise)
            .await
            .map_err(|_| "no answer within the call timeout".to_string())?
            .map_err(|e| e.to_string())?;
        if !answer.get().map_err(|e| e.to_string())?.get_accepted() {
            return Err(format!("chunk at {offset} declined"));
        }
        offset += filled as u64;
        if done {
            return Ok(offset);
        }
    }
}

/// Reads until `buffer` is full or the file ends; returns the bytes read.
async fn fill(file: &mut async_std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = file.read(&mut buffer[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

/// The follower's side of one chunk from `peer`; Ok(false) declines it.
pub(super) async fn receive_chunk(
    links: &Links,
    incoming: &RefCell<Option<Incoming>>,
    peer: NodeId,
    chunk: snapshot_chunk::Reader<'_>,
) -> Result<bool, String> {
    let bytes = chunk.get_bytes().map_err(|e| e.to_string())?;
    if chunk.get_from() != peer || bytes.len() > CHUNK_BYTES_MAX {
        return Err(format!(
            "member {peer} sent a chunk from {} of {} bytes",
            chunk.get_from(),
            bytes.len()
        ));
    }
    let meta = SnapshotMeta { index: chunk.get_index(), term: chunk.get_snapshot_term() };
    let dir = links.node.snapshot_dir().to_path_buf();
    if chunk.get_offset() == 0 {
        let path = dir.join(snapshot_file::INCOMING_NAME);
        let file = std::fs::create_dir_all(&dir)
            .and_then(|()| File::create(&path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        *incoming.borrow_mut() =
            Some(Incoming { from: peer, meta, term: chunk.get_term(), offset: 0, file, path });
    }
    let step =
        append(&mut incoming.borrow_mut(), peer, meta, chunk.get_offset(), bytes, chunk.get_done());
    match step {
        Step::Declined => Ok(false),
        Step::Accepted => Ok(true),
        Step::Whole(whole) => finish(links, whole, dir).await,
    }
}

/// What one chunk did to the transfer.
enum Step {
    /// Out of order or unwritable: the leader starts over.
    Declined,
    /// Appended; more to come.
    Accepted,
    /// The last chunk: the file is complete.
    Whole(Incoming),
}

fn append(
    slot: &mut Option<Incoming>,
    peer: NodeId,
    meta: SnapshotMeta,
    offset: u64,
    bytes: &[u8],
    done: bool,
) -> Step {
    let Some(current) =
        slot.as_mut().filter(|c| c.from == peer && c.meta == meta && c.offset == offset)
    else {
        return Step::Declined;
    };
    if let Err(error) = current.file.write_all(bytes) {
        log::error!("snapshot from {peer}: {error}");
        *slot = None;
        return Step::Declined;
    }
    current.offset += bytes.len() as u64;
    match slot.take() {
        Some(whole) if done => Step::Whole(whole),
        still => {
            *slot = still;
            Step::Accepted
        }
    }
}

/// Syncs, verifies (off the RPC thread) and publishes a whole snapshot,
/// then hands it to the node.
async fn finish(links: &Links, whole: Incoming, dir: PathBuf) -> Result<bool, String> {
    whole.file.sync_all().map_err(|e| format!("{}: {e}", whole.path.display()))?;
    let path = whole.path.clone();
    let verified = async_std::task::spawn_blocking(move || {
        let header = snapshot_file::verify(&path)?;
        let target = dir.join(header.file_name());
        std::fs::rename(&path, &target).map_err(|e| format!("{}: {e}", target.display()))?;
        snapshot_file::sync_dir(&dir)?;
        Ok::<_, String>((target, header))
    })
    .await;
    let (target, header) = match verified {
        Ok(done) => done,
        Err(why) => {
            log::error!("node {}: snapshot from {} refused: {why}", links.id, whole.from);
            return Ok(false);
        }
    };
    if header.meta != whole.meta {
        log::error!("node {}: snapshot from {} is not the one offered", links.id, whole.from);
        return Ok(false);
    }
    let message = Message {
        from: whole.from,
        to: links.id,
        term: whole.term,
        body: Body::Snapshot { meta: whole.meta, membership: header.membership.clone() },
    };
    links.node.snapshot_received(target, header, message);
    Ok(true)
}
