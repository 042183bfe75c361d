//! The RPC thread: its body, which builds the shared [`Links`] and starts
//! the tasks that accept and dial connections, send, forward and stream
//! snapshots, then runs them until the process ends.

use std::rc::Rc;

use async_executor::LocalExecutor;
use futures::channel::mpsc;

use super::links::Links;
use super::transfer::{TransferJob, CHUNK_BYTES_MAX};
use super::{connect, outbound, transfer, Control, ForwardJob, RpcConfig};
use crate::node::NodeHandle;

/// What the rest of the node sends the RPC thread.
pub(super) struct Channels {
    /// New send queues and memberships.
    pub(super) control: mpsc::Receiver<Control>,
    /// Requests to forward to the leader.
    pub(super) jobs: mpsc::Receiver<ForwardJob>,
    /// Snapshots to stream.
    pub(super) transfers: mpsc::Receiver<TransferJob>,
}

/// The RPC thread's body: runs until the process ends.
pub(super) fn run(
    config: &RpcConfig,
    node: NodeHandle,
    listener: std::net::TcpListener,
    channels: Channels,
) {
    // async-io's block_on lets this thread wait on the socket reactor
    // itself, so a peer's bytes wake it directly rather than through
    // async-io's helper thread (one context switch less per message).
    let executor = Rc::new(LocalExecutor::new());
    let chunk_bytes = config.snapshot_chunk_bytes.clamp(1, CHUNK_BYTES_MAX);
    let links = Links::new(config, node, executor.clone(), chunk_bytes);
    let listener = async_std::net::TcpListener::from(listener);
    links.spawn(connect::accept_loop(links.clone(), listener));
    links.spawn(outbound::control_loop(links.clone(), channels.control));
    links.spawn(outbound::forward_loop(links.clone(), channels.jobs));
    links.spawn(transfer::transfer_loop(links.clone(), channels.transfers));
    async_io::block_on(executor.run(futures::future::pending::<()>()));
}
