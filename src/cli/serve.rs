//! `rdb serve`: wires storage, Raft, the peer RPC and the HTTP API into one
//! running node, and handles signals: SIGHUP re-reads the TLS files;
//! SIGTERM (or SIGINT) on the leader first hands leadership to the most
//! caught-up voter (up to [`HANDOVER_TIMEOUT`], serving meanwhile), then
//! stops accepting requests, lets those in flight finish (up to
//! [`DRAIN_TIMEOUT`]), stops the node (which syncs the state file) and
//! exits 0.

use super::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::config::ServeConfig;
use crate::tls::TlsState;
use crate::{http, node, rpc};

/// How long a shutdown waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping leader waits for another voter to take over.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a node until SIGTERM; an error says why it could not start.
pub fn serve(config: &ServeConfig) -> Result<(), Error> {
    let tls = config.tls_files()?.map(TlsState::load).transpose()?;
    let node_config = config.node()?;
    let mut rpc_config = config.rpc()?;
    rpc_config.tls = tls.clone();
    // Both ports are checked before the data directory is touched, so that
    // a start that fails for a taken port leaves nothing behind (a first
    // start records the members of --peers).
    let http_listener = http::bind(config.http)
        .map_err(|e| Error::System(format!("cannot listen for clients on {}: {e}", config.http)))?;
    std::net::TcpListener::bind(rpc_config.listen).map_err(|e| {
        Error::System(format!("cannot listen for peers on {}: {e}", rpc_config.listen))
    })?;
    let (handle, event_loop) = node::open(node_config)?;
    let (transport, forwarder) =
        rpc::start(rpc_config.clone(), handle.clone()).map_err(|e| Error::System(e.to_string()))?;
    handle.set_forwarder(Box::new(forwarder));
    let id = config.id;
    let node_thread = std::thread::Builder::new()
        .name(format!("rdb-node-{id}"))
        .spawn(move || {
            let result = event_loop.run(Box::new(transport));
            if let Err(why) = result {
                log::error!("node {id} stopped: {why}");
                if let Some(hint) = Error::from(why).hint() {
                    log::error!("node {id}: {hint}");
                }
                std::process::exit(2);
            }
        })
        .map_err(|e| Error::System(format!("cannot start the event loop: {e}")))?;
    let stop = watch_signals(tls.clone(), handle.clone())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let security = match (&tls, &config.client_ca) {
        (None, _) => "plain HTTP and plaintext peers: no TLS certificate configured",
        (Some(_), None) => "TLS; peers use mutual TLS",
        (Some(_), Some(_)) => "TLS with client certificates; peers use mutual TLS",
    };
    log::info!(
        "node {id}: API on {scheme}://{} ({security}), peers on {}, data in {}",
        config.http,
        rpc_config.listen,
        config.data_dir.display()
    );
    super::notify::ready_when_joined(handle.clone());
    async_std::task::spawn(node::raise_cluster_version(handle.clone()));
    async_std::task::spawn(node::expire_leases(handle.clone()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    async_std::task::block_on(http::serve(
        http_listener,
        handle.clone(),
        tls,
        stop,
        in_flight.clone(),
    ));
    super::notify::notify("STOPPING=1");
    log::info!("node {id}: stopping; no new requests, finishing those in flight");
    let started = Instant::now();
    while in_flight.load(Ordering::Acquire) > 0 && started.elapsed() < DRAIN_TIMEOUT {
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.stop();
    node_thread.join().map_err(|_| Error::System("the event loop panicked".into()))?;
    log::info!("node {id}: stopped cleanly");
    Ok(())
}

/// Starts the signal thread; the receiver fires on SIGTERM or SIGINT, once
/// a leader has handed over.
fn watch_signals(
    tls: Option<Arc<TlsState>>,
    node: node::NodeHandle,
) -> Result<oneshot::Receiver<()>, Error> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::System(format!("cannot handle signals: {e}")))?;
    let (stop, stopped) = oneshot::channel();
    std::thread::Builder::new()
        .name("rdb-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal != SIGHUP {
                    hand_over(&node);
                    let _ = stop.send(());
                    return;
                }
                match tls.as_ref().map(|tls| tls.reload()) {
                    Some(Ok(())) => log::info!("SIGHUP: TLS certificates re-read"),
                    Some(Err(why)) => log::error!("SIGHUP: keeping the old certificates: {why}"),
                    None => log::info!("SIGHUP: no TLS configured, nothing to re-read"),
                }
            }
        })
        .map_err(|e| Error::System(format!("cannot start the signal thread: {e}")))?;
    Ok(stopped)
}

/// On the leader: hands leadership to the most caught-up voter and waits
/// (up to [`HANDOVER_TIMEOUT`]) until another node leads, so that the
/// cluster need not wait an election timeout for this node's absence.
fn hand_over(node: &node::NodeHandle) {
    let id = node.id();
    let status = node.status();
    // A lone voter has no one to hand over to.
    if status.role != "leader" || status.membership.voters().count() <= 1 {
        return;
    }
    log::info!("node {id}: stopping; handing leadership over first");
    match async_std::task::block_on(node.hand_over(HANDOVER_TIMEOUT)) {
        Some(successor) => log::info!("node {id}: node {successor} leads now"),
        None => log::warn!(
            "node {id}: no voter took over within {HANDOVER_TIMEOUT:?} (are the others stopping \
             too, or unreachable?); stopping"
        ),
    }
}
