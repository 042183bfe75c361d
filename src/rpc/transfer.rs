//! Snapshot transfer over `installSnapshot`: the leader streams the file in
//! chunks, one call at a time (bounded memory on both ends, any size); the
//! follower appends them to a temporary file, and only when the last chunk
//! is in and the whole file verifies does it hand the file, with the
//! leader's `Snapshot` message, to its node. A chunk out of order (after a
//! restart of either end) is declined and the leader starts over.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::StreamExt;

use super::links::{Incoming, Links};
use super::raft_capnp::snapshot_chunk;
use super::CALL_TIMEOUT;
use crate::raft::{Body, Message, NodeId, Position};

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
    let file: Arc<dyn rdb_storage::disk::DiskFile> =
        links.node.snapshots().open_file(&job.path).map_err(|e| e.to_string())?.into();
    let total = file.len().map_err(|e| format!("{}: {e}", job.path.display()))?;
    let mut offset = 0u64;
    loop {
        let (reader, path) = (file.clone(), job.path.clone());
        let size = usize::try_from(total - offset).unwrap_or(usize::MAX).min(links.chunk_bytes);
        // Read off the RPC thread: a cold file may wait on the disk.
        let buffer = async_std::task::spawn_blocking(move || {
            let mut buffer = vec![0u8; size];
            reader.read_exact_at(&mut buffer, offset).map(|()| buffer)
        })
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
        let filled = buffer.len();
        let done = offset + filled as u64 == total;
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
    let meta = Position { index: chunk.get_index(), term: chunk.get_snapshot_term() };
    if chunk.get_offset() == 0 {
        if links.finishing.get() {
            // The last one is being verified from its file: the leader
            // starts over once that is done.
            return Ok(false);
        }
        // A new transfer replaces an unfinished one (its file is reused).
        *incoming.borrow_mut() = None;
        let receiving = links.node.snapshots().receive().map_err(|e| e.to_string())?;
        *incoming.borrow_mut() =
            Some(Incoming { from: peer, meta, term: chunk.get_term(), receiving });
    }
    let step =
        append(&mut incoming.borrow_mut(), peer, meta, chunk.get_offset(), bytes, chunk.get_done());
    match step {
        Step::Declined => Ok(false),
        Step::Accepted => Ok(true),
        Step::Whole(whole) => Ok(finish(links, whole).await),
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
    meta: Position,
    offset: u64,
    bytes: &[u8],
    done: bool,
) -> Step {
    let Some(current) =
        slot.as_mut().filter(|c| c.from == peer && c.meta == meta && c.receiving.bytes() == offset)
    else {
        return Step::Declined;
    };
    if let Err(error) = current.receiving.append(bytes) {
        log::error!("snapshot from {peer}: {error}");
        *slot = None;
        return Step::Declined;
    }
    match slot.take() {
        Some(whole) if done => Step::Whole(whole),
        still => {
            *slot = still;
            Step::Accepted
        }
    }
}

/// Syncs, verifies (off the RPC thread) and publishes a whole snapshot,
/// then hands it to the node; false declines it (the leader starts over).
async fn finish(links: &Links, whole: Incoming) -> bool {
    let Incoming { from, meta, term, receiving } = whole;
    links.finishing.set(true);
    let verified = async_std::task::spawn_blocking(move || receiving.finish(meta)).await;
    links.finishing.set(false);
    let (target, header) = match verified {
        Ok(done) => done,
        Err(why) => {
            log::error!("node {}: snapshot from {from} refused: {why}", links.id);
            return false;
        }
    };
    let message = Message {
        from,
        to: links.id,
        term,
        body: Body::Snapshot { meta, membership: header.membership.clone() },
    };
    links.node.snapshot_received(target, header, message);
    true
}
