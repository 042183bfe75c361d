//! `rdb serve`: wires storage, Raft, the peer RPC and the HTTP API into one
//! running node.

use super::config::ServeConfig;
use crate::{http, node, rpc};

/// Runs a node until the process is stopped; an error says why it could not
/// start or why it stopped.
pub fn serve(config: &ServeConfig) -> Result<(), String> {
    let node_config = config.node()?;
    let rpc_config = config.rpc()?;
    let (handle, event_loop) = node::open(node_config)?;
    let http_listener = std::net::TcpListener::bind(config.http)
        .map_err(|e| format!("cannot listen for clients on {}: {e}", config.http))?;
    let (transport, forwarder) = rpc::start(rpc_config.clone(), handle.clone())?;
    handle.set_forwarder(Box::new(forwarder));
    let id = config.id;
    std::thread::Builder::new()
        .name(format!("rdb-node-{id}"))
        .spawn(move || match event_loop.run(Box::new(transport)) {
            Ok(()) => std::process::exit(0),
            Err(why) => {
                log::error!("node {id} stopped: {why}");
                std::process::exit(2);
            }
        })
        .map_err(|e| format!("cannot start the event loop: {e}"))?;
    log::info!(
        "node {id}: HTTP API on http://{} (plain HTTP: no TLS certificate configured), \
         peers on {}, data in {}",
        config.http,
        rpc_config.listen,
        config.data_dir.display()
    );
    async_std::task::block_on(http::serve(http_listener, handle))
        .map_err(|e| format!("HTTP server on {}: {e}", config.http))
}
