//! TLS and deployment: a cluster over HTTPS and mutual TLS with certificates
//! from deploy/gen-certs.sh, checked with curl as a user would; a process
//! with a certificate from another CA gets nowhere; client certificates when
//! required; SIGTERM under load; systemd readiness; the unit file.
//!
//! Needs `openssl` and `curl` on PATH (CI installs them).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tls::{curl, gen_certs, tls_args};
use common::{get, put, TestCluster};
use serde_json::Value;

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn https_leader(certs: &Path, ports: &[u16]) -> u16 {
    let ca = certs.join("ca.pem").display().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for &port in ports {
            let (status, body) =
                curl(&["--cacert", &ca, &format!("https://127.0.0.1:{port}/status")]);
            let leader =
                serde_json::from_str::<Value>(&body).ok().and_then(|s| s["leader"].as_u64());
            if status == 200 && leader.is_some_and(|l| l != 0) {
                return u16::try_from(leader.unwrap_or(0)).expect("small");
            }
        }
        assert!(Instant::now() < deadline, "no leader over HTTPS");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a process that poses as member 1 of the cluster at `peers` (HTTP on
/// `http_port`, peer port `http_port + 1`) with the TLS files `tls`, gives it
/// 3 s to reach the members, and returns its /status as curl reads it with
/// `trust` (its own CA, or `-k`).
fn rogue_member_1_status(peers: &str, http_port: u16, tls: Vec<String>, trust: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("dir");
    let mut rogue = Command::new(env!("CARGO_BIN_EXE_rdb"))
        .args(["serve", "--id", "1", "--peers", peers])
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .args(["--raft", &format!("127.0.0.1:{}", http_port + 1), "--data-dir"])
        .arg(dir.path())
        .args(tls)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rogue starts");
    std::thread::sleep(Duration::from_secs(3));
    let url = format!("https://127.0.0.1:{http_port}/status");
    let (status, answer) = curl(&[trust, &[url.as_str()]].concat());
    let _ = rogue.kill();
    let _ = rogue.wait();
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).expect("json")
}

#[test]
fn gen_certs_makes_certificates_that_verify_with_their_names() {
    let dir = tempfile::tempdir().expect("dir");
    gen_certs(dir.path(), &["rdb1:10.0.0.1", "rdb2:10.0.0.2"]);
    let ca = dir.path().join("ca.pem").display().to_string();
    for (name, sans) in [("rdb1", Some("10.0.0.1")), ("rdb2", Some("10.0.0.2")), ("client", None)] {
        let cert = dir.path().join(format!("{name}.pem")).display().to_string();
        assert!(openssl(&["verify", "-CAfile", &ca, &cert]).contains(": OK"), "{name}");
        if let Some(ip) = sans {
            let text = openssl(&["x509", "-in", &cert, "-noout", "-ext", "subjectAltName"]);
            assert!(
                text.contains(&format!("DNS:{name}")) && text.contains(&format!("IP Address:{ip}")),
                "{text}"
            );
        }
    }
    let mode = std::fs::metadata(dir.path().join("rdb1-key.pem")).expect("key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
        0,
        "keys are private"
    );
}

#[test]
fn a_tls_cluster_serves_https_and_refuses_strangers() {
    let certs = tempfile::tempdir().expect("dir");
    let foreign = tempfile::tempdir().expect("dir");
    gen_certs(certs.path(), &["n1:127.0.0.1", "n2:127.0.0.1", "n3:127.0.0.1"]);
    gen_certs(foreign.path(), &["n1:127.0.0.1"]);
    let base = common::ports::base("cluster_tls::serves_https");
    let cluster =
        TestCluster::start_each(3, base, &[], |id| tls_args(certs.path(), &format!("n{id}")));
    let ports: Vec<u16> = (1..=3).map(|id| base + id).collect();
    let leader = https_leader(certs.path(), &ports);
    let ca = certs.path().join("ca.pem").display().to_string();

    // HTTPS verified against the cluster CA works, through any node.
    let follower = ports[usize::from(leader % 3)];
    let body = put("tls", "k", "v").to_string();
    let (status, answer) = curl(&[
        "--cacert",
        &ca,
        "-X",
        "POST",
        "-d",
        &body,
        &format!("https://127.0.0.1:{follower}/command"),
    ]);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = curl(&[
        "--cacert",
        &ca,
        "-d",
        &get("tls", "k").to_string(),
        &format!("https://127.0.0.1:{}/command", ports[0]),
    ]);
    assert_eq!(status, 200, "{answer}");
    // Plain HTTP to the TLS port gets no answer.
    assert_eq!(curl(&[&format!("http://127.0.0.1:{}/status", ports[0])]).0, 0);
    // Without the CA, curl rightly refuses the certificate.
    assert_eq!(curl(&[&format!("https://127.0.0.1:{}/status", ports[0])]).0, 0);

    // A fourth process with a certificate from another CA poses as member 1
    // (which dials 2 and 3): the handshakes fail, it never learns a leader,
    // and the cluster goes on.
    let foreign_ca = foreign.path().join("ca.pem").display().to_string();
    let rogue_status = rogue_member_1_status(
        &cluster.peers,
        base + 60,
        tls_args(foreign.path(), "n1"),
        &["--cacert", &foreign_ca],
    );
    assert_eq!(
        (rogue_status["leader"].as_u64(), rogue_status["term"].as_u64()),
        (Some(0), Some(0)),
        "{rogue_status}"
    );
    let body = put("tls", "after", "v").to_string();
    let (status, _) =
        curl(&["--cacert", &ca, "-d", &body, &format!("https://127.0.0.1:{}/command", ports[1])]);
    assert_eq!(status, 200, "the cluster keeps working");
    drop(cluster);
}

/// Every certificate the cluster CA signs, the HTTP API's client
/// certificate included, passes the peer handshake; `hello` must then check
/// that the certificate names the member claimed, or an application's API
/// credential could join the cluster as a voting member.
#[test]
fn a_certificate_from_the_cluster_ca_joins_only_as_the_member_it_names() {
    let certs = tempfile::tempdir().expect("dir");
    gen_certs(certs.path(), &["n1:127.0.0.1", "n2:127.0.0.1", "n3:127.0.0.1"]);
    let base = common::ports::base("cluster_tls::joins_only_as_the_member_it_names");
    let cluster =
        TestCluster::start_each(3, base, &[], |id| tls_args(certs.path(), &format!("n{id}")));
    let ports: Vec<u16> = (1..=3).map(|id| base + id).collect();
    let leader = https_leader(certs.path(), &ports);
    let ca = certs.path().join("ca.pem").display().to_string();

    // A process holding the API client certificate (signed by the cluster
    // CA, naming no address) poses as member 1, which dials 2 and 3.
    // Its HTTPS certificate names no address either: curl skips
    // verification to read its status.
    let rogue_status =
        rogue_member_1_status(&cluster.peers, base + 60, tls_args(certs.path(), "client"), &["-k"]);
    assert_eq!(
        (rogue_status["leader"].as_u64(), rogue_status["term"].as_u64()),
        (Some(0), Some(0)),
        "the rogue was let in as member 1: {rogue_status}"
    );

    // The real members never lost each other.
    let body = put("tls", "after", "v").to_string();
    let port = ports[usize::from(leader - 1)];
    let (status, _) =
        curl(&["--cacert", &ca, "-d", &body, &format!("https://127.0.0.1:{port}/command")]);
    assert_eq!(status, 200, "the cluster keeps working");
    drop(cluster);
}

#[test]
fn with_a_client_ca_clients_need_a_certificate() {
    let certs = tempfile::tempdir().expect("dir");
    gen_certs(certs.path(), &["n1:127.0.0.1", "n2:127.0.0.1", "n3:127.0.0.1"]);
    let ca = certs.path().join("ca.pem").display().to_string();
    let base = common::ports::base("cluster_tls::clients_need_a_certificate");
    let cluster = TestCluster::start_each(3, base, &[], |id| {
        let mut args = tls_args(certs.path(), &format!("n{id}"));
        args.extend(["--client-ca".into(), ca.clone()]);
        args
    });
    let url = format!("https://127.0.0.1:{}/health", base + 1);
    let (client, key) = (certs.path().join("client.pem"), certs.path().join("client-key.pem"));
    let with_cert = |url: &str| {
        curl(&[
            "--cacert",
            &ca,
            "--cert",
            &client.display().to_string(),
            "--key",
            &key.display().to_string(),
            url,
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while with_cert(&url).0 != 200 {
        assert!(Instant::now() < deadline, "no healthy node with a client certificate");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(curl(&["--cacert", &ca, &url]).0, 0, "a client without a certificate got an answer");
    drop(cluster);
}

#[test]
fn sigterm_under_load_exits_cleanly_and_loses_nothing() {
    let mut cluster =
        TestCluster::start(3, common::ports::base("cluster_tls::sigterm_under_load"), &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut child = cluster.nodes[usize::from(leader - 1)].child.take().expect("running");
    let cluster_ref = &cluster;
    let (acked, clean) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut acked = Vec::new();
            for i in 0..100_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = format!("k{i:06}");
                if cluster_ref.post_raw_maybe(leader, put("term", &key, "v").to_string().as_bytes())
                    == Some(200)
                {
                    acked.push(key);
                }
            }
            acked
        });
        std::thread::sleep(Duration::from_millis(1_500));
        let status =
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let started = Instant::now();
        let clean = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status.success();
            }
            assert!(started.elapsed() < Duration::from_secs(15), "no exit within 15 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (writer.join().expect("writer"), clean)
    });
    assert!(clean, "exit status was not 0");
    assert!(acked.len() > 10, "only {} writes before SIGTERM", acked.len());
    cluster.restart(leader);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(15));
    cluster.wait_for_convergence(Duration::from_secs(15));
    let held: std::collections::BTreeSet<String> =
        cluster.contents(leader, "term").into_iter().map(|(k, _)| k).collect();
    let missing: Vec<&String> = acked.iter().filter(|k| !held.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing after restart: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(cluster.contents(new_leader, "term").len(), held.len());
}

#[test]
fn systemd_hears_ready_once_the_node_has_joined() {
    let dir = tempfile::tempdir().expect("dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut cluster =
        TestCluster::start(3, common::ports::base("cluster_tls::systemd_hears_ready"), &[]);
    cluster.kill(3);
    cluster.nodes[2].env.push(("NOTIFY_SOCKET".into(), socket_path.display().to_string()));
    cluster.restart(3);
    let mut buffer = [0u8; 256];
    let n = socket.recv(&mut buffer).expect("a notification within 20 s");
    assert_eq!(&buffer[..n], b"READY=1");
    assert!(
        cluster.status(3).is_some_and(|s| s["leader"].as_u64() != Some(0)),
        "ready before it knew a leader"
    );
    assert!(cluster.terminate(3, Duration::from_secs(15)), "SIGTERM: exit status 0");
    let n = socket.recv(&mut buffer).expect("STOPPING");
    assert_eq!(&buffer[..n], b"STOPPING=1");
}

#[test]
fn the_unit_file_is_valid_and_hardened() {
    let unit_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rdb.service");
    let unit = std::fs::read_to_string(&unit_path).expect("unit file");
    for required in [
        "Type=notify",
        "ExecStart=/usr/local/bin/rdb serve --config /etc/rdb/rdb.toml",
        "User=rdb",
        "Restart=on-failure",
        "LimitNOFILE=",
        "StateDirectory=rdb",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/rdb",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            unit.lines().any(|line| line.starts_with(required)),
            "{required} missing from the unit"
        );
    }
    // systemd's own check, where systemd is installed (the executable path is
    // pointed at the built binary, since /usr/local/bin/rdb is not installed here).
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let dir = tempfile::tempdir().expect("dir");
        let copy: PathBuf = dir.path().join("rdb.service");
        std::fs::write(&copy, unit.replace("/usr/local/bin/rdb", env!("CARGO_BIN_EXE_rdb")))
            .expect("copy");
        let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().expect("runs");
        assert!(
            out.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn sighup_rotates_certificates_without_a_restart() {
    // Phase 1: a TLS cluster on certificates from CA one.
    let live = tempfile::tempdir().expect("dir");
    let (one, two) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    gen_certs(one.path(), &["n1:127.0.0.1", "n2:127.0.0.1", "n3:127.0.0.1"]);
    gen_certs(two.path(), &["n1:127.0.0.1", "n2:127.0.0.1", "n3:127.0.0.1"]);
    let install = |from: &Path| {
        for entry in std::fs::read_dir(from).expect("certs") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, live.path().join(path.file_name().expect("name"))).expect("copy");
        }
    };
    install(one.path());
    let base = common::ports::base("cluster_tls::sighup_rotates_certificates");
    let mut cluster =
        TestCluster::start_each(3, base, &[], |id| tls_args(live.path(), &format!("n{id}")));
    let ports: Vec<u16> = (1..=3).map(|id| base + id).collect();
    https_leader(one.path(), &ports);
    let (ca_one, ca_two) = (one.path().join("ca.pem"), two.path().join("ca.pem"));
    let status_with = |ca: &Path| {
        curl(&[
            "--cacert",
            &ca.display().to_string(),
            &format!("https://127.0.0.1:{}/status", ports[0]),
        ])
        .0
    };
    assert_eq!((status_with(&ca_one), status_with(&ca_two)), (200, 0));

    // Phase 2: the files are replaced with CA two's and every node gets SIGHUP.
    install(two.path());
    for node in &cluster.nodes {
        let pid = node.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_with(&ca_two) != 200 {
        assert!(Instant::now() < deadline, "the new certificate is not served after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status_with(&ca_one), 0, "the old certificate is still served");

    // Phase 3: peers reconnect with the new certificates after a restart of
    // one node (its new connections must pass the others' new CA).
    cluster.kill(2);
    cluster.restart(2);
    https_leader(two.path(), &ports);
    let body = put("rotated", "k", "v").to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    for attempt in 0.. {
        // Any node takes the write; one may still be restarting or electing.
        let url = format!("https://127.0.0.1:{}/command", ports[attempt % ports.len()]);
        let (status, answer) =
            curl(&["--cacert", &ca_two.display().to_string(), "-d", &body, &url]);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no write after the rotation: {status} {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(cluster);
}

/// deploy/rdb.toml as shipped, only its certificate directory changed, run
/// by `rdb serve --config` on three nodes (the test's own flags give each
/// its id, addresses and data directory, which flags override in the file):
/// every other setting (ticks, timeouts, snapshot and WAL sizes, limits)
/// is the file's, and the cluster serves HTTPS with the certificates it
/// names.
#[test]
fn the_shipped_config_file_runs_a_tls_cluster() {
    let certs = tempfile::tempdir().expect("dir");
    gen_certs(certs.path(), &["rdb1:127.0.0.1", "rdb2:127.0.0.1", "rdb3:127.0.0.1"]);
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rdb.toml"))
            .expect("deploy/rdb.toml");
    assert!(shipped.contains("\"/etc/rdb/tls/rdb1.pem\""), "the file names node 1's certificate");
    let base = common::ports::base("cluster_tls::the_shipped_config_file");
    let cluster = TestCluster::start_each(3, base, &[], |id| {
        let config = shipped
            .replace("rdb1", &format!("rdb{id}"))
            .replace("/etc/rdb/tls/", &format!("{}/", certs.path().display()));
        let path = certs.path().join(format!("rdb{id}.toml"));
        std::fs::write(&path, config).expect("config written");
        let raft = format!("127.0.0.1:{}", base + 50 + id);
        vec!["--config".into(), path.display().to_string(), "--raft".into(), raft]
    });
    let ports: Vec<u16> = (1..=3).map(|id| base + id).collect();
    let leader = https_leader(certs.path(), &ports);
    let ca = certs.path().join("ca.pem").display().to_string();
    let url = |port: u16| format!("https://127.0.0.1:{port}/command");
    let follower = ports[usize::from(leader % 3)];
    let (status, answer) =
        curl(&["--cacert", &ca, "-d", &put("shipped", "k", "v").to_string(), &url(follower)]);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) =
        curl(&["--cacert", &ca, "-d", &get("shipped", "k").to_string(), &url(ports[0])]);
    assert_eq!((status, answer.contains("\"value\":\"v\"")), (200, true), "{answer}");
    drop(cluster);
}
