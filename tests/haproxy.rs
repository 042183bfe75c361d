//! The shipped deploy/haproxy.cfg in front of a real 3-node TLS cluster,
//! run by Debian's haproxy: every node UP (haproxy 2.6 checks with
//! HTTP/1.0, which rdb once closed unanswered, so every node was DOWN);
//! commands through haproxy; the leader SIGKILLed is marked DOWN while the
//! others keep answering; UP again after a restart.
//!
//! Only addresses and certificate paths differ from the shipped file
//! (`rdb::cli::haproxy::adapt`, which `rdb dev --haproxy` uses too).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tls::{curl, gen_certs, tls_args};
use common::TestCluster;
use rdb::cli::haproxy::{adapt, server_states, HaproxyPlan, SHIPPED_CONFIG};

fn port_base() -> u16 {
    common::ports::base("haproxy")
}

fn front_port() -> u16 {
    port_base() + 90
}

/// haproxy, stopped on drop.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn plan(dir: &Path, cluster: &TestCluster) -> HaproxyPlan {
    let bundle = [
        std::fs::read(dir.join("front.pem")).expect("cert"),
        std::fs::read(dir.join("front-key.pem")).expect("key"),
    ]
    .concat();
    std::fs::write(dir.join("front-bundle.pem"), bundle).expect("bundle");
    HaproxyPlan {
        bind: SocketAddr::from(([127, 0, 0, 1], front_port())),
        tls: Some((dir.join("front-bundle.pem"), dir.join("ca.pem"))),
        stats_socket: dir.join("admin.sock"),
        servers: cluster
            .nodes
            .iter()
            .map(|node| {
                let name = format!("rdb{}", node.id);
                (name.clone(), SocketAddr::from(([127, 0, 0, 1], node.http_port)), name)
            })
            .collect(),
    }
}

/// Waits until haproxy reports `expected(name)` for every server.
fn wait_for_states(socket: &Path, expected: impl Fn(&str) -> &'static str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states = server_states(socket).unwrap_or_default();
        if states.len() == 3 && states.iter().all(|(name, state)| state == expected(name)) {
            return;
        }
        assert!(Instant::now() < deadline, "haproxy never saw {what}: {states:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A put through haproxy, retried while the cluster elects a leader.
fn put_through(front: &str, ca: &str, key: &str) {
    let body =
        format!(r#"{{"action":"put","payload":{{"collection":"lb","key":"{key}","value":"v"}}}}"#);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, answer) = curl(&["--cacert", ca, "-d", &body, front]);
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "haproxy does not answer puts: {status} {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_shipped_haproxy_config_fronts_a_tls_cluster() {
    if !common::have_tool("haproxy") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    gen_certs(
        dir.path(),
        &["rdb1:127.0.0.1", "rdb2:127.0.0.1", "rdb3:127.0.0.1", "front:127.0.0.1"],
    );
    let certs = dir.path().to_path_buf();
    let mut cluster =
        TestCluster::start_each(3, port_base(), &[], |id| tls_args(&certs, &format!("rdb{id}")));
    let plan = plan(dir.path(), &cluster);
    let config_path = dir.path().join("haproxy.cfg");
    std::fs::write(&config_path, adapt(SHIPPED_CONFIG, &plan).expect("adapts")).expect("write");
    let check =
        Command::new("haproxy").arg("-c").arg("-f").arg(&config_path).output().expect("runs");
    let text = String::from_utf8_lossy(&check.stderr).into_owned()
        + &String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && !text.contains("WARNING"), "haproxy -c: {text}");
    let _haproxy = Haproxy(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts"),
    );
    let socket = plan.stats_socket.clone();
    wait_for_states(&socket, |_| "UP", "every node UP");

    let front = format!("https://127.0.0.1:{}/command", front_port());
    let ca = dir.path().join("ca.pem").display().to_string();
    put_through(&front, &ca, "before");
    let (status, answer) = curl(&[
        "--cacert",
        &ca,
        "-d",
        r#"{"action":"get","payload":{"collection":"lb","key":"before"}}"#,
        &front,
    ]);
    assert_eq!(status, 200, "{answer}");

    // The leader dies: haproxy marks it DOWN and serves through the others.
    let leader = leader_over_https(&cluster, &ca);
    cluster.kill(leader);
    let dead = format!("rdb{leader}");
    wait_for_states(&socket, |name| if name == dead { "DOWN" } else { "UP" }, "the leader DOWN");
    for i in 0..20 {
        put_through(&front, &ca, &format!("after{i}"));
    }
    // Back after a restart.
    cluster.restart(leader);
    wait_for_states(&socket, |_| "UP", "every node UP again");
    put_through(&front, &ca, "restarted");
}

fn leader_over_https(cluster: &TestCluster, ca: &str) -> u16 {
    for node in &cluster.nodes {
        let (status, body) =
            curl(&["--cacert", ca, &format!("https://127.0.0.1:{}/status", node.http_port)]);
        let status_json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if status == 200 && status_json["role"] == "leader" {
            return node.id;
        }
    }
    panic!("no leader");
}
