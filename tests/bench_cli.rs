//! `rdb bench` run as an operator runs it, against real clusters: the keys
//! a random put run writes are the keys an `existing` get run reads (every
//! get a 200), the counts and statuses it reports are what the cluster
//! holds, HTTPS with a client certificate works, txn-put, lease-keepalive
//! and watch do what they say (the keys, the leases, every event to every
//! watcher), and bad flags and an unreachable cluster are clear errors with
//! the CLI's exit codes.

mod common;

use std::time::{Duration, Instant};

use common::TestCluster;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Runs `rdb bench` with `args`; its exit code, stdout and stderr.
fn bench(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdb"))
        .arg("bench")
        .args(args)
        .env_remove("RDB_ENDPOINTS")
        .output()
        .expect("rdb runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Runs `rdb bench ... --json` and parses the report.
fn bench_json(args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let (code, out, err) = bench(&args);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_random_put_run_writes_the_keys_an_existing_get_run_reads() {
    let base = common::ports::base("bench_cli::random_put_then_existing_get");
    let cluster = TestCluster::start(3, base, &[]);
    let leader = cluster.wait_for_leader(WAIT);
    let endpoints = (1..=3).map(|id| format!("http://127.0.0.1:{}", base + id)).collect::<Vec<_>>();
    let endpoints = endpoints.join(",");
    let put = bench_json(&["put", "--requests", "600", "-c", "8", "--endpoints", &endpoints]);
    assert_eq!(put["requests"], 600, "{put}");
    assert_eq!(put["statuses"]["200"], 600, "{put}");
    assert!(put["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{put}");

    // The cluster holds exactly the 600 keys, named as documented.
    cluster.wait_for_convergence(WAIT);
    let held = cluster.contents(leader, "bench");
    assert_eq!(held.len(), 600);
    let names: std::collections::HashSet<String> =
        (0..600).map(|i| rdb::cli::bench::random_key(1, i)).collect();
    assert!(held.iter().all(|(key, value)| names.contains(key) && value.len() == 100));

    // Gets of existing keys, through every node, all found.
    for consistency in ["linearizable", "serializable"] {
        let get = bench_json(&[
            "get",
            "--requests",
            "600",
            "-c",
            "8",
            "--key-space",
            "600",
            "--endpoints",
            &endpoints,
            "--consistency",
            consistency,
        ]);
        assert_eq!(get["statuses"]["200"], 600, "{consistency}: {get}");
    }
    // Another seed names other keys: none found, and the run says so.
    let (code, out, _) = bench(&[
        "get",
        "--requests",
        "50",
        "-c",
        "2",
        "--key-space",
        "600",
        "--seed",
        "2",
        "--endpoints",
        &endpoints,
    ]);
    assert_eq!(code, 3, "no request succeeded: unavailable\n{out}");

    // A mixed run continuing the keys adds new ones after the first 600.
    let mixed = bench_json(&[
        "mixed",
        "--requests",
        "400",
        "-c",
        "4",
        "--key-space",
        "600",
        "--first-key",
        "600",
        "--read-ratio",
        "0.5",
        "--endpoints",
        &endpoints,
    ]);
    assert_eq!(mixed["statuses"]["200"], 400, "{mixed}");
    cluster.wait_for_convergence(WAIT);
    let grown = cluster.contents(leader, "bench").len();
    assert!((601..=1_000).contains(&grown), "{grown}");

    distinct_values_are_found_by_value(&cluster, leader, &endpoints);
    a_timed_run_reports_progress_and_a_table(&cluster, leader, &endpoints);
    ctrl_c_ends_a_run_early_with_its_report(&endpoints);
    large_values_arrive_whole(&cluster, leader, &endpoints);
    txns_leases_and_watches(&cluster, leader, &endpoints);
}

/// `--values distinct` puts values that start with their keys and differ.
/// `put` makes a collection with no value index (a get by value is a 400);
/// `put-value` makes one that keeps it: a get by value finds each key the
/// nodes drew.
fn distinct_values_are_found_by_value(cluster: &TestCluster, leader: u16, endpoints: &str) {
    let run = |operation: &str, collection: &str| {
        let args = ["--values", "distinct", "--requests", "40", "-c", "4", "--endpoints"];
        let put = bench_json(
            &[&[operation][..], &args, &[endpoints, "--collection", collection]].concat(),
        );
        assert_eq!(put["statuses"]["200"], 40, "{put}");
        let held = cluster.contents(leader, collection);
        assert_eq!(held.len(), 40);
        let values: std::collections::HashSet<&str> =
            held.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values.len(), 40, "every value differs");
        held
    };
    let lookup = |collection: &str, value: &str| {
        let get = json!({"action": "get", "payload": {"collection": collection, "value": value}});
        cluster.command(leader, &get)
    };
    let by_key = run("put", "distinct");
    for (key, value) in &by_key {
        assert!(value.starts_with(key.as_str()) && value.len() == 100, "{key}: {value}");
    }
    let (status, refused) = lookup("distinct", &by_key[0].1);
    assert_eq!(status, 400, "no value index: {refused}");
    let by_value = run("put-value", "by-value");
    let names: std::collections::HashSet<String> =
        (0..40).map(|i| rdb::cli::bench::random_key(1, i)).collect();
    for (key, value) in &by_value {
        assert_eq!(key.len(), 64, "the node drew the key: {key}");
        assert!(names.contains(&value[..16]) && value.len() == 100, "{key}: {value}");
        let (status, found) = lookup("by-value", value);
        assert_eq!((status, found["key"].as_str()), (200, Some(key.as_str())), "{found}");
    }
}

/// txn-put writes `--txn-ops` keys a txn, lease-keepalive renews leases
/// that exist, and watch delivers every acknowledged put to every watcher.
fn txns_leases_and_watches(cluster: &TestCluster, leader: u16, endpoints: &str) {
    let args = ["--collection", "txn", "--txn-ops", "3", "-c", "4", "--endpoints", endpoints];
    let txn = bench_json(&[&["txn-put", "--requests", "100"][..], &args].concat());
    assert_eq!(txn["statuses"]["200"], 100, "{txn}");
    cluster.wait_for_convergence(WAIT);
    let held = cluster.contents(leader, "txn");
    assert_eq!(held.len(), 300, "3 new keys a txn");
    let names: std::collections::HashSet<String> =
        (0..300).map(|i| rdb::cli::bench::random_key(1, i)).collect();
    assert!(held.iter().all(|(key, _)| names.contains(key)));

    let keepalive =
        bench_json(&["lease-keepalive", "--requests", "200", "-c", "4", "--endpoints", endpoints]);
    assert_eq!(keepalive["statuses"]["200"], 200, "{keepalive}");
    let (_, leases) = cluster.command(leader, &json!({"action": "leases"}));
    assert_eq!(leases["leases"].as_array().map(Vec::len), Some(0), "revoked at the end: {leases}");

    // Paced: no request whose turn falls after the deadline is sent.
    let paced = bench_json(&[
        "put",
        "--rate",
        "10",
        "--duration",
        "1s",
        "-c",
        "4",
        "--collection",
        "paced",
        "--endpoints",
        endpoints,
    ]);
    let answered = paced["requests"].as_u64().expect("requests");
    assert!((1..=10).contains(&answered) && paced["unfinished"] == 0, "{paced}");
    cluster.wait_for_convergence(WAIT);
    assert_eq!(cluster.contents(leader, "paced").len() as u64, answered, "{paced}");

    let watch = bench_json(&[
        "watch",
        "--watchers",
        "30",
        "--rate",
        "50",
        "--requests",
        "100",
        "-c",
        "2",
        "--collection",
        "watched",
        "--endpoints",
        endpoints,
    ]);
    assert_eq!(watch["statuses"]["200"], 100, "{watch}");
    let report = &watch["watch"];
    assert_eq!(report["ended_early"], 0, "{watch}");
    assert_eq!(report["expected_events"], 3_000, "{watch}");
    assert_eq!(report["events"], 3_000, "every put to every watcher once: {watch}");
    assert!(report["delivery_ms"]["p99"].as_f64().is_some_and(|ms| ms > 0.0), "{watch}");
    // At 50 puts/s, 100 puts take about 2 s.
    assert!(watch["seconds"].as_f64().is_some_and(|s| s >= 1.9), "{watch}");
}

/// A value too large to go out with its head (sent from its parts) is
/// stored whole.
fn large_values_arrive_whole(cluster: &TestCluster, leader: u16, endpoints: &str) {
    let put = bench_json(&[
        "put",
        "--requests",
        "3",
        "-c",
        "1",
        "--keys",
        "sequential",
        "--first-key",
        "100",
        "--value-bytes",
        "300000",
        "--endpoints",
        endpoints,
    ]);
    assert_eq!(put["statuses"]["200"], 3, "{put}");
    let (status, answer) = cluster.command(
        leader,
        &json!({"action": "get",
        "payload": {"collection": "bench", "key": "0000000000000102"}}),
    );
    assert_eq!((status, answer["value"].as_str().map(str::len)), (200, Some(300_000)));
}

/// SIGINT in the middle of a 60 s run: it stops taking requests, answers
/// the ones in flight and prints the report, well before the 60 s.
fn ctrl_c_ends_a_run_early_with_its_report(endpoints: &str) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rdb"))
        .args(["bench", "put", "--duration", "60s", "-c", "4", "--json", "--endpoints", endpoints])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rdb runs");
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1_500));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().expect("rdb ends");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report, as JSON");
    assert!(report["statuses"]["200"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["errors"], json!({}), "{report}");
}

/// A duration-bounded run prints a progress line each second and the
/// table; its sequential 1 KiB values land under the documented names.
fn a_timed_run_reports_progress_and_a_table(cluster: &TestCluster, leader: u16, endpoints: &str) {
    let (code, out, err) = bench(&[
        "put",
        "--duration",
        "2500ms",
        "-c",
        "4",
        "--keys",
        "sequential",
        "--value-bytes",
        "1024",
        "--endpoints",
        endpoints,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err.lines().filter(|l| l.contains("ops/s")).count(), 2, "{err}");
    assert!(out.contains("throughput") && out.contains("p99.9") && out.contains("200: "), "{out}");
    let (status, answer) = cluster.command(
        leader,
        &json!({"action": "get",
        "payload": {"collection": "bench", "key": "0000000000000000"}}),
    );
    assert_eq!((status, answer["value"].as_str().map(str::len)), (200, Some(1024)));
}

#[test]
fn bench_speaks_https_with_a_client_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    common::tls::gen_certs(dir.path(), &["rdb1:127.0.0.1", "rdb2:127.0.0.1", "rdb3:127.0.0.1"]);
    let certs = dir.path().to_path_buf();
    let client_ca = certs.join("ca.pem").display().to_string();
    let base = common::ports::base("bench_cli::https_with_a_client_certificate");
    let cluster = TestCluster::start_each(3, base, &["--client-ca", &client_ca], |id| {
        common::tls::tls_args(&certs, &format!("rdb{id}"))
    });
    let file = |name: &str| certs.join(name).display().to_string();
    let endpoint = &format!("https://127.0.0.1:{}", base + 1);
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client-key.pem"));
    let tls = ["--endpoints", endpoint, "--cacert", &ca, "--cert", &cert, "--key", &key];
    let with = |args: &[&'static str]| args.iter().copied().chain(tls).collect::<Vec<&str>>();
    let deadline = Instant::now() + WAIT;
    while bench(&with(&["put", "--requests", "1", "-c", "1"])).0 != 0 {
        assert!(Instant::now() < deadline, "node 1 never answered over HTTPS");
        std::thread::sleep(Duration::from_millis(200));
    }
    let put = bench_json(&with(&["put", "--requests", "200", "-c", "4", "--first-key", "1"]));
    assert_eq!(put["statuses"]["200"], 200, "{put}");
    // Without the client certificate the node refuses the handshake.
    let (code, _, err) = bench(&[
        "put",
        "--requests",
        "5",
        "-c",
        "1",
        "--endpoints",
        endpoint,
        "--cacert",
        &file("ca.pem"),
    ]);
    assert_eq!(code, 3, "{err}");
    drop(cluster);
}

#[test]
fn bad_flags_and_an_unreachable_cluster_are_clear_errors() {
    for (args, why) in [
        (vec!["put", "--connections", "0"], "--connections"),
        (vec!["put", "--value-bytes", "2000000"], "--value-bytes"),
        (vec!["mixed", "--read-ratio", "1.5"], "--read-ratio"),
        (vec!["get", "--key-space", "0"], "--key-space"),
        (vec!["put", "--endpoints", "127.0.0.1:1"], "http://host:port"),
        (vec!["put", "--endpoints", "https://127.0.0.1:1"], "--cacert"),
        (vec!["put", "--endpoints", "http://:8081"], "a bad host or port"),
        (vec!["put", "--threads", "0"], "--threads"),
        (vec!["put", "--first-key", "10000000000000000"], "--first-key"),
        (vec!["put", "--collection", ""], "--collection"),
        (vec!["put", "--cacert", "/nonexistent.pem"], "/nonexistent.pem"),
        (vec!["txn-put", "--txn-ops", "0"], "--txn-ops"),
        (vec!["lease-keepalive", "--lease-ttl-ms", "10"], "--lease-ttl-ms"),
        (vec!["watch", "--watchers", "0"], "--watchers"),
        (vec!["watch", "--value-bytes", "8"], "--value-bytes"),
        (vec!["put", "--rate=-1"], "--rate"),
    ] {
        let (code, out, err) = bench(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    for duration in ["10x", "0.5ms"] {
        let (code, _, err) = bench(&["put", "--duration", duration]);
        assert_eq!(code, 2, "clap refuses {duration}: {err}");
    }
    // Nothing listens on port 1: every request fails, exit 3, and the
    // report names what happened.
    let (code, _, err) =
        bench(&["put", "--requests", "3", "-c", "1", "--endpoints", "http://127.0.0.1:1"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no request succeeded") && err.contains("Connection refused"), "{err}");
}

/// A server on an ephemeral port that answers each request with `answer`
/// (or never, if empty); it runs until the test process ends.
fn odd_server(answer: &'static [u8]) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut chunk) {
                    request.extend_from_slice(&chunk[..n]);
                    // One request per read is enough for rdb bench's small
                    // requests, one at a time on each connection.
                    if request.windows(4).any(|w| w == b"\r\n\r\n") && !answer.is_empty() {
                        request.clear();
                        if stream.write_all(answer).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

#[test]
fn odd_servers_end_on_time_and_are_reported_clearly() {
    let run = |port: u16| {
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let out = bench(&["get", "--duration", "1s", "-c", "2", "--endpoints", &endpoint]);
        (out, started.elapsed())
    };
    // Never answers: the run still ends at its deadline, the requests in
    // flight are reported unfinished, and nothing succeeded (exit 3).
    let ((code, _, err), took) = run(odd_server(b""));
    assert_eq!(code, 3, "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(err.contains("2 in flight at the deadline"), "{err}");
    // An interim 100 before each 200 is skipped, not counted.
    let ((code, out, err), _) = run(odd_server(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("statuses      200: ") && !out.contains("100: "), "{out}");
    // Two answers to one request: an error naming it, never a second status.
    let ((code, _, err), _) = run(odd_server(
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 500 x\r\ncontent-length: 0\r\n\r\n",
    ));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("the server sent bytes after the answer") && !err.contains("500"),
        "{err}"
    );
    // A chunked answer names why it is refused.
    let ((code, _, err), _) =
        run(odd_server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("chunked"), "{err}");
}
