//! `rdb dev`, as the README has a user run it: it starts the nodes, prints
//! the curl commands, serves them (plain, with `--tls`, behind haproxy with
//! `--haproxy`), and stops every node on Ctrl-C (SIGINT).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `rdb dev`, interrupted as by Ctrl-C when dropped, so that a
/// test that fails stops the nodes it started all the same.
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `rdb dev` with `extra` flags in `dir`; waits for the line that
/// contains `ready` and answers every line printed so far.
fn start_dev(
    dir: &std::path::Path,
    http_port: u16,
    raft_port: u16,
    extra: &[&str],
    ready: &str,
) -> (Dev, Vec<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rdb"));
    command
        .current_dir(dir)
        .args([
            "dev",
            "--nodes",
            "3",
            "--http-port",
            &http_port.to_string(),
            "--raft-port",
            &raft_port.to_string(),
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    let mut dev = Dev(command.spawn().expect("rdb dev starts"));
    let stdout = dev.0.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines.iter().any(|l: &String| l.contains(ready)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("rdb dev never became ready: {lines:?}"),
        }
    }
    (dev, lines)
}

fn curl(args: &[&str]) -> String {
    let out =
        Command::new("curl").args(["-s", "--max-time", "10"]).args(args).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn interrupt_and_wait(mut dev: Dev, http_port: u16) {
    let status =
        Command::new("kill").args(["-INT", &dev.0.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "rdb dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    for port in http_port..http_port + 3 {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a node still listens on {port}"
        );
    }
}

#[test]
fn rdb_dev_serves_the_printed_commands_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("dir");
    let base = common::ports::base("dev_cluster::serves_the_printed_commands");
    let (dev, lines) = start_dev(dir.path(), base + 1, base + 51, &[], "Ctrl-C stops every node");
    let ready = lines.iter().position(|l| l.contains("cluster is ready"));
    let try_these = lines.iter().position(|l| l.starts_with("Try:"));
    assert!(ready.is_some() && ready < try_these, "the commands come once they work: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("curl -s -X POST http://127.0.0.1:{}/command", base + 1))),
        "{lines:?}"
    );
    let url = format!("http://127.0.0.1:{}/command", base + 2);
    let put = curl(&[
        "-X",
        "POST",
        &url,
        "-d",
        r#"{"action":"put","payload":{"collection":"users","value":"alice"}}"#,
    ]);
    assert!(put.contains("\"value\":\"alice\""), "{put}");
    // Printed once the cluster runs at this binary's version: the first
    // write already has its revisions.
    let put: serde_json::Value = serde_json::from_str(&put).expect("JSON");
    assert!(put["mod_revision"].as_u64().is_some_and(|r| r > 0), "{put}");
    assert!(dir.path().join("rdb-dev/node1/wal").is_dir(), "data under ./rdb-dev");
    interrupt_and_wait(dev, base + 1);
}

#[test]
fn rdb_dev_tls_serves_https_with_its_throwaway_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let base = common::ports::base("dev_cluster::tls");
    let (dev, lines) =
        start_dev(dir.path(), base + 1, base + 51, &["--tls"], "Ctrl-C stops every node");
    assert!(lines.iter().any(|l| l.contains("--cacert rdb-dev/tls/ca.pem")), "{lines:?}");
    let ca = dir.path().join("rdb-dev/tls/ca.pem").display().to_string();
    let url = format!("https://127.0.0.1:{}/command", base + 3);
    let put = curl(&[
        "--cacert",
        &ca,
        "-X",
        "POST",
        &url,
        "-d",
        r#"{"action":"put","payload":{"collection":"users","value":"bob"}}"#,
    ]);
    assert!(put.contains("\"value\":\"bob\""), "{put}");
    interrupt_and_wait(dev, base + 1);
}

#[test]
fn rdb_dev_haproxy_puts_the_shipped_config_in_front() {
    if !common::have_tool("haproxy") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let base = common::ports::base("dev_cluster::haproxy");
    let front = (base + 90).to_string();
    let extra = ["--haproxy", "--haproxy-port", front.as_str()];
    let (dev, lines) =
        start_dev(dir.path(), base + 1, base + 51, &extra, "Ctrl-C stops every node");
    assert!(
        lines.iter().any(|l| l.contains(&format!("haproxy: http://127.0.0.1:{front}/command"))),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("curl -s -X POST http://127.0.0.1:{front}/command"))),
        "the printed commands go through haproxy: {lines:?}"
    );
    let url = format!("http://127.0.0.1:{front}/command");
    let put = curl(&[
        "-X",
        "POST",
        &url,
        "-d",
        r#"{"action":"put","payload":{"collection":"users","value":"carol"}}"#,
    ]);
    assert!(put.contains("\"value\":\"carol\""), "{put}");
    interrupt_and_wait(dev, base + 1);
    assert!(std::net::TcpStream::connect(("127.0.0.1", base + 90)).is_err(), "haproxy stopped too");
}

#[test]
fn rdb_dev_haproxy_without_haproxy_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let base = common::ports::base("dev_cluster::without_haproxy");
    let (http, raft) = ((base + 1).to_string(), (base + 51).to_string());
    let output = Command::new(env!("CARGO_BIN_EXE_rdb"))
        .current_dir(dir.path())
        .args(["dev", "--haproxy", "--http-port", &http, "--raft-port", &raft])
        .env("PATH", dir.path())
        .output()
        .expect("rdb dev runs");
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("apt install haproxy"), "{text}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", base + 1)).is_err(), "no node started");
}
