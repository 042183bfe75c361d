//! systemd readiness (`Type=notify`): `READY=1` on `$NOTIFY_SOCKET` once the
//! node has joined its cluster (it knows a leader), `STOPPING=1` when it
//! begins to shut down. Without `$NOTIFY_SOCKET` (not under systemd) these
//! do nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::node::NodeHandle;

/// How often readiness is checked.
const POLL: Duration = Duration::from_millis(50);

/// Sends `state` to systemd, if it is listening.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(socket) = UnixDatagram::unbound() else { return };
    let bytes = path.as_encoded_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        // An abstract socket (Linux): the name after the '@'.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(error) = sent {
        log::warn!("cannot notify systemd ({state}): {error}");
    }
}

/// Reports readiness once `node` knows a leader (from a thread of its own).
pub fn ready_when_joined(node: NodeHandle) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let spawned = std::thread::Builder::new().name("rdb-notify".into()).spawn(move || {
        while node.status().leader == 0 {
            std::thread::sleep(POLL);
        }
        notify("READY=1");
        log::info!("node {}: joined the cluster; told systemd it is ready", node.id());
    });
    if let Err(error) = spawned {
        log::warn!("cannot start the readiness thread: {error}");
    }
}
