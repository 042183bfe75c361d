//! `rdb dev`: a local cluster on 127.0.0.1 for trying rdb out. Each node is
//! a child process running `rdb serve`; Ctrl-C stops them all.

use super::error::Error;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Nodes in a dev cluster, at most.
pub const DEV_NODES_MAX: u16 = 7;
/// How long the nodes get to stop after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for the first leader before saying so.
const LEADER_WAIT: Duration = Duration::from_secs(15);

/// What `rdb dev` starts.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// How many nodes (1 to [`DEV_NODES_MAX`]).
    pub nodes: u16,
    /// Parent of each node's data directory.
    pub data_dir: PathBuf,
    /// HTTP port of node 1; node i uses `http_port + i - 1`.
    pub http_port: u16,
    /// Peer port of node 1; node i uses `raft_port + i - 1`.
    pub raft_port: u16,
    /// HTTPS and mutual TLS with throwaway certificates.
    pub tls: bool,
    /// If set, haproxy listens on 127.0.0.1 at this port in front of the
    /// nodes (deploy/haproxy.cfg adapted).
    pub haproxy_port: Option<u16>,
    /// Passed on to each node (`--log-format`).
    pub log_format: super::logging::LogFormat,
}

/// Starts the cluster and waits for Ctrl-C (or for every node to exit; a
/// node that exits, killed to try a failover, say, is reported and the
/// others go on).
pub fn dev(options: &DevOptions) -> Result<(), Error> {
    if !(1..=DEV_NODES_MAX).contains(&options.nodes) {
        return Err(Error::Usage(format!("--nodes must be from 1 to {DEV_NODES_MAX}")));
    }
    if options.haproxy_port.is_some() && !super::haproxy::installed() {
        return Err(Error::Usage(
            "--haproxy needs haproxy on PATH (Debian: apt install haproxy); start without \
             --haproxy to use the nodes directly"
                .into(),
        ));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::System(format!("cannot find my own binary: {e}")))?;
    let ids: Vec<u16> = (1..=options.nodes).collect();
    let port = |base: u16, id: u16| {
        base.checked_add(id - 1).ok_or_else(|| Error::Usage("port out of range".into()))
    };
    let mut peers = Vec::new();
    for &id in &ids {
        peers.push(format!("{id}=127.0.0.1:{}", port(options.raft_port, id)?));
    }
    let peers = peers.join(",");
    let (stop_tx, stop) = std::sync::mpsc::channel();
    let on_signal = stop_tx.clone();
    ctrlc::set_handler(move || {
        let _ = on_signal.send(());
    })
    .map_err(|e| Error::System(format!("cannot handle Ctrl-C: {e}")))?;
    let certs = if options.tls {
        Some(super::dev_certs::make(&options.data_dir.join("tls"))?)
    } else {
        None
    };
    let tls_args = tls_args(certs.as_ref());
    let mut children = Vec::new();
    for &id in &ids {
        let data_dir = options.data_dir.join(format!("node{id}"));
        let child = Command::new(&exe)
            .arg("serve")
            .args(["--id", &id.to_string(), "--peers", &peers])
            .args(["--http", &format!("127.0.0.1:{}", port(options.http_port, id)?)])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&tls_args)
            .args(["--log-format", options.log_format.name()])
            .spawn()
            .map_err(|e| Error::System(format!("cannot start node {id}: {e}")));
        match child {
            Ok(child) => children.push((id, child)),
            Err(why) => {
                stop_all(&mut children);
                return Err(why);
            }
        }
    }
    if let Some(haproxy_port) = options.haproxy_port {
        match start_haproxy(options, haproxy_port, &ids, certs.as_ref()) {
            Ok(child) => children.push((0, child)),
            Err(why) => {
                stop_all(&mut children);
                return Err(why);
            }
        }
    }
    // The commands to try come once they work: after the leader (and
    // haproxy's checks).
    wait_for_leader(options.http_port, certs.as_ref().map(|c| c.ca.as_path()));
    if options.haproxy_port.is_some() {
        wait_for_haproxy(&options.data_dir.join("haproxy/admin.sock"));
    }
    print_usage(options, &ids, certs.as_ref().map(|c| c.ca.as_path()));
    let result = supervise(&mut children, &stop);
    stop_all(&mut children);
    result
}

/// The flags that give a node its throwaway certificates.
fn tls_args(certs: Option<&super::dev_certs::DevCerts>) -> Vec<std::ffi::OsString> {
    match certs {
        Some(certs) => vec![
            "--tls-cert".into(),
            certs.cert.clone().into(),
            "--tls-key".into(),
            certs.key.clone().into(),
            "--tls-ca".into(),
            certs.ca.clone().into(),
        ],
        None => Vec::new(),
    }
}

/// haproxy in front of the nodes, with the shipped configuration adapted;
/// its files and log under `<data-dir>/haproxy`.
fn start_haproxy(
    options: &DevOptions,
    port: u16,
    ids: &[u16],
    certs: Option<&super::dev_certs::DevCerts>,
) -> Result<Child, Error> {
    let dir = options.data_dir.join("haproxy");
    std::fs::create_dir_all(&dir).map_err(|e| Error::System(format!("{}: {e}", dir.display())))?;
    // haproxy runs with its own idea of the working directory's role in
    // paths; give it absolute ones.
    let dir = std::fs::canonicalize(&dir)
        .map_err(|e| Error::System(format!("{}: {e}", dir.display())))?;
    let tls = match certs {
        Some(certs) => {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|e| Error::System(format!("{}: {e}", path.display())))
            };
            let front = dir.join("front.pem");
            std::fs::write(&front, [read(&certs.cert)?, read(&certs.key)?].concat())
                .map_err(|e| Error::System(format!("{}: {e}", front.display())))?;
            Some((
                front,
                std::fs::canonicalize(&certs.ca).map_err(|e| Error::System(e.to_string()))?,
            ))
        }
        None => None,
    };
    let servers = ids
        .iter()
        .map(|&id| {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], options.http_port + id - 1));
            (format!("rdb{id}"), addr, "localhost".to_string())
        })
        .collect();
    let plan = super::haproxy::HaproxyPlan {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        tls,
        stats_socket: dir.join("admin.sock"),
        servers,
    };
    super::haproxy::start(&plan, &dir)
}

fn print_usage(options: &DevOptions, ids: &[u16], ca: Option<&std::path::Path>) {
    let scheme = if ca.is_some() { "https" } else { "http" };
    let http = |id: u16| format!("{scheme}://127.0.0.1:{}", options.http_port + id - 1);
    println!("rdb dev: {} nodes, data under {}", ids.len(), options.data_dir.display());
    for &id in ids {
        println!(
            "  node {id}: {}/command  (peers on 127.0.0.1:{})",
            http(id),
            options.raft_port + id - 1
        );
    }
    let url = http(1);
    let curl = match ca {
        Some(ca) => format!("curl -s --cacert {}", ca.display()),
        None => "curl -s".to_string(),
    };
    if let Some(ca) = ca {
        println!("TLS: throwaway certificates; the CA is {}", ca.display());
    }
    let url = match options.haproxy_port {
        Some(port) => {
            let front = format!("{scheme}://127.0.0.1:{port}");
            println!("  haproxy: {front}/command  (in front of every node; log and config in {}/haproxy)", options.data_dir.display());
            front
        }
        None => url,
    };
    println!("\nTry:");
    println!("  {curl} -X POST {url}/command -H 'Content-Type: application/json' \\\n    -d '{{\"action\":\"put\",\"payload\":{{\"collection\":\"users\",\"value\":\"alice\"}}}}'");
    println!("  {curl} -X POST {url}/command -H 'Content-Type: application/json' \\\n    -d '{{\"action\":\"get\",\"payload\":{{\"collection\":\"users\",\"value\":\"alice\"}}}}'");
    println!("  {curl} -X POST {url}/command -d '{{\"action\":\"list collections\"}}'");
    println!("  {curl} {url}/status");
    let cacert = ca.map(|ca| format!(" --cacert {}", ca.display())).unwrap_or_default();
    println!("  rdb status --endpoints {url}{cacert}");
    println!("  dashboard: {url}/ in a browser");
    println!("\nCtrl-C stops every node.");
}

fn wait_for_leader(http_port: u16, ca: Option<&std::path::Path>) {
    let started = Instant::now();
    while started.elapsed() < LEADER_WAIT {
        if http_get(http_port, "/health", ca)
            .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
            && cluster_version_raised(http_port, ca)
        {
            println!("A leader is elected; the cluster is ready.");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("No leader after {LEADER_WAIT:?}; see the nodes' logs above.");
}

/// Waits until haproxy's checks find every node UP (it starts them DOWN).
fn wait_for_haproxy(socket: &std::path::Path) {
    let started = Instant::now();
    let mut states = Vec::new();
    while started.elapsed() < LEADER_WAIT {
        states = super::haproxy::server_states(socket).unwrap_or_default();
        if !states.is_empty() && states.iter().all(|(_, state)| state == "UP") {
            println!("haproxy sees every node UP.");
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("haproxy does not see every node UP after {LEADER_WAIT:?}: {states:?}");
}

/// Whether the cluster runs at the highest version the node supports. A
/// new cluster starts at version 1 and its leader raises it within about a
/// second; writes before that get no revisions (API.md), so the commands
/// are printed after.
fn cluster_version_raised(port: u16, ca: Option<&std::path::Path>) -> bool {
    let Some(answer) = http_get(port, "/status", ca) else { return false };
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let status: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let version = status["cluster_version"].as_u64();
    version.is_some() && version == status["cluster_version_max"].as_u64()
}

/// A minimal GET against a local node (over TLS, trusting `ca`), for the
/// readiness check.
fn http_get(port: u16, path: &str, ca: Option<&std::path::Path>) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    match ca {
        None => {
            let mut stream = stream;
            stream.write_all(request.as_bytes()).ok()?;
            stream.take(64 * 1024).read_to_string(&mut answer).ok()?;
        }
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(ca).ok()?;
            for der in rustls_pemfile::certs(&mut pem.as_slice()).ok()? {
                roots.add(&rustls::Certificate(der)).ok()?;
            }
            let config = rustls::ClientConfig::builder()
                .with_safe_defaults()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = rustls::ServerName::try_from("127.0.0.1").ok()?;
            let connection =
                rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
            let mut tls = rustls::StreamOwned::new(connection, stream);
            tls.write_all(request.as_bytes()).ok()?;
            let _ = tls.take(64 * 1024).read_to_string(&mut answer);
        }
    }
    Some(answer)
}

fn supervise(
    children: &mut [(u16, Child)],
    stop: &std::sync::mpsc::Receiver<()>,
) -> Result<(), Error> {
    let mut exited = std::collections::BTreeSet::new();
    loop {
        if stop.recv_timeout(Duration::from_millis(200)).is_ok() {
            println!("\nStopping the cluster.");
            return Ok(());
        }
        for (id, child) in children.iter_mut() {
            let Ok(Some(status)) = child.try_wait() else { continue };
            if exited.insert(*id) {
                let what = if *id == 0 { "haproxy".to_string() } else { format!("node {id}") };
                println!("{what} exited ({status}); the others keep running (Ctrl-C stops them)");
            }
        }
        if exited.len() == children.len() {
            return Err(Error::System("every node exited".into()));
        }
    }
}

/// Stops the nodes as systemd would: SIGTERM, then SIGKILL for any still
/// running after [`STOP_WAIT`].
fn stop_all(children: &mut Vec<(u16, Child)>) {
    for (_, child) in children.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let deadline = Instant::now() + STOP_WAIT;
    for (_, mut child) in children.drain(..) {
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
